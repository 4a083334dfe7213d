"""How fast an erased shopper is gone (issue 9): from serving, and from the S3 event log, on the local stack.

    .venv/bin/python -m bench.erasure             # prints the report (docs/privacy.md quotes it)
    .venv/bin/python -m bench.erasure --shoppers 5

Starts the README's local stack (`nextpick serve --demo`: about 12,500 seeded events in the log), gives
each of a few new shoppers a short session through `POST /events` and waits until it is in the log.
Then, per shopper: `DELETE /users/{user_id}`, and `GET /users/{user_id}/recommendations` until the
answer equals a never-seen shopper's (seconds from the DELETE: "gone from serving"); then the time until
the tombstone is in S3 (the state stream and the shipper), and one compaction run
(`POST /_local/compact-log`, what `nextpick compact-log` does) after which no version of any log
object holds a line of theirs from before the erasure ("gone from the log"). A second run with no new
tombstone shows the checkpoint's cost model. Nothing here is a timed assert.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from bench.refresh_latency import start
from nextpick.domain.erasure import FIREHOSE_BUFFER_SECONDS, log_erasure_bound, schedule_seconds
from nextpick_local.http_client import JsonClient

EVENTS_PER_SHOPPER = 10
SCHEDULE = "rate(6 hours)"  # the template's default LogCompactionSchedule


def log_records(s3: Any, bucket: str) -> list[dict[str, Any]]:
    """Every record of every version of every log object."""
    records: list[dict[str, Any]] = []
    for prefix in ("events/", "events-errors/"):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for version in page.get("Versions", []):
                data = s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
                records.extend(json.loads(line) for line in data["Body"].read().splitlines() if line.strip())
    return records


def wait(condition: Any, limit: float = 120.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > limit:
            raise SystemExit("gave up waiting")
        time.sleep(0.2)
    return time.monotonic() - started


def session(user_id: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC).isoformat()
    items = ["coffee-0003", "coffee-0007", "tea-0002", "coffee-0011", "books-0004"]
    return [
        {
            "event_id": f"evt-{uuid.uuid4().hex}",
            "user_id": user_id,
            "item_id": items[n % len(items)],
            "event_type": "purchase" if n % 4 == 3 else "view",
            "timestamp": now,
        }
        for n in range(EVENTS_PER_SHOPPER)
    ]


def measure(client: JsonClient, s3: Any, bucket: str, shoppers: int) -> dict[str, Any]:
    users = [f"bench-erase-{uuid.uuid4().hex[:8]}" for _ in range(shoppers)]
    for user in users:
        status, _ = client.request("POST", "/events", {"events": session(user)})
        assert status == 200, status
    wait(
        lambda: (
            sum(r.get("user_id") in users for r in log_records(s3, bucket)) == shoppers * EVENTS_PER_SHOPPER
        )
    )
    _, new = client.request("GET", f"/users/never-seen-{uuid.uuid4().hex[:8]}/recommendations?k=10")
    serving, deleted_at = [], {}
    for user in users:
        started = time.monotonic()
        status, _ = client.request("DELETE", f"/users/{user}")
        assert status == 200, status
        deleted_at[user] = started
        while (
            client.request("GET", f"/users/{user}/recommendations?k=10")[1]["recommendations"]
            != new["recommendations"]
        ):
            time.sleep(0.01)
        serving.append(time.monotonic() - started)

    def tombstones() -> int:
        return sum(r.get("type") == "erasure" and r.get("user_id") in users for r in log_records(s3, bucket))

    wait(lambda: tombstones() == shoppers)
    shipped = time.monotonic()
    started = time.monotonic()
    status, run = client.request("POST", "/_local/compact-log")
    assert status == 200, run
    compacted = time.monotonic()
    left = [r for r in log_records(s3, bucket) if r.get("user_id") in users and r.get("type") != "erasure"]
    started_again = time.monotonic()
    _, rerun = client.request("POST", "/_local/compact-log")
    return {
        "shoppers": shoppers,
        "serving_seconds": serving,
        "ship_seconds_after_last_delete": round(shipped - max(deleted_at.values()), 2),
        "compaction_seconds": round(compacted - started, 2),
        "log_seconds": [round(compacted - deleted_at[user], 2) for user in users],
        "lines_left": len(left),
        "run": run,
        "rerun": rerun,
        "rerun_seconds": round(time.monotonic() - started_again, 2),
    }


def report(result: dict[str, Any], command: str) -> str:
    serving_ms = [s * 1000 for s in result["serving_seconds"]]
    run, rerun = result["run"], result["rerun"]
    bound = log_erasure_bound(SCHEDULE)
    return "\n".join(
        [
            f"Command: `{command}`, {datetime.now(UTC):%Y-%m-%d}, load average {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} cores; {result['shoppers']} shoppers with {EVENTS_PER_SHOPPER} events each, erased "
            "one after another.",
            "",
            "| from `DELETE /users/{user_id}` to | measured (local stack) | deployed bound |",
            "|---|---|---|",
            f"| gone from serving (the next GET answers as for a never-seen shopper) | median "
            f"{statistics.median(serving_ms):.0f} ms, max {max(serving_ms):.0f} ms | the DELETE's own answer: "
            "one strongly consistent read and one conditional write |",
            f"| the tombstone in the S3 event log | {result['ship_seconds_after_last_delete']} s after the last "
            f"DELETE | 5 s (stream batching) + {FIREHOSE_BUFFER_SECONDS} s (Firehose buffer) |",
            f"| gone from the log, current and old versions (ship + one compaction run) | median "
            f"{statistics.median(result['log_seconds']):.1f} s (the run: {result['compaction_seconds']} s) | "
            f"{bound.total_seconds() / 3600:.2f} h = 305 s + `LogCompactionSchedule` "
            f"({schedule_seconds(SCHEDULE) // 3600} h) + one run (at most 900 s) |",
            "",
            f"The run read {run['objects_read']} objects ({run['bytes_read'] / 1e6:.1f} MB, the whole log: a full "
            f"pass for {run['new_tombstones']} new tombstones), rewrote {run['objects_rewritten']}, removed "
            f"{run['objects_removed']}, deleted {run['versions_deleted']} versions and {run['lines_erased']} lines; "
            f"{result['lines_left']} lines of the erased shoppers were left. A second run right after (no new "
            f"tombstone, full pass: {rerun['full_pass']}) read {rerun['objects_read']} objects in "
            f"{result['rerun_seconds']} s: those modified since the previous run began less one hour (`OVERLAP`), "
            "which here is the whole demo log, seeded at start-up; on an older log it is only the new objects "
            "(tests/integration/test_log_compaction.py).",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shoppers", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="nextpick-erasure-") as tmp:
        process, state = start(Path(tmp))
        try:
            s3 = boto3.client(
                "s3",
                endpoint_url=state["endpoint_url"],
                region_name=state["region"],
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            client = JsonClient(state["api_url"], state["server_key"], 300)
            result = measure(client, s3, state["resources"]["ModelBucket"], args.shoppers)
        finally:
            os.kill(process.pid, signal.SIGINT)
            process.wait(timeout=60)
    command = ".venv/bin/python -m bench.erasure" + (
        f" --shoppers {args.shoppers}" if args.shoppers != 5 else ""
    )
    print(report(result, command))
    print(json.dumps(result), file=sys.stderr)
    return 0 if result["lines_left"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
