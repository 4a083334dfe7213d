"""Search and review events through the real API and bus handlers, on template.yaml's resources in moto,
ranked by a real (tiny) TFLite model: a search moves the next ranking toward what it names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from nextpick.errors import InvalidRequest
from nextpick.handlers import api, bus, wiring
from nextpick_local.standin.aws_resources import Stack
from tests.conftest import TinyModel
from tests.integration.serving import FakeLambdaContext, call, proxy_event, publish_model, sample_event

NOW = datetime.now(UTC).replace(microsecond=0)


def at(n: int) -> str:
    return (NOW - timedelta(minutes=30) + timedelta(seconds=n)).isoformat()


def search(n: int, user: str, query: str, **extra: Any) -> dict[str, Any]:
    return {"event_id": f"s-{user}-{n}", "user_id": user, "event_type": "search", "query": query,
            "timestamp": at(n), **extra}  # fmt: skip


def review(n: int, user: str, item: str, rating: int, **extra: Any) -> dict[str, Any]:
    return {"event_id": f"r-{user}-{n}", "user_id": user, "event_type": "review", "item_id": item,
            "rating": rating, "timestamp": at(n), **extra}  # fmt: skip


def view(n: int, user: str, item: str) -> dict[str, Any]:
    return {
        "event_id": f"v-{user}-{n}",
        "user_id": user,
        "event_type": "view",
        "item_id": item,
        "timestamp": at(n),
    }


def stored(stack: Stack, user_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = (
        boto3.client("dynamodb")
        .get_item(TableName=stack.state_table, Key={"user_id": {"S": user_id}}, ConsistentRead=True)
        .get("Item")
    )
    return item


def shop(stack: Stack, model: TinyModel) -> None:
    items = [
        {"item_id": i, "category": c, "price": 10.0, "stock": 5, "title": f"{c.title()} thing {i}"}
        for i, c in model.category_of.items()
    ]
    assert call(api.lambda_handler, proxy_event("PUT", "/items", {"items": items}))[0] == 200
    publish_model(stack, model)


def in_category(model: TinyModel, answer: dict[str, Any], category: str) -> int:
    return sum(model.category_of[r["item_id"]] == category for r in answer["recommendations"])


def post(body: Any) -> tuple[int, Any]:
    return call(api.lambda_handler, proxy_event("POST", "/events", body, query="k=8"))


def test_a_search_shifts_the_next_ranking_toward_the_category_it_names(
    serving: Stack, tiny_model: TinyModel
) -> None:
    shop(serving, tiny_model)
    status, before = post(view(1, "shopper-1", "item-9"))  # a books item (items 9-16)
    assert status == 200 and tiny_model.category_of["item-9"] == "books"
    status, after = post(search(2, "shopper-1", "garden tools"))
    assert status == 200 and after["status"] == "accepted", after
    assert in_category(tiny_model, after, "garden") > in_category(tiny_model, before, "garden")
    # The resolution is stored: five garden items (all match "garden" once; ties by id), each a 0.2 view.
    recent = json.loads(stored(serving, "shopper-1")["recent"]["S"])  # type: ignore[index]
    assert recent[1:] == [[f"item-{n}", "view", 0.2] for n in (17, 18, 19, 20, 21)]
    # A redelivery changes nothing: same answer, no write.
    version = stored(serving, "shopper-1")["version"]  # type: ignore[index]
    status, again = post(search(2, "shopper-1", "garden tools"))
    assert status == 200 and again["status"] == "duplicate"
    assert again["recommendations"] == after["recommendations"]
    assert stored(serving, "shopper-1")["version"] == version  # type: ignore[index]


def test_a_search_matching_nothing_is_accepted_and_moves_nothing(
    serving: Stack, tiny_model: TinyModel
) -> None:
    shop(serving, tiny_model)
    status, before = post(view(1, "shopper-2", "item-2"))
    status, after = post(search(2, "shopper-2", "submarine"))
    assert status == 200 and after["status"] == "accepted"
    assert after["recommendations"] == before["recommendations"]
    assert json.loads(stored(serving, "shopper-2")["outbox"]["L"][0]["S"])["matched_items"] == []  # type: ignore[index]


def test_a_review_is_a_rating_and_its_text_is_logged_not_folded(
    serving: Stack, tiny_model: TinyModel
) -> None:
    shop(serving, tiny_model)
    text = "Sturdy.\nThe handle broke after a week — ★★"
    status, reviewed = post(review(1, "shopper-3", "item-18", 2, text=text))
    status_rate, rated = post({**review(1, "shopper-4", "item-18", 2), "event_type": "rate", "event_id": "x"})
    assert status == status_rate == 200
    assert reviewed["recommendations"] == rated["recommendations"]  # folded exactly as a rate of 2/5
    item = stored(serving, "shopper-3")
    assert item is not None and text not in item["recent"]["S"]
    (record,) = [json.loads(v["S"]) for v in item["outbox"]["L"]]
    assert record["text"] == text and record["rating"] == 2
    exported = call(api.lambda_handler, proxy_event("GET", "/users/shopper-3/data"))[1]
    assert exported["state"]["last_write_events"][0]["text"] == text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_id": "b1", "user_id": "shopper-5", "event_type": "search", "timestamp": at(1)}, "query"),
        (search(1, "shopper-5", "shoes", item_id="item-1"), "item_id"),
        (search(1, "shopper-5", "shoes", clicked_items=["item-1"] * 21), "clicked_items"),
        (review(1, "shopper-5", "item-1", 9), "rating"),
        (review(1, "shopper-5", "item-1", 3, text="a\x00b"), "text"),
        ({"events": [view(1, "shopper-5", "item-1"), search(2, "shopper-5", "")]}, "events[1].query"),
    ],
)
def test_bad_search_or_review_is_a_422_naming_the_field_and_changes_nothing(
    serving: Stack, tiny_model: TinyModel, body: dict[str, Any], field: str
) -> None:
    shop(serving, tiny_model)
    status, answer = post(body)
    assert status == 422 and field in answer["message"], answer
    assert stored(serving, "shopper-5") is None


@pytest.fixture
def bus_function(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for name, value in stack.env("BusEventFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODEL_REFRESH_SECONDS", "0")
    wiring.reset()
    yield stack
    wiring.reset()


def test_search_and_review_through_the_bus(
    bus_function: Stack, tiny_model: TinyModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop(bus_function, tiny_model)
    event = sample_event("bus_shopper_event.json")
    event["detail"] = {"events": [search(1, "shopper-6", "garden", clicked_items=["item-20"]),
                                  review(2, "shopper-6", "item-20", 5, text="Lovely")]}  # fmt: skip
    result = bus.lambda_handler(event, FakeLambdaContext())
    assert [r["status"] for r in result["results"]] == ["accepted", "accepted"]
    again = bus.lambda_handler(event, FakeLambdaContext())  # EventBridge delivers at least once
    assert [r["status"] for r in again["results"]] == ["duplicate", "duplicate"]
    recent = json.loads(stored(bus_function, "shopper-6")["recent"]["S"])  # type: ignore[index]
    assert recent == [
        *([f"item-{n}", "view", 0.2] for n in (17, 18, 19, 20, 21)),
        ["item-20", "click", 1.0],
        ["item-20", "rate", 1.0],
    ]
    bad = sample_event("bus_shopper_event.json")
    bad["detail"] = review(3, "shopper-7", "item-1", 0)
    with pytest.raises(InvalidRequest):
        bus.lambda_handler(bad, FakeLambdaContext())
    assert stored(bus_function, "shopper-7") is None
