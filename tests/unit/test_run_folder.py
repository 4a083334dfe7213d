"""The window copy of a run folder gives back exactly the records the query step read (issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from nextpick.domain.events import EventType
from nextpick_training.event_log import LogRecord
from nextpick_training.steps import run_id_for
from nextpick_training.steps.run_folder import window_from_parquet, window_to_parquet

moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
records = st.builds(
    LogRecord,
    event_id=st.text(min_size=1, max_size=12),
    user_id=st.text(min_size=1, max_size=12),
    item_id=st.text(min_size=1, max_size=12),
    event_type=st.sampled_from(list(EventType)),
    strength=st.floats(min_value=0.0, max_value=1.0),
    timestamp=moments,
    received_at=moments,
    step=st.integers(min_value=0, max_value=50),
    observed=st.booleans(),
)


@settings(max_examples=25, deadline=None)
@given(st.lists(records, max_size=30))
def test_the_window_copy_round_trips_every_field_in_order(window: list[LogRecord]) -> None:
    assert window_from_parquet(window_to_parquet(window)) == window


def test_an_instant_in_another_zone_comes_back_as_the_same_instant_to_the_microsecond() -> None:
    moment = datetime(2026, 11, 30, 14, 0, 0, 123457, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    record = LogRecord("e", "u", "i", EventType.PURCHASE, 0.6, moment, moment + timedelta(microseconds=1))
    (back,) = window_from_parquet(window_to_parquet([record]))
    assert back.timestamp == moment and back.timestamp.tzinfo == UTC
    assert back.received_at - back.timestamp == timedelta(microseconds=1)


def test_a_run_id_is_the_execution_name_made_key_safe() -> None:
    assert run_id_for("nightly:2026-11-30T00:00:00Z") == "nightly-2026-11-30T00-00-00Z"
    assert run_id_for("abc") == run_id_for("abc")
