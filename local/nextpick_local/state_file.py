"""The small file through which `nextpick serve` tells the other commands where the local stack is.

Default `.nextpick/local.json` next to template.yaml (the directory ignores itself); `--state-file` or
`NEXTPICK_STATE_FILE` choose another, so a test's stack never overwrites a developer's."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nextpick_local.standin.aws_resources import find_template

ENV_VAR = "NEXTPICK_STATE_FILE"


def default_path() -> Path:
    configured = os.environ.get(ENV_VAR)
    if configured:
        return Path(configured)
    return find_template().parent / ".nextpick" / "local.json"


def prepare_folder(folder: Path) -> None:
    """Create the folder; the repo's `.nextpick/` (state, function logs) keeps itself out of git."""
    folder.mkdir(parents=True, exist_ok=True)
    if folder.name == ".nextpick":
        (folder / ".gitignore").write_text("*\n", encoding="utf-8")


def write(path: Path, state: dict[str, Any]) -> None:
    prepare_folder(path.parent)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state, indent=2), encoding="utf-8")
    temporary.replace(path)  # atomic: a reader never sees half a file


def read(path: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return state


def remove(path: Path, pid: int) -> None:
    """Delete the file if it is still this process's (another `serve` may have started since)."""
    state = read(path)
    if state is not None and state.get("pid") == pid:
        path.unlink(missing_ok=True)
