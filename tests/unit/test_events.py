from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from nextpick.domain.events import (
    EventsBody,
    EventType,
    TrackedEvent,
    check_not_in_future,
    describe_errors,
)
from nextpick.errors import InvalidInput

VALID = {
    "event_id": "evt-1",
    "user_id": "user-1",
    "item_id": "item-1",
    "event_type": "view",
    "timestamp": "2026-11-28T12:00:00Z",
}


def errors_for(payload: object) -> list[dict[str, str]]:
    with pytest.raises(ValidationError) as info:
        EventsBody.model_validate(payload)
    return describe_errors(info.value.errors())


def test_single_event_and_batch_parse_to_the_same_events() -> None:
    single = EventsBody.model_validate(VALID).events
    batch = EventsBody.model_validate({"events": [VALID]}).events
    assert single == batch
    assert single[0].timestamp == datetime(2026, 11, 28, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"event_type": "like"}, "event_type"),
        ({"user_id": "a" * 129}, "user_id"),
        ({"item_id": "has space"}, "item_id"),
        ({"event_id": ""}, "event_id"),
        ({"timestamp": "yesterday"}, "timestamp"),
        ({"timestamp": 1_000}, "timestamp"),
        ({"quantity": 0}, "quantity"),
        ({"price": -1}, "price"),
        ({"surprise": 1}, "surprise"),
        ({"event_type": "rate"}, "rating"),
        ({"event_type": "rate", "rating": 6}, "rating"),
        ({"rating": 3}, "rating"),
    ],
)
def test_bad_events_name_the_field(change: dict[str, object], field: str) -> None:
    errors = errors_for({**VALID, **change})
    assert field in [e["field"] for e in errors], errors


def test_batch_errors_point_at_the_event() -> None:
    errors = errors_for({"events": [VALID, {**VALID, "event_type": "like"}]})
    assert [e["field"] for e in errors] == ["events[1].event_type"]


def test_empty_and_oversized_batches_are_rejected() -> None:
    assert errors_for({"events": []})[0]["field"] == "events"
    assert errors_for({"events": [VALID] * 101})[0]["field"] == "events"


def test_rating_is_the_strength_of_a_rate_event() -> None:
    event = TrackedEvent.model_validate({**VALID, "event_type": "rate", "rating": 4})
    assert event.strength == pytest.approx(0.8)
    assert TrackedEvent.model_validate(VALID).strength == 1.0
    assert [t.code for t in EventType] == [0, 1, 2, 3, 4, 5]


def test_future_timestamps_beyond_the_skew_are_refused() -> None:
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    ok = TrackedEvent.model_validate({**VALID, "timestamp": now + timedelta(minutes=4)})
    late = TrackedEvent.model_validate({**VALID, "timestamp": now + timedelta(minutes=6)})
    check_not_in_future([ok], now, timedelta(minutes=5))
    with pytest.raises(InvalidInput) as info:
        check_not_in_future([ok, late], now, timedelta(minutes=5))
    assert info.value.field == "events[1].timestamp"


def test_log_record_is_json_with_receive_time() -> None:
    event = TrackedEvent.model_validate(VALID)
    record = event.log_record(datetime(2026, 11, 28, 12, 0, 1, tzinfo=UTC))
    assert record == {**VALID, "timestamp": "2026-11-28T12:00:00Z", "received_at": "2026-11-28T12:00:01Z"}
