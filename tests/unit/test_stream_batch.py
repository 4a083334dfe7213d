"""The Kinesis batch plan: one write per user unless the log records would not fit one state item."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import TypeAdapter

from nextpick.domain.events import AnyEvent
from nextpick.domain.requests import batch_log_bytes
from nextpick.domain.stream_batch import StreamRecord, batch_item_failures, plan_writes

EVENT: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


def event(event_id: str, user_id: str) -> AnyEvent:
    return EVENT.validate_python(
        {
            "event_id": event_id,
            "user_id": user_id,
            "item_id": "item-1",
            "event_type": "view",
            "timestamp": datetime(2026, 1, 1, tzinfo=UTC),
        }
    )


def records() -> list[StreamRecord]:
    return [
        StreamRecord("100", (event("a1", "a"),)),
        StreamRecord("101", (event("b1", "b"), event("a2", "a"))),
        StreamRecord("102", (event("a3", "a"),)),
    ]


def test_each_user_is_one_write_in_record_order() -> None:
    plans = plan_writes(records(), max_log_bytes=192 * 1024)
    assert [[w.user_id for w in writes] for writes in plans] == [["a"], ["b"]]
    (a,) = plans[0]
    assert [e.event_id for e in a.events] == ["a1", "a2", "a3"]
    assert a.sequence_numbers == ("100", "101", "102")
    assert a.first_sequence_number == "100" and plans[1][0].first_sequence_number == "101"


def test_a_user_is_split_only_where_the_log_records_would_not_fit_one_item() -> None:
    one = batch_log_bytes([event("a1", "a")])
    plans = plan_writes(records(), max_log_bytes=2 * one)
    a_writes = plans[0]
    assert [[e.event_id for e in w.events] for w in a_writes] == [["a1", "a2"], ["a3"]]
    assert [w.first_sequence_number for w in a_writes] == ["100", "102"]


def test_the_lowest_sequence_number_is_reported_compared_as_a_number() -> None:
    assert batch_item_failures([]) == []
    assert batch_item_failures(["10", "9", "11"]) == [{"itemIdentifier": "9"}]
    long = "49590338271490256608559692538361571095921575989136588898"
    assert batch_item_failures([long, "9" * 20]) == [{"itemIdentifier": "9" * 20}]
