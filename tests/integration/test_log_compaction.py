"""Event-log compaction under moto (issue 9), on the template's versioned bucket: the erased shopper's
lines leave the current AND the older versions of every object, other shoppers' lines stay byte for
byte, a re-run changes nothing, the checkpoint limits what later runs read, a crash between a rewrite
and the deletion of the old versions is repaired, and a pass out of time resumes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nextpick.adapters.s3_event_log import CHECKPOINT_KEY, S3EventLog
from nextpick.domain.compaction import LogCompaction, LogObject
from nextpick.domain.erasure import Erasure
from nextpick.domain.events import EventType, TrackedEvent
from nextpick.handlers import log_compactor, wiring
from nextpick_local.standin.aws_resources import Stack
from tests.integration.serving import FakeLambdaContext, sample_event

ACCOUNT = "123456789012"
NOW = datetime.now(UTC).replace(microsecond=0)
ERASED_AT = NOW - timedelta(hours=2)
DAY = f"events/year={NOW:%Y}/month={NOW:%m}/day={NOW:%d}/"


def line(event_id: str, user: str, received_before_erasure: bool = True) -> str:
    received = ERASED_AT + timedelta(seconds=-30 if received_before_erasure else 30)
    event = TrackedEvent(
        event_id=event_id, user_id=user, item_id="item-1", event_type=EventType.VIEW, timestamp=received
    )
    return json.dumps(event.log_record(received), separators=(",", ":"))


def body(*lines: str) -> bytes:
    return "".join(f"{text}\n" for text in lines).encode()


TOMBSTONE = Erasure("u1", ERASED_AT, "req-1").log_record()
# key -> body. u1 is erased at ERASED_AT; the object of u1 alone disappears; "clean" objects must keep
# their version and bytes; u1's line received after the erasure is their new life and stays.
LOG = {
    f"{DAY}nextpick-1-a": body(line("e1", "u1"), line("e2", "u2"), line("e3", "u1"), line("e4", "u3")),
    f"{DAY}nextpick-1-b": body(line("e5", "u2"), line("e6", "u3")),
    f"{DAY}nextpick-1-c": body(line("e7", "u1"), line("e8", "u1")),
    f"{DAY}nextpick-1-d": body(TOMBSTONE, line("e9", "u1", received_before_erasure=False), line("e10", "u2")),
    f"events-errors/processing-failed/{DAY[7:]}nextpick-1-e": body(line("e11", "u1"), line("e12", "u3")),
}


def age_log(stack: Stack, by: timedelta) -> None:
    """Pretend every stored version was uploaded `by` earlier (moto stamps objects on upload)."""
    from moto.s3.models import s3_backends

    bucket = s3_backends[ACCOUNT]["aws"].buckets[stack.model_bucket]
    for _, versions in bucket.keys._iterlists():
        for version in versions:
            version.last_modified -= by


def all_versions(s3: Any, stack: Stack) -> dict[tuple[str, str], bytes]:
    """(key, version id) -> body of every version of every log object."""
    found: dict[tuple[str, str], bytes] = {}
    for prefix in ("events/", "events-errors/"):
        for page in s3.get_paginator("list_object_versions").paginate(
            Bucket=stack.model_bucket, Prefix=prefix
        ):
            for v in page.get("Versions", []):
                obj = s3.get_object(Bucket=stack.model_bucket, Key=v["Key"], VersionId=v["VersionId"])
                found[(v["Key"], v["VersionId"])] = obj["Body"].read()
    return found


def erased_lines(versions: dict[tuple[str, str], bytes]) -> list[str]:
    """Lines of u1 received at or before the erasure, in any version."""
    return [
        text
        for data in versions.values()
        for text in data.decode().splitlines()
        if '"user_id":"u1"' in text
        and '"received_at"' in text
        and line(json.loads(text)["event_id"], "u1") == text
    ]


@pytest.fixture
def log(stack: Stack, s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The log written 3 hours ago, the compactor's environment from template.yaml; key -> version id."""
    for name, value in stack.env("EventLogCompactionFunction").items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    versions = {
        key: s3.put_object(Bucket=stack.model_bucket, Key=key, Body=data)["VersionId"]
        for key, data in LOG.items()
    }
    age_log(stack, timedelta(hours=3))
    yield versions
    wiring.reset()


class CompactionContext(FakeLambdaContext):
    """The function's 900 s timeout, nearly all of it left."""

    def get_remaining_time_in_millis(self) -> int:
        return 890_000


def compact() -> dict[str, Any]:
    result: dict[str, Any] = log_compactor.lambda_handler(
        sample_event("schedule_log_compaction.json"), CompactionContext()
    )
    return result


