"""The retrain job's reading of the event log (nextpick_training.event_log, .data), without AWS."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nextpick.domain.events import CatalogItem, EventType, TrackedEvent
from nextpick_training import data, event_log

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def line(
    event_id: str,
    user: str,
    item: str,
    minutes: float = 0,
    event_type: str = "view",
    received_after: float = 1.0,
    **extra: Any,
) -> str:
    event = TrackedEvent(
        event_id=event_id,
        user_id=user,
        item_id=item,
        event_type=EventType(event_type),
        timestamp=T0 + timedelta(minutes=minutes),
        **extra,
    )
    return json.dumps(event.log_record(T0 + timedelta(minutes=minutes, seconds=received_after)))


def records(*lines: str) -> list[event_log.LogRecord]:
    stats = event_log.LogStats()
    parsed = event_log.parse_lines(lines, stats)
    assert stats.malformed == 0
    return parsed


def test_parse_line_reads_the_exact_log_record_format() -> None:
    parsed = event_log.parse_line(line("e1", "u1", "i1", event_type="rate", rating=4))
    assert isinstance(parsed, tuple)
    (record,) = parsed
    assert record.event_id == "e1"
    assert record.event_type is EventType.RATE
    assert record.received_at == T0 + timedelta(seconds=1)
    assert record.interaction_fields == (EventType.RATE.code, pytest.approx(0.8))


def test_malformed_lines_are_dropped_and_counted() -> None:
    stats = event_log.LogStats()
    lines = [
        line("e1", "u1", "i1"),
        "{not json",
        "[1, 2]",
        json.dumps({"event_id": "e2", "user_id": "u1"}),  # misses fields
        json.dumps({**json.loads(line("e3", "u1", "i1")), "received_at": None}),
        json.dumps({**json.loads(line("e4", "u1", "i1")), "event_type": "teleport"}),
        "",
        "   ",
        line("e5", "u1", "i2"),
    ]
    parsed = event_log.parse_lines(lines, stats)
    assert [r.event_id for r in parsed] == ["e1", "e5"]
    assert stats.malformed == 5
    assert stats.lines == 7  # blank lines are not records


def test_object_lines_accepts_plain_and_gzip_bodies() -> None:
    body = (line("e1", "u1", "i1") + "\n" + line("e2", "u1", "i2") + "\n").encode()
    assert len(event_log.object_lines(body)) == 2
    assert event_log.object_lines(gzip.compress(body)) == event_log.object_lines(body)


def test_duplicates_are_counted_once_keeping_the_earliest_arrival() -> None:
    stats = event_log.LogStats()
    late = line("e1", "u1", "i1", received_after=30)
    early = line("e1", "u1", "i1", received_after=2)
    unique = event_log.deduplicate(records(late, early, line("e2", "u1", "i2"), early), stats)
    assert sorted(r.event_id for r in unique) == ["e1", "e2"]
    assert stats.duplicates == 2
    (e1,) = [r for r in unique if r.event_id == "e1"]
    assert e1.received_at == T0 + timedelta(seconds=2)


def test_window_keeps_events_by_their_timestamp() -> None:
    recs = records(line("old", "u1", "i1", minutes=-10), line("in", "u1", "i1"), line("new", "u1", "i1", 10))
    kept = event_log.in_window(recs, T0 - timedelta(minutes=1), T0 + timedelta(minutes=1))
    assert [r.event_id for r in kept] == ["in"]


def test_timelines_order_by_timestamp_then_arrival_then_id() -> None:
    recs = records(
        line("c", "u1", "i3", minutes=5),
        line("b", "u1", "i2", minutes=1, received_after=9),
        line("a", "u1", "i1", minutes=1, received_after=9),
        line("z", "u1", "i4", minutes=1, received_after=3),
        line("x", "u0", "i1"),
    )
    timelines = data.user_timelines(recs)
    assert list(timelines) == ["u0", "u1"]
    assert [r.event_id for r in timelines["u1"]] == ["z", "a", "b", "c"]


def test_vocabulary_is_unknown_first_then_by_descending_frequency_with_id_ties() -> None:
    vocab = data.build_vocabulary(["b", "a", "c", "a", "c", "d"])
    assert vocab == [None, "a", "c", "b", "d"]
    assert data.vocabulary_index(vocab) == {"a": 1, "c": 2, "b": 3, "d": 4}


def ts(minutes: float) -> float:
    return (T0 + timedelta(minutes=minutes)).timestamp()


def test_build_dataset_holds_out_each_users_last_basket_and_encodes_like_serving() -> None:
    recs = records(
        line("1", "u1", "shoe", 0, "view"),
        line("2", "u1", "shoe", 1, "rate", rating=3),
        line("3", "u1", "sock", 2, "purchase"),
        line("4", "u2", "sock", 0, "click"),
        line("5", "u2", "hat", 1, "add_to_cart"),  # held out; 'hat' never seen in training
        line("6", "u3", "shoe", 0, "view"),  # single event: trained on, nothing held out
        line("7", "u4", "sock", 0, "view"),
        line("8", "u4", "shoe", 30, "purchase"),  # one order of two lines: the held-out basket
        line("9", "u4", "lamp", 31, "purchase"),
    )
    catalog = [CatalogItem(item_id="lamp", category="home", price=20.0, stock=1)]
    ds = data.build_dataset(recs, catalog)
    assert ds.users == ["u1", "u2", "u3", "u4"]
    # The training events by frequency (shoe x3, sock x2), then catalog items without events.
    assert ds.items == [None, "shoe", "sock", "lamp"]
    assert ds.item_tokens[3] == ["category=home", "price_band=5"] and ds.item_tokens[1] == []
    assert ds.train_sequences == [
        [(1, EventType.VIEW.code, 1.0, ts(0)), (1, EventType.RATE.code, pytest.approx(0.6), ts(1))],
        [(2, EventType.CLICK.code, 1.0, ts(0))],
        [(1, EventType.VIEW.code, 1.0, ts(0))],
        [(2, EventType.VIEW.code, 1.0, ts(0))],
    ]
    assert ds.holdout_users == [0, 1, 3]
    assert ds.holdout_targets == [[2], [data.UNKNOWN_ITEM], [1, 3]]
    assert ds.holdout_item_ids == [["sock"], ["hat"], ["lamp", "shoe"]]
    assert ds.holdout_nows == [ts(2), ts(1), ts(30)]
    assert ds.holdout_histories == [ds.train_sequences[0], ds.train_sequences[1], ds.train_sequences[3]]
    assert ds.holdout_history_ids()[1] == [("sock", EventType.CLICK.code, 1.0, ts(0))]
    assert ds.events == 9
    assert ds.train_events == 5
    # Every training interaction is a known item (the trainer rejects index 0).
    assert all(event[0] >= 1 for seq in ds.train_sequences for event in seq)


def test_encode_maps_unknown_items_to_zero() -> None:
    recs = records(line("1", "u1", "known"), line("2", "u1", "stranger", 1))
    assert data.encode(recs, {"known": 1}) == [(1, 0, 1.0, ts(0)), (0, 0, 1.0, ts(1))]


def test_partition_day() -> None:
    assert (
        event_log.partition_day("events/year=2026/month=11/day=28/nextpick-1-2026-11-28")
        == datetime(2026, 11, 28).date()
    )
    assert event_log.partition_day("events/loose-object.json") is None
    assert event_log.partition_day("events/year=2026/month=13/day=40/x") is None


class FakeS3:
    """list_objects_v2 (paginated, 2 keys a page) and get_object over a dict."""

    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects
        self.reads: list[str] = []

    def get_paginator(self, name: str) -> FakeS3:
        assert name == "list_objects_v2"
        return self

    def paginate(self, Bucket: str, Prefix: str) -> Any:
        keys = sorted(k for k in self.objects if k.startswith(Prefix))
        for start in range(0, len(keys), 2):
            yield {"Contents": [{"Key": k} for k in keys[start : start + 2]]}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        import io

        self.reads.append(Key)
        return {"Body": io.BytesIO(self.objects[Key])}


def test_read_event_log_reads_every_page_dedupes_and_windows() -> None:
    def obj(*lines: str) -> bytes:
        return ("\n".join(lines) + "\n").encode()

    s3 = FakeS3(
        {
            "events/year=2026/month=11/day=01/a": obj(line("e1", "u1", "i1"), line("e2", "u1", "i2", 1)),
            "events/year=2026/month=11/day=01/b": obj(
                line("e2", "u1", "i2", 1, received_after=99), "garbage"
            ),
            "events/year=2026/month=11/day=02/c": obj(line("e3", "u2", "i1", 60 * 24)),
            "events/year=2026/month=11/day=02/d": obj(line("e4", "u2", "i1", 60 * 24 + 1)),
            # Partition far before the window: never downloaded.
            "events/year=2026/month=09/day=01/old": obj(line("e0", "u9", "i9", -60 * 24 * 61)),
            # Events older than the window inside a recent object are read and then dropped.
            "events/year=2026/month=11/day=02/e": obj(line("e5", "u3", "i1", -60 * 24 * 40)),
            "other/ignored": obj(line("e9", "u1", "i1")),
        }
    )
    stats = event_log.LogStats()
    start, end = T0 - timedelta(days=30), T0 + timedelta(days=2)
    recs = event_log.read_event_log(s3, "bucket", "events/", start, end, stats)
    assert sorted(r.event_id for r in recs) == ["e1", "e2", "e3", "e4"]
    assert stats.objects == 5
    assert stats.objects_skipped == 1
    assert stats.malformed == 1
    assert stats.duplicates == 1
    assert stats.outside_window == 1
    assert "events/year=2026/month=09/day=01/old" not in s3.reads
    (e2,) = [r for r in recs if r.event_id == "e2"]
    assert e2.received_at == T0 + timedelta(minutes=1, seconds=1)


def test_training_settings_from_env() -> None:
    from nextpick_training.pipeline import hyperparameters_from
    from nextpick_training.settings import TrainingSettings

    settings = TrainingSettings.from_env(
        {
            "MODEL_BUCKET_NAME": "bucket",
            "EVENT_LOG_PREFIX": "log",
            "MIN_EVENTS": "10",
            "GATE_TOLERANCE": "0.05",
            "HYPERPARAMETERS": '{"epochs": 3, "decays": [0.5, 1.0]}',
            "STATE_TABLE_NAME": "ignored: another function's variable",
        }
    )
    assert settings.model_bucket_name == "bucket"
    assert settings.event_log_prefix == "log/"
    assert (settings.min_events, settings.gate_tolerance, settings.training_window_days) == (10, 0.05, 90)
    hp = hyperparameters_from(settings.hyperparameters)
    assert hp.epochs == 3 and hp.decays == (0.5, 1.0)
    with pytest.raises(ValueError, match="unknown hyperparameters: nope"):
        hyperparameters_from({"nope": 1})
    with pytest.raises(ValueError):
        TrainingSettings.from_env({"HYPERPARAMETERS": "[1, 2]"})
    assert TrainingSettings.from_env({"HYPERPARAMETERS": ""}).hyperparameters == {}


def test_holdout_sample_is_deterministic_and_keeps_training_data() -> None:
    recs = records(*(line(f"e{u}-{j}", f"u{u}", f"i{j}", j) for u in range(20) for j in range(3)))
    ds = data.build_dataset(recs)
    sample = ds.with_holdout_sample(5)
    assert len(sample.holdout_users) == 5
    assert sample.train_sequences is ds.train_sequences
    assert sample.holdout_users == data.build_dataset(recs).with_holdout_sample(5).holdout_users
    position = {u: j for j, u in enumerate(ds.holdout_users)}
    assert sample.holdout_targets == [ds.holdout_targets[position[u]] for u in sample.holdout_users]
    assert ds.with_holdout_sample(100) is ds


def test_paired_difference_is_the_mean_and_standard_error_of_per_user_gaps() -> None:
    from nextpick_training.pipeline import paired_difference

    mean, se = paired_difference([1.0, 0.5, 0.0, 0.5], [0.5, 0.5, 0.5, 0.5])
    # gaps 0.5, 0, -0.5, 0: mean 0, sample std sqrt(1/6), se = sqrt(1/6) / 2
    assert mean == 0.0
    assert abs(se - (1 / 6) ** 0.5 / 2) < 1e-12
    single_mean, single_se = paired_difference([0.3], [0.1])
    assert abs(single_mean - 0.2) < 1e-12 and single_se == 0.0  # one user: no spread to estimate


def test_search_and_review_records_fold_their_stored_steps_in_training() -> None:
    from nextpick.domain.events import ReviewEvent, SearchEvent

    search = SearchEvent.model_validate(
        {
            "event_id": "s",
            "user_id": "u1",
            "event_type": "search",
            "query": "shoes",
            "clicked_items": ["i3"],
            "timestamp": T0,
        }
    ).resolved(["i1", "i2"])
    review = ReviewEvent.model_validate(
        {
            "event_id": "r",
            "user_id": "u1",
            "event_type": "review",
            "item_id": "i2",
            "rating": 2,
            "text": "Too small.\nReturned.",
            "timestamp": T0 + timedelta(minutes=1),
        }
    )
    nothing = SearchEvent.model_validate(
        {"event_id": "n", "user_id": "u1", "event_type": "search", "query": "zzz", "timestamp": T0}
    ).resolved([])
    lines = [json.dumps(e.log_record(T0 + timedelta(minutes=2))) for e in (search, review, nothing, search)]
    stats = event_log.LogStats()
    unique = event_log.deduplicate(records(*lines), stats)
    assert stats.duplicates == 3  # the redelivered search's three steps
    (timeline,) = data.user_timelines(unique).values()
    assert [(r.event_id, r.item_id, r.event_type.value, r.strength, r.observed) for r in timeline] == [
        ("s", "i1", "view", 0.5, False),
        ("s", "i2", "view", 0.5, False),
        ("s", "i3", "click", 1.0, True),
        ("r", "i2", "rate", 0.4, True),
    ]
    # Training folds exactly what serving folded: the same steps, through the one helper.
    assert [s[:3] for s in search.steps()] + [s[:3] for s in review.steps()] == [
        (r.item_id, r.event_type, r.strength) for r in timeline
    ]
    index = {"i1": 1, "i2": 2, "i3": 3}
    assert [t[:3] for t in data.encode(timeline, index)] == [
        (1, 0, 0.5),
        (2, 0, 0.5),
        (3, 1, 1.0),
        (2, 5, 0.4),
    ]
    # The manifest's trending counts the click and the rating, not the query's matches.
    assert [item for item, _ in data.trending_items(timeline, T0)] == ["i2", "i3"]
