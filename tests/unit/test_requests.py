"""The one request validation (nextpick.domain.requests), without AWS: limits, statuses, fields."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nextpick.domain.events import ID_MAX_LENGTH
from nextpick.domain.requests import (
    RequestLimits,
    detail_bytes,
    parse_catalog,
    parse_events,
    parse_identifier,
    parse_item,
)
from nextpick.errors import InvalidRequest, RequestProblem

MALFORMED, TOO_LARGE, INVALID = RequestProblem.MALFORMED, RequestProblem.TOO_LARGE, RequestProblem.INVALID

NOW = datetime.now(UTC).replace(microsecond=0)
LIMITS = RequestLimits()


def event(n: int = 0, **change: Any) -> dict[str, Any]:
    return {
        "event_id": f"evt-{n}",
        "user_id": "user-1",
        "item_id": "item-1",
        "event_type": "view",
        "timestamp": (NOW - timedelta(minutes=1)).isoformat(),
        **change,
    }


def refusal(body: bytes | str, limits: RequestLimits = LIMITS) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        parse_events(body, limits)
    return raised.value


def test_a_valid_event_and_batch_parse_the_same_from_str_and_bytes() -> None:
    single = json.dumps(event())
    batch = json.dumps({"events": [event(1), event(2)]})
    assert parse_events(single, LIMITS).events == parse_events(single.encode(), LIMITS).events
    assert [e.event_id for e in parse_events(batch, LIMITS).events] == ["evt-1", "evt-2"]
    assert parse_events(single, LIMITS).is_single and not parse_events(batch, LIMITS).is_single


def test_the_body_limit_counts_bytes_not_characters() -> None:
    limits = RequestLimits(max_body_bytes=2_000)
    body = json.dumps(event(context={f"k{i}": "é" * 240 for i in range(6)}), ensure_ascii=False)
    assert len(body) < 2_000 < len(body.encode())
    error = refusal(body, limits)
    assert (error.problem, error.errors[0]["field"]) == (TOO_LARGE, "body")
    assert parse_events(body, LIMITS).events


def test_what_a_request_adds_to_the_state_item_is_bounded() -> None:
    # 20 context values of 200 'é' are 1,200 bytes each once escaped in the log: ~24 KB per event.
    context = {f"k{i}": "é" * 200 for i in range(20)}
    body = json.dumps({"events": [event(n, context=context) for n in range(10)]}, ensure_ascii=False)
    assert len(body.encode()) < LIMITS.max_body_bytes
    error = refusal(body)
    assert (error.problem, error.errors[0]["field"]) == (TOO_LARGE, "events")
    assert "400 KB" in error.errors[0]["message"]
    fewer = json.dumps({"events": [event(n, context=context) for n in range(5)]}, ensure_ascii=False)
    assert len(parse_events(fewer, LIMITS).events) == 5


@pytest.mark.parametrize(
    ("body", "problem", "field"),
    [
        ("", MALFORMED, "body"),
        ("   ", MALFORMED, "body"),
        ("{", MALFORMED, "body"),
        ("[]", INVALID, "body"),
        (json.dumps([event()]), INVALID, "body"),
        ("\ud800", MALFORMED, "body"),
        (json.dumps(event(context={"x": 1})).replace("1}", "NaN}"), INVALID, "context.x"),
        (json.dumps(event(context={"x": 2**53})), INVALID, "context.x"),
        (json.dumps(event(context={"x": 1e-200})), INVALID, "context.x"),
        (json.dumps(event(context={"x": [1]})), INVALID, "context.x"),
        (json.dumps(event(price=math.inf)), INVALID, "price"),
        (json.dumps(event(timestamp="9999-12-31T23:59:59-01:00")), INVALID, "timestamp"),
        (json.dumps(event(timestamp="2100-01-01T00:00:00Z")), INVALID, "timestamp"),
        (json.dumps(event(event_type="rate")), INVALID, "rating"),
        (json.dumps(event(user_id="a/b")), INVALID, "user_id"),
        (json.dumps(event(item_id="...")), INVALID, "item_id"),
        (json.dumps({"events": [event(n) for n in range(26)]}), INVALID, "events"),
        (json.dumps({"events": [event(), event(1, rating=2)]}), INVALID, "events[1].rating"),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(body: str, problem: RequestProblem, field: str) -> None:
    error = refusal(body)
    assert (error.problem, [e["field"] for e in error.errors]) == (problem, [field]), error.errors
    assert field in str(error)


def test_the_bus_detail_goes_through_the_same_bytes() -> None:
    detail = event(context={"note": "é"})
    assert (
        parse_events(detail_bytes(detail), LIMITS).events == parse_events(json.dumps(detail), LIMITS).events
    )
    with pytest.raises(InvalidRequest) as raised:
        detail_bytes({**detail, "price": math.nan})
    assert raised.value.errors[0]["field"] == "detail"


def test_ids_outside_the_character_set_are_refused_wherever_they_come_from() -> None:
    assert parse_identifier("user_id", "a.b:c@d+e=f-g_1") == "a.b:c@d+e=f-g_1"
    for bad in ("", ".", "..", "a/b", "a%2Fb", "a b", "é", "x" * (ID_MAX_LENGTH + 1)):
        with pytest.raises(InvalidRequest) as raised:
            parse_identifier("user_id", bad)
        assert raised.value.errors[0]["field"] == "user_id"


def test_catalog_bodies() -> None:
    item = {"item_id": "item-1", "category": "c", "price": 1.5, "stock": 2}
    assert [i.item_id for i in parse_catalog(json.dumps({"items": [item]}), LIMITS)] == ["item-1"]
    assert (
        parse_item("item-9", json.dumps({"category": "c", "price": 0, "stock": 0}), LIMITS).item_id
        == "item-9"
    )
    with pytest.raises(InvalidRequest) as raised:
        parse_item("a/b", json.dumps({"category": "c", "price": 0, "stock": 0}), LIMITS)
    assert raised.value.errors[0]["field"] == "item_id"
    with pytest.raises(InvalidRequest) as raised:
        parse_catalog(json.dumps({"items": [{**item, "attributes": {"w": 1e308}}]}), LIMITS)
    assert raised.value.errors[0]["field"] == "items[0].attributes.w"


def test_what_is_logged_of_a_refusal_names_no_key_the_caller_chose() -> None:
    hostile_key = "<script>key-9f2e</script>"
    body = event(
        event_type="<b>teleport</b>", context={hostile_key: ["not", "a", "scalar"]}, **{hostile_key: 1}
    )
    refused = refusal(json.dumps({"events": [body]}))

    # The caller's answer names every field in full; the loggable copy redacts the caller's keys.
    assert {e["field"] for e in refused.errors} == {
        "events[0].event_type",
        f"events[0].context.{hostile_key}",
        f"events[0].{hostile_key}",
    }
    assert {e["field"] for e in refused.loggable_errors} == {
        "events[0].event_type",
        "events[0].context.*",
        "events[0].*",
    }
    for text in (json.dumps(refused.loggable_errors), str(refused.redacted())):
        assert "key-9f2e" not in text and "teleport" not in text
    assert refused.redacted().problem is refused.problem
