"""Time from `PUT /items` to "recommended", end to end on the local stack (issue 8, point 3).

    .venv/bin/python -m bench.refresh_latency            # writes docs/catalog-refresh.md
    .venv/bin/python -m bench.refresh_latency --out -    # prints it

Starts the README's local stack (`nextpick serve --demo`) with the template's default
`CatalogRefreshBatchSeconds` (60) and `ModelRefreshSeconds` (60), waits for the demo's first model,
then puts a new product into a category a demo shopper loves ("alice": coffee) and polls her list
every 2 s until the product is in it. Reports when the refreshed model was published (`GET /model`
shows the new version) and when the product first appeared. Nothing is a timed assert.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nextpick_local.http_client import JsonClient

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "catalog-refresh.md"
SHOPPER, CATEGORY = "alice", "coffee"
# Long enough to see where a new item lands in her coffee list, not only whether it makes the top 10.
LIST_LENGTH = 100
NEW_ITEM = "coffee-new-arrival-1"
LIMIT_SECONDS = 600


def start(state_dir: Path) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    state_file = state_dir / "local.json"
    command = [
        str(Path(sys.executable).parent / "nextpick"),
        "serve",
        "--demo",
        "--port",
        "0",
        "--retrain-every",
        "0",
        "--state-file",
        str(state_file),
        "--function-logs",
        str(state_dir / "functions.log"),
    ]
    err = (state_dir / "serve.err").open("wb")
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 300
    while not state_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"local stack did not start:\n{(state_dir / 'serve.err').read_text()[-3000:]}")
        time.sleep(0.5)
    return process, json.loads(state_file.read_text())


def measure(client: JsonClient, admin_key: str) -> dict[str, Any]:
    """`client` calls with the server key (reads); the catalog write needs the admin key."""
    path = f"/users/{SHOPPER}/recommendations?k={LIST_LENGTH}&category={CATEGORY}"
    _, model = client.request("GET", "/model")
    base_version = model.get("model_version") if isinstance(model, dict) else None
    _, before = client.request("GET", path)
    item = {"category": CATEGORY, "price": 29.0, "stock": 40, "title": "Single-origin beans, new arrival"}
    started = time.monotonic()
    status, _ = client.request("PUT", f"/items/{NEW_ITEM}", item, credential=admin_key)
    assert status in (200, 201), status
    published = appeared = None
    position = None
    while time.monotonic() - started < LIMIT_SECONDS:
        time.sleep(2)
        _, model = client.request("GET", "/model")
        if published is None and isinstance(model, dict) and model.get("model_version") != base_version:
            published = time.monotonic() - started
        _, answer = client.request("GET", path)
        picks = [r["item_id"] for r in answer.get("recommendations", [])]
        if NEW_ITEM in picks:
            appeared, position = time.monotonic() - started, picks.index(NEW_ITEM) + 1
            break
    return {
        "base_version": base_version,
        "served_version_after": model.get("model_version") if isinstance(model, dict) else None,
        "seconds_to_served_model": round(published, 1) if published is not None else None,
        "seconds_to_recommended": round(appeared, 1) if appeared is not None else None,
        "position": position,
        "before": [r["item_id"] for r in before.get("recommendations", [])][:10],
        "candidates": len(before.get("recommendations", [])),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nextpick-refresh-") as tmp:
        process, state = start(Path(tmp))
        try:
            result = measure(JsonClient(state["api_url"], state["server_key"], 60), state["admin_key"])
        finally:
            os.kill(process.pid, signal.SIGINT)
            process.wait(timeout=60)
    report = "\n".join(
        [
            "# A new item, recommended without a retrain",
            "",
            "Command: `.venv/bin/python -m bench.refresh_latency` (the local stack with the template's defaults:",
            "`CatalogRefreshBatchSeconds` 60, `ModelRefreshSeconds` 60), load average at the end "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
            "",
            f"`PUT /items/{NEW_ITEM}` (category `{CATEGORY}`, in stock), then `GET /users/{SHOPPER}/recommendations"
            f"?k={LIST_LENGTH}&category={CATEGORY}` every 2 s ({SHOPPER} is the demo's coffee lover):",
            "",
            "| from `PUT /items` to | seconds |",
            "|---|---|",
            f"| the refreshed model served (`GET /model` names a new version) | {result['seconds_to_served_model']} |",
            f"| the new item in {SHOPPER}'s {CATEGORY} list (position {result['position']} of {result['candidates']}) "
            f"| {result['seconds_to_recommended']} |",
            "",
            "Where it lands: a product with no events is placed by its attributes alone (its category and price "
            "band here; a brand or other attributes place it more precisely). It is recommendable at once and "
            "ranks among the category's items by how well those attributes fit the shopper; it climbs with its "
            "first events through the explore side, and the next retrain gives it an id vector of its own.",
            "",
            f"Model before: `{result['base_version']}`; after: `{result['served_version_after']}` "
            "(lineage `catalog_refresh`: the trained weights unchanged, the new item placed by its attributes).",
            "",
            "Bound: the stream batching window (60 s) + one export and publish (about 10 s) + the serving",
            "containers' pointer check (60 s) = about 2 minutes, inside the 5-minute target. The local stand-in",
            "hands stream records to the function within a second instead of waiting out the batching window, so",
            "the figure above is the export and the pointer check; on AWS add up to the window's 60 s.",
            "",
        ]
    )
    if args.out == "-":
        print(report)
    else:
        Path(args.out).write_text(report)
    print(json.dumps(result), file=sys.stderr)
    return 0 if result["seconds_to_recommended"] is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
