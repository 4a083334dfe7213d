"""Event-log compaction of the Parquet log (issue 14), as deployed: the retrain image's handler
(`nextpick_training.compaction_handler`, the template's ImageConfig command) on the template's
versioned bucket. The erased shopper's rows leave the current and older versions of every Parquet
object; Firehose's JSON error records are filtered as before; a re-run changes nothing; and the log
the stream itself writes (shipper -> Firehose -> Parquet) is compacted end to end."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from nextpick.domain.erasure import Erasure
from nextpick_local.standin.aws_resources import Stack
from nextpick_training import compaction_handler
from nextpick_training.parquet_log import is_parquet, json_lines_of, json_lines_to_parquet
from tests.integration.serving import sample_event
from tests.integration.test_log_compaction import (
    DAY,
    ERASED_AT,
    LOG,
    CompactionContext,
    age_log,
    all_versions,
    line,
)


def parquet_log() -> dict[str, bytes]:
    """LOG with every events/ object as Firehose converts it (errors/ stay Firehose's JSON records)."""
    out: dict[str, bytes] = {}
    for key, data in LOG.items():
        if key.startswith("events/"):
            converted = json_lines_to_parquet(data)
            assert converted is not None
            out[f"{key}.parquet"] = converted
        else:
            out[key] = data
    return out


def records(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(text) for text in json_lines_of(data).decode().splitlines() if text.strip()]


def erased(versions: dict[tuple[str, str], bytes]) -> list[str]:
    """Event ids of u1 received at or before the erasure, in any version of any object."""
    return sorted(
        r["event_id"]
        for data in versions.values()
        for r in records(data)
        if r.get("user_id") == "u1" and "event_id" in r and r == json.loads(line(r["event_id"], "u1"))
    )


@pytest.fixture
def log(stack: Stack, s3: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    for name, value in stack.env("EventLogCompactionFunction").items():
        monkeypatch.setenv(name, value)
    compaction_handler.log_compaction.cache_clear()
    from nextpick.settings import get_settings

    get_settings.cache_clear()
    versions = {
        key: s3.put_object(Bucket=stack.model_bucket, Key=key, Body=data)["VersionId"]
        for key, data in parquet_log().items()
    }
    age_log(stack, timedelta(hours=3))
    yield versions
    compaction_handler.log_compaction.cache_clear()
    get_settings.cache_clear()


def compact() -> dict[str, Any]:
    result: dict[str, Any] = compaction_handler.lambda_handler(
        sample_event("schedule_log_compaction.json"), CompactionContext()
    )
    return result


def test_parquet_objects_lose_the_erased_rows_in_every_version(
    stack: Stack, s3: Any, log: dict[str, str]
) -> None:
    a = f"{DAY}nextpick-1-a.parquet"
    # An older version of `a` holds an erased row too: it must go with the current one.
    s3.put_object(Bucket=stack.model_bucket, Key=a, Body=parquet_log()[a])
    before = all_versions(s3, stack)
    assert erased(before) == ["e1", "e1", "e11", "e3", "e3", "e7", "e8"]

    result = compact()

    after = all_versions(s3, stack)
    assert erased(after) == []
    assert result["status"] == "complete" and result["full_pass"] and result["new_tombstones"] == 1
    assert (result["objects_rewritten"], result["objects_removed"], result["lines_erased"]) == (2, 1, 5)
    current = {key: data for (key, _), data in after.items()}
    assert len(after) == len(current) == 4  # one version per object left; c is gone
    assert is_parquet(current[a])
    assert [(r["event_id"], r["user_id"]) for r in records(current[a])] == [("e2", "u2"), ("e4", "u3")]
    # The tombstone and u1's new life stay; an object without an erased row keeps its version.
    d = f"{DAY}nextpick-1-d.parquet"
    assert [r.get("event_id", r.get("type")) for r in records(current[d])] == ["erasure", "e9", "e10"]
    assert (d, log[d]) in after and (f"{DAY}nextpick-1-b.parquet", log[f"{DAY}nextpick-1-b.parquet"]) in after

    again = compact()
    assert (again["objects_rewritten"], again["objects_removed"], again["lines_erased"]) == (0, 0, 0)
    assert all_versions(s3, stack) == after


def test_the_log_the_stream_writes_is_compacted_end_to_end(
    stack: Stack, s3: Any, firehose: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in stack.env("EventLogCompactionFunction").items():
        monkeypatch.setenv(name, value)
    compaction_handler.log_compaction.cache_clear()
    records_sent = [line("e1", "u1"), line("e2", "u2"), Erasure("u1", ERASED_AT).log_record()]
    firehose.put_record_batch(
        DeliveryStreamName=stack.event_log_stream, Records=[{"Data": f"{r}\n".encode()} for r in records_sent]
    )
    (key,) = [k for (k, _) in all_versions(s3, stack)]
    assert key.startswith("events/year=") and key.endswith(".parquet")

    result = compact()

    assert result["lines_erased"] == 1
    ((_, data),) = all_versions(s3, stack).items()
    assert [r.get("event_id", r.get("type")) for r in records(data)] == ["e2", "erasure"]
    compaction_handler.log_compaction.cache_clear()


def test_the_codec_erases_impressions_by_their_serving_time_and_reads_objects_of_an_older_schema(
    tmp_path: Any,
) -> None:
    from nextpick.domain.erasure import Tombstones
    from nextpick.domain.impressions import Impression, Surface, new_recommendation_id
    from nextpick_training.parquet_log import ParquetLogCodec
    from nextpick_training.window_query import connect_duckdb

    def impression(served: Any) -> str:
        shown = Impression(new_recommendation_id(), Surface.USER, "u1", "v1", "control", ["i1"], served)
        return json.dumps(shown.log_record())

    tombstones = Tombstones()
    tombstones.add(Erasure("u1", ERASED_AT))
    body = json_lines_to_parquet(
        "\n".join(
            [
                line("e1", "u1"),
                impression(ERASED_AT - timedelta(minutes=1)),
                impression(ERASED_AT + timedelta(minutes=1)),
                line("e2", "u2"),
            ]
        ).encode()
    )
    assert body is not None
    result = ParquetLogCodec().erase(body, tombstones)
    assert result.body is not None and (result.kept, result.erased) == (2, 2)
    kept = records(result.body)
    assert [(r.get("record_type"), r["user_id"]) for r in kept] == [("impression", "u1"), (None, "u2")]

    # An object written before the schema had `type` or the impression columns.
    old = tmp_path / "old.parquet"
    e1 = json.loads(line("e1", "u1"))
    with connect_duckdb() as db:
        db.execute(
            f"COPY (SELECT ? AS event_id, ? AS user_id, ? AS received_at) TO '{old}' (FORMAT parquet)",
            [e1["event_id"], e1["user_id"], e1["received_at"]],
        )
    assert ParquetLogCodec().erase(old.read_bytes(), tombstones).body == b""
