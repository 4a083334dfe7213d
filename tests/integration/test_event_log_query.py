"""The Parquet event log's window query on DuckDB (issue 14): duplicates, tombstones, the window, the
partitions it reads, and the JSON-lines log written before the switch, against moto's S3."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from nextpick.domain.erasure import Erasure
from nextpick.domain.events import EventType, ReviewEvent, SearchEvent, TrackedEvent
from nextpick_training import event_log, window_query
from nextpick_training.data import build_dataset
from nextpick_training.parquet_log import is_parquet, json_lines_to_parquet, parquet_rows
from nextpick_training.window_query import (
    DuckDbWindow,
    read_window,
    read_window_duckdb,
    rows_to_records,
    window_sql,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
BUCKET = "log-bucket"


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


def view(event_id: str, user: str, item: str, minutes: float, received_after: float = 1.0) -> dict[str, Any]:
    event = TrackedEvent(
        event_id=event_id,
        user_id=user,
        item_id=item,
        event_type=EventType.VIEW,
        timestamp=T0 + timedelta(minutes=minutes),
        context={"page": "home", "slot": 3, "promo": True},
    )
    return event.log_record(T0 + timedelta(minutes=minutes, seconds=received_after))


def tombstone(user: str, minutes: float) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(Erasure(user, T0 + timedelta(minutes=minutes)).log_record())
    return record


def partition(moment: datetime) -> str:
    return f"events/year={moment:%Y}/month={moment:%m}/day={moment:%d}/"


def put_parquet(s3: Any, key: str, records: list[dict[str, Any]]) -> None:
    body = json_lines_to_parquet(b"".join(json.dumps(r).encode() + b"\n" for r in records))
    assert body is not None and is_parquet(body)
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)


def event_keys(records: list[event_log.LogRecord]) -> list[tuple[str, str, int]]:
    return sorted((r.user_id, r.event_id, r.step) for r in records)


def test_duplicates_count_once_keeping_the_first_arrival_and_tombstones_erase_earlier_events(s3: Any) -> None:
    day = partition(T0)
    put_parquet(s3, f"{day}a.parquet", [view("e1", "u1", "i1", 0), view("e2", "u1", "i2", 1)])
    # A redelivery of e2, received later; and the same event id from another shopper: a distinct event.
    put_parquet(
        s3, f"{day}b.parquet", [view("e2", "u1", "i2", 1, received_after=99), view("e2", "u2", "i2", 1)]
    )
    # u2 is erased after their e2 and comes back with e3: e2 goes, e3 stays. u3 erased twice: the
    # latest erasure counts.
    put_parquet(
        s3,
        f"{day}c.parquet",
        [
            tombstone("u2", 5),
            view("e3", "u2", "i3", 6),
            view("e4", "u3", "i1", 2),
            tombstone("u3", 3),
            view("e5", "u3", "i1", 4),
            tombstone("u3", 4.5),
        ],
    )
    stats = event_log.LogStats()
    records = read_window_duckdb(s3, BUCKET, "events/", T0 - timedelta(days=1), T0 + timedelta(days=1), stats)
    assert event_keys(records) == [("u1", "e1", 0), ("u1", "e2", 0), ("u2", "e3", 0)]
    (e2,) = [r for r in records if r.event_id == "e2"]
    assert e2.received_at == T0 + timedelta(minutes=1, seconds=1)
    assert e2.event_type is EventType.VIEW and e2.strength == 1.0
    assert stats.objects == 3 and stats.malformed == 0
    # The run's counts: u2's e2 and u3's e4 and e5 erased, 3 tombstones read, e2 of u1 delivered twice.
    assert (stats.erased, stats.tombstones, stats.duplicates) == (3, 3, 1)


def test_the_window_and_the_partitions_it_reads(s3: Any) -> None:
    start = T0 - timedelta(days=10)
    old = start - timedelta(days=3)
    # An event stamped in the window but only in a partition older than start - 1 day cannot exist
    # (events arrive minutes after their stamp): that partition is not even downloaded.
    put_parquet(s3, f"{partition(old)}x.parquet", [view("e-old", "u1", "i1", -60 * 24 * 13)])
    put_parquet(
        s3,
        f"{partition(T0)}y.parquet",
        [
            view("before", "u1", "i1", -60 * 24 * 11),
            view("inside", "u1", "i2", 0),
            view("after", "u1", "i3", 60 * 24 * 2),
        ],
    )
    stats = event_log.LogStats()
    records = read_window_duckdb(s3, BUCKET, "events/", start, T0 + timedelta(days=1), stats)
    assert [r.event_id for r in records] == ["inside"]
    assert stats.objects_skipped == 1 and stats.objects == 1


def test_search_and_review_rows_fold_their_stored_steps(tmp_path: Path) -> None:
    search = SearchEvent.model_validate(
        {
            "event_id": "s",
            "user_id": "u1",
            "event_type": "search",
            "query": "red, shoes",
            "clicked_items": ["i3"],
            "timestamp": T0,
        }
    ).resolved(["i1", "i2"])
    nothing = SearchEvent.model_validate(
        {"event_id": "n", "user_id": "u1", "event_type": "search", "query": "zzz", "timestamp": T0}
    ).resolved([])
    review = ReviewEvent.model_validate(
        {
            "event_id": "r",
            "user_id": "u1",
            "event_type": "review",
            "item_id": "i2",
            "rating": 2,
            "text": "Too small.\nReturned.",
            "timestamp": T0,
        }
    )
    body = json_lines_to_parquet(
        b"".join(
            json.dumps(e.log_record(T0 + timedelta(seconds=1))).encode() + b"\n"
            for e in (search, nothing, review)
        )
    )
    assert body is not None
    folder = tmp_path / partition(T0)
    folder.mkdir(parents=True)
    (folder / "o.parquet").write_bytes(body)
    records = read_window(DuckDbWindow(tmp_path), T0 - timedelta(days=1), T0 + timedelta(days=1))
    got = sorted((r.event_id, r.step, r.item_id, r.event_type.value, r.strength, r.observed) for r in records)
    assert got == [
        ("r", 0, "i2", "rate", 0.4, True),
        ("s", 0, "i1", "view", 0.5, False),
        ("s", 1, "i2", "view", 0.5, False),
        ("s", 2, "i3", "click", 1.0, True),
    ]


def random_log(rng: random.Random, objects: int) -> list[list[dict[str, Any]]]:
    """Objects of a log with redeliveries, shared event ids, erasures and returning shoppers."""
    users, items = [f"u{i}" for i in range(8)], [f"i{i}" for i in range(12)]
    sent: list[dict[str, Any]] = []
    out: list[list[dict[str, Any]]] = []
    minute = 0.0
    for _ in range(objects):
        batch: list[dict[str, Any]] = []
        for _ in range(rng.randint(1, 12)):
            minute += rng.uniform(0.1, 60)
            roll = rng.random()
            if roll < 0.15 and sent:
                batch.append(
                    {
                        **rng.choice(sent),
                        "received_at": (T0 + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z"),
                    }
                )
            elif roll < 0.22:
                batch.append(tombstone(rng.choice(users), minute))
            else:
                record = view(
                    f"e{rng.randint(0, 40)}", rng.choice(users), rng.choice(items), minute - rng.uniform(0, 1)
                )
                sent.append(record)
                batch.append(record)
        out.append(batch)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_the_query_reads_exactly_what_the_json_lines_reader_reads(s3: Any, seed: int) -> None:
    """The same log as JSON lines (the reader before issue 14) and as Parquet (the query): the same
    distinct, not erased events of the window."""
    rng = random.Random(seed)
    for position, batch in enumerate(random_log(rng, 10)):
        body = b"".join(json.dumps(r).encode() + b"\n" for r in batch)
        s3.put_object(Bucket=BUCKET, Key=f"json/{partition(T0)}{position:03d}", Body=body)
        put_parquet(s3, f"events/{partition(T0)}{position:03d}.parquet", batch)
    start, end = T0 + timedelta(hours=2), T0 + timedelta(days=1)
    expected = event_log.read_event_log(s3, BUCKET, "json/", start, end)
    got = read_window_duckdb(s3, BUCKET, "events/", start, end)
    assert event_keys(got) == event_keys(expected)
    assert sorted((r.user_id, r.event_id, r.received_at, r.timestamp) for r in got) == sorted(
        (r.user_id, r.event_id, r.received_at, r.timestamp) for r in expected
    )


def test_json_lines_written_before_the_switch_stay_readable(s3: Any) -> None:
    day = partition(T0)
    s3.put_object(
        Bucket=BUCKET, Key=f"{day}legacy-json", Body=(json.dumps(view("old", "u1", "i1", 0)) + "\n").encode()
    )
    put_parquet(s3, f"{day}new.parquet", [view("new", "u1", "i2", 1), tombstone("u9", 2)])
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{day}legacy-erased",
        Body=(json.dumps(view("gone", "u9", "i1", 0)) + "\n").encode(),
    )
    records = read_window_duckdb(s3, BUCKET, "events/", T0 - timedelta(days=1), T0 + timedelta(days=1))
    # The tombstone in a Parquet object erases the shopper's event in a JSON-lines one.
    assert sorted(r.event_id for r in records) == ["new", "old"]


def test_parquet_objects_carry_the_records_fields() -> None:
    record = view("e1", "u1", "i1", 0)
    body = json_lines_to_parquet(json.dumps(record).encode() + b"\nnot json\n")
    assert body is not None
    (row,) = parquet_rows(body)
    assert {k: v for k, v in row.items() if v is not None} == {
        **record,
        # A Parquet map has one value type: context values are their JSON text, as Firehose's SerDe writes them.
        "context": {"page": "home", "slot": "3", "promo": "true"},
    }
    assert json_lines_to_parquet(b"\n") is None


def test_one_query_text_for_both_engines() -> None:
    sql = window_sql('"db"."events"', T0, T0 + timedelta(days=1))
    assert sql.count('"db"."events"') == 1
    # Only Trino (Athena) functions: DuckDB gets the two it lacks as macros of the same name.
    assert "from_iso8601_timestamp" in sql and "array_join" in sql and "QUALIFY" not in sql.upper()


def test_impressions_never_reach_training_and_objects_older_than_a_column_still_read(tmp_path: Path) -> None:
    """A record type added later (issue 13's impressions) is not an event; an object written before
    the schema gained columns reads them as NULL (docs/event-log.md, "Adding a record type")."""
    from nextpick.domain.impressions import Impression, Surface, new_recommendation_id
    from nextpick_training.window_query import connect_duckdb

    folder = tmp_path / partition(T0)
    folder.mkdir(parents=True)
    impression = Impression(
        recommendation_id=new_recommendation_id(),
        surface=Surface.USER,
        user_id="u1",
        model_version="v1",
        variant="control",
        items=["i1"],
        served_at=T0,
    )
    body = json_lines_to_parquet(
        (json.dumps(impression.log_record()) + "\n" + json.dumps(view("e1", "u1", "i1", 0)) + "\n").encode()
    )
    assert body is not None
    (folder / "new.parquet").write_bytes(body)
    # An object of the first schema: no impression columns, no `type` either.
    old = view("e0", "u2", "i2", 0)
    with connect_duckdb() as db:
        db.execute(
            'COPY (SELECT ? AS event_id, ? AS user_id, ? AS "timestamp", ? AS received_at, ? AS event_type, '
            f"? AS item_id) TO '{folder / 'old.parquet'}' (FORMAT parquet)",
            [
                old["event_id"],
                old["user_id"],
                old["timestamp"],
                old["received_at"],
                old["event_type"],
                old["item_id"],
            ],
        )
    records = read_window(DuckDbWindow(tmp_path), T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert sorted((r.user_id, r.event_id) for r in records) == [("u1", "e1"), ("u2", "e0")]


def test_an_object_outside_firehoses_partitions_is_always_read(s3: Any) -> None:
    put_parquet(s3, "events/2026/11/20/12/legacy-layout.parquet", [view("a", "u1", "i1", 0)])
    put_parquet(s3, f"{partition(T0)}b.parquet", [view("b", "u1", "i2", 1)])
    records = read_window_duckdb(s3, BUCKET, "events/", T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert sorted(r.event_id for r in records) == ["a", "b"]


@pytest.mark.parametrize("seed", range(3))
def test_the_window_read_batch_by_batch_builds_the_dataset_all_rows_at_once_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """`read_window` turns DuckDB's answer into records a batch of rows at a time (a 10M-event window's
    rows as dicts would take ~8.5 GB): the same records, counts and dataset as the whole answer at once,
    malformed rows counted and skipped, the run's erasure counts taken once."""
    rng = random.Random(seed)
    malformed = 0
    for position, batch in enumerate(random_log(rng, 12)):
        if position % 4 == 1:  # an event without its item: the row is not a valid event
            batch.append({**view(f"bad{position}", "u-bad", "i1", position), "item_id": ""})
            malformed += 1
        target = tmp_path / partition(T0) / f"{position:03d}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        body = json_lines_to_parquet(b"".join(json.dumps(r).encode() + b"\n" for r in batch))
        assert body is not None
        target.write_bytes(body)
    engine = DuckDbWindow(tmp_path)
    start, end = T0 - timedelta(days=1), T0 + timedelta(days=1)
    whole = event_log.LogStats()
    at_once = rows_to_records(engine.rows(start, end, whole), whole)
    monkeypatch.setattr(window_query, "ROW_BATCH", 4)
    batched_stats = event_log.LogStats()
    batched = read_window(engine, start, end, batched_stats)

    assert whole.lines > 3 * 4  # several batches
    assert batched == at_once
    assert batched_stats == whole
    assert whole.malformed == malformed and whole.tombstones > 0 and whole.duplicates > 0
    assert build_dataset(batched) == build_dataset(at_once)
