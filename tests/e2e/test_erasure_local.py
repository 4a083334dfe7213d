"""Erasure end to end on the local stack (issue 9), over real HTTP and the `nextpick` commands:
events -> DELETE /users/{user_id} -> a new shopper at once -> the tombstone in the S3 event log ->
`nextpick compact-log` -> no line of the shopper left in any version -> `nextpick export-user`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from nextpick.domain.erasure import parse_time
from nextpick_training.parquet_log import json_lines_of
from tests.e2e.conftest import LocalStack
from tests.e2e.test_local_stack import client

pytestmark = pytest.mark.slow

USER = f"erase-{uuid.uuid4().hex[:8]}"


def event(item_id: str, event_type: str = "view") -> dict[str, Any]:
    return {
        "event_id": f"evt-{uuid.uuid4().hex}",
        "user_id": USER,
        "item_id": item_id,
        "event_type": event_type,
        "timestamp": datetime.now(UTC).isoformat(),
    }


def lines_of(local_stack: LocalStack, user_id: str, impressions: bool = False) -> list[dict[str, Any]]:
    """Every record naming the user in every version of every object of the event log: the shopper's
    events and tombstones, or (`impressions`) the answers served to them (issue 13)."""
    s3 = client(local_stack, "s3")
    bucket = local_stack.state["resources"]["ModelBucket"]
    found = []
    for prefix in ("events/", "events-errors/"):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
            for version in page.get("Versions", []):
                data = s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
                # Parquet objects (issue 14) read as the JSON records they hold.
                for line in json_lines_of(data["Body"].read()).splitlines():
                    record = json.loads(line)
                    is_impression = record.get("record_type") == "impression"
                    if record.get("user_id") == user_id and is_impression == impressions:
                        found.append(record)
    return found


def wait_for(condition: Any, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds:g} s")
        time.sleep(1)


def nextpick(local_stack: LocalStack, *args: str) -> Any:
    """Run a `nextpick` command against the stack, as a developer would; its JSON output."""
    command = [sys.executable, "-m", "nextpick_local.cli", *args, "--state-file", str(local_stack.state_file)]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ}, check=False
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_an_erased_shopper_is_gone_from_serving_at_once_and_from_the_log_after_compaction(
    local_stack: LocalStack,
) -> None:
    events = [event("coffee-0003"), event("coffee-0007", "add_to_cart"), event("coffee-0007", "purchase")]
    status, _ = local_stack.request("POST", "/events", {"events": events})
    assert status == 200
    wait_for(lambda: len(lines_of(local_stack, USER)) == 3, "shipping the events to the log")
    _, data = local_stack.request("GET", f"/users/{USER}/data")
    assert [e["item_id"] for e in data["state"]["recent_events"]] == [
        "coffee-0003",
        "coffee-0007",
        "coffee-0007",
    ]

    status, erased = local_stack.request("DELETE", f"/users/{USER}")

    assert status == 200, erased
    newcomer = f"never-seen-{uuid.uuid4().hex[:8]}"
    _, after = local_stack.request("GET", f"/users/{USER}/recommendations?k=10")
    _, fresh = local_stack.request("GET", f"/users/{newcomer}/recommendations?k=10")
    assert after["recommendations"] == fresh["recommendations"]
    _, data = local_stack.request("GET", f"/users/{USER}/data")
    assert data["state"] is None and data["erasure"] == {"erased_at": erased["erased_at"]}
    wait_for(
        lambda: any(r.get("type") == "erasure" for r in lines_of(local_stack, USER)), "shipping the tombstone"
    )

    result = nextpick(local_stack, "compact-log")

    assert result["status"] == "complete" and result["full_pass"], result
    assert result["lines_erased"] >= 3
    left = lines_of(local_stack, USER)
    assert [r["type"] for r in left] == ["erasure"]  # the tombstone stays: the record of the erasure
    assert parse_time(left[0]["erased_at"]) == parse_time(erased["erased_at"])
    # The answers served before the erasure went with it; the one served after it (`after`) is new.
    served = lines_of(local_stack, USER, impressions=True)
    assert [r["recommendation_id"] for r in served] == [after["recommendation_id"]]
    exported = nextpick(local_stack, "export-user", USER)
    assert exported["api"]["state"] is None
    # What nextpick holds about them now: the tombstone and the answer served after it.
    kinds = sorted(
        line["record"].get("type") or line["record"]["record_type"] for line in exported["event_log"]
    )
    assert kinds == ["erasure", "impression"]
