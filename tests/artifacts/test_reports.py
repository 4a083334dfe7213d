"""Generated reports carry no commit hashes: a report regenerated on another branch, or after a rebase,
must not point at commits that no longer exist. They say what changed, and the command that measured it."""

from __future__ import annotations

import re

from tests.artifacts.requirements import REPO

COMMIT_REFERENCE = re.compile(r"\b(commit|docs at|at) [0-9a-f]{7,40}\b|rev-parse|git (log|describe|show)\b")


def test_no_benchmark_generator_or_report_names_a_commit() -> None:
    sources = sorted((REPO / "bench").glob("*.py")) + sorted((REPO / "docs").rglob("*.md"))
    found = [
        f"{path.relative_to(REPO)}:{number}: {match.group(0)}"
        for path in sources
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if (match := COMMIT_REFERENCE.search(line))
    ]
    assert found == []
