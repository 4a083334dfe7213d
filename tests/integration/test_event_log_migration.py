"""`nextpick migrate-event-log` (issue 14): the JSON-lines log written before the switch becomes Parquet,
no version of a JSON object is left behind, and the window reads exactly what it read before."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from nextpick.domain.erasure import Erasure
from nextpick.domain.events import EventType, TrackedEvent
from nextpick_local import cli
from nextpick_local.ops.event_log import migrate
from nextpick_training import event_log
from nextpick_training.parquet_log import is_parquet
from nextpick_training.window_query import read_window_duckdb

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BUCKET = "log-bucket"
DAY = f"events/year={T0:%Y}/month={T0:%m}/day={T0:%d}/"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


def line(event_id: str, user: str, seconds: float) -> bytes:
    event = TrackedEvent(
        event_id=event_id, user_id=user, item_id="i1", event_type=EventType.VIEW, timestamp=T0
    )
    return json.dumps(event.log_record(T0 + timedelta(seconds=seconds))).encode() + b"\n"


def window(s3: Any, reader: Any) -> list[tuple[str, str]]:
    return sorted(
        (r.user_id, r.event_id)
        for r in reader(s3, BUCKET, "events/", T0 - timedelta(days=1), T0 + timedelta(days=1))
    )


def test_the_json_lines_log_becomes_parquet_and_reads_the_same(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{DAY}a", Body=line("e1", "u1", 1) + b"garbage\n" + line("e2", "u2", 1))
    # An object rewritten once (by a compaction): its older version holds data too.
    s3.put_object(Bucket=BUCKET, Key=f"{DAY}b", Body=line("e3", "u3", 1) + line("e4", "u3", 2))
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{DAY}b",
        Body=line("e3", "u3", 1) + Erasure("u2", T0 + timedelta(minutes=1)).log_record().encode() + b"\n",
    )
    s3.put_object(Bucket=BUCKET, Key=f"{DAY}empty", Body=b"\n")
    before = window(s3, event_log.read_event_log)
    assert before == [("u1", "e1"), ("u3", "e3")]

    assert migrate(s3, BUCKET, dry_run=True).converted == 2
    assert len(s3.list_object_versions(Bucket=BUCKET)["Versions"]) == 4  # a dry run changes nothing

    result = migrate(s3, BUCKET)
    assert (result.converted, result.empty, result.records, result.versions_deleted) == (2, 1, 4, 4)
    versions = s3.list_object_versions(Bucket=BUCKET)
    assert sorted(v["Key"] for v in versions["Versions"]) == [f"{DAY}a.parquet", f"{DAY}b.parquet"]
    assert "DeleteMarkers" not in versions
    for key in (f"{DAY}a.parquet", f"{DAY}b.parquet"):
        assert is_parquet(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    assert window(s3, read_window_duckdb) == before

    # Run again: nothing left to convert, nothing changes.
    again = migrate(s3, BUCKET)
    assert (again.converted, again.already_parquet, again.versions_deleted) == (0, 2, 0)


def test_the_command_targets_aws_by_its_environment(
    s3: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    s3.put_object(Bucket=BUCKET, Key=f"{DAY}a", Body=line("e1", "u1", 1))
    for name, value in {
        "MODEL_BUCKET_NAME": BUCKET,
        "ITEMS_TABLE_NAME": "items",
        "STATE_TABLE_NAME": "state",
        "EVENT_BUS_NAME": "bus",
    }.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["migrate-event-log", "--aws", "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["converted"] == 1
    assert cli.main(["migrate-event-log", "--aws"]) == 0
    assert json.loads(capsys.readouterr().out)["versions_deleted"] == 1
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]] == [f"{DAY}a.parquet"]