def test_compaction_erases_from_current_and_old_versions_and_leaves_the_rest_byte_for_byte(
    stack: Stack, s3: Any, log: dict[str, str]
) -> None:
    before = all_versions(s3, stack)
    assert len(erased_lines(before)) == 5

    result = compact()

    after = all_versions(s3, stack)
    assert erased_lines(after) == []
    assert result["status"] == "complete" and result["full_pass"] and result["new_tombstones"] == 1
    assert (result["objects_rewritten"], result["objects_removed"], result["lines_erased"]) == (2, 1, 5)
    current = {key: data for (key, _), data in after.items()}
    assert len(after) == len(current) == 4  # one version per object left; c is gone
    a, e = f"{DAY}nextpick-1-a", f"events-errors/processing-failed/{DAY[7:]}nextpick-1-e"
    assert current[a] == body(line("e2", "u2"), line("e4", "u3"))
    assert current[e] == body(line("e12", "u3"))
    # Objects without an erased line were not touched: same version, same bytes.
    for key in (f"{DAY}nextpick-1-b", f"{DAY}nextpick-1-d"):
        assert (key, log[key]) in after and after[(key, log[key])] == LOG[key]
    checkpoint = json.loads(s3.get_object(Bucket=stack.model_bucket, Key=CHECKPOINT_KEY)["Body"].read())
    assert checkpoint["tombstones"] == {"u1": json.loads(TOMBSTONE)["erased_at"]}
    assert checkpoint["pending"] is None and checkpoint["read_since"]


def test_a_rerun_changes_nothing_and_reads_only_what_changed_since(
    stack: Stack, s3: Any, log: dict[str, str]
) -> None:
    first = compact()
    settled = all_versions(s3, stack)

    again = compact()

    assert all_versions(s3, stack) == settled
    assert not again["full_pass"] and again["new_tombstones"] == 0 and again["lines_erased"] == 0
    # Only the objects the first run rewrote are new since it began; the 3-hour-old ones are not read.
    assert again["objects_read"] == first["objects_rewritten"] == 2


def test_a_late_line_of_an_erased_shopper_is_caught_without_a_full_pass(
    stack: Stack, s3: Any, log: dict[str, str]
) -> None:
    compact()
    late = f"{DAY}nextpick-1-late"  # a Firehose retry delivered an old line after the compaction
    s3.put_object(Bucket=stack.model_bucket, Key=late, Body=body(line("e13", "u1"), line("e14", "u2")))

    result = compact()

    assert not result["full_pass"] and result["lines_erased"] == 1
    assert {k: v for (k, _), v in all_versions(s3, stack).items()}[late] == body(line("e14", "u2"))


def test_a_new_erasure_makes_a_full_pass(stack: Stack, s3: Any, log: dict[str, str]) -> None:
    compact()
    age_log(stack, timedelta(hours=3))
    tombstone = Erasure("u3", NOW - timedelta(minutes=1)).log_record()
    s3.put_object(Bucket=stack.model_bucket, Key=f"{DAY}nextpick-1-z", Body=body(tombstone))

    result = compact()

    assert result["full_pass"] and result["new_tombstones"] == 1 and result["tombstones"] == 2
    remaining = b"".join(all_versions(s3, stack).values()).decode().splitlines()
    event_users = {record["user_id"] for record in map(json.loads, remaining) if "event_type" in record}
    assert "u3" not in event_users and "u2" in event_users


class CrashesAfterRewrite(S3EventLog):
    """Crashes between writing the filtered object and deleting the versions it replaces."""

    def replace(self, obj: LogObject, body: bytes) -> None:
        self._client.get().put_object(Bucket=self._bucket, Key=obj.key, Body=body)
        raise RuntimeError("Lambda timed out")


def test_a_crash_between_rewrite_and_version_deletion_is_repaired_by_the_next_run(
    stack: Stack, s3: Any, log: dict[str, str]
) -> None:
    with pytest.raises(RuntimeError):
        LogCompaction(CrashesAfterRewrite(stack.model_bucket, s3)).run()
    assert erased_lines(all_versions(s3, stack))  # the old version still holds them

    result = compact()

    assert erased_lines(all_versions(s3, stack)) == []
    assert result["status"] == "complete" and result["versions_deleted"] >= 1


def test_a_pass_out_of_time_checkpoints_and_the_next_run_resumes(
    stack: Stack, s3: Any, log: dict[str, str]
) -> None:
    budget = iter([600_000, 600_000, 0])  # two objects, then the reserve is reached
    compaction = LogCompaction(S3EventLog(stack.model_bucket, s3))

    partial = compaction.run(lambda: next(budget, 0))

    assert partial.status == "partial" and partial.full_pass
    checkpoint = json.loads(s3.get_object(Bucket=stack.model_bucket, Key=CHECKPOINT_KEY)["Body"].read())
    assert checkpoint["pending"]["after"] == f"{DAY}nextpick-1-a" and checkpoint["tombstones"] == {}
    rest = compaction.run()
    assert rest.status == "complete" and rest.full_pass
    assert partial.objects_rewritten + rest.objects_rewritten == 2 and rest.objects_removed == 1
    assert erased_lines(all_versions(s3, stack)) == []
