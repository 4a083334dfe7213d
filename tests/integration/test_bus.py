"""Shopper and catalog events arriving through the EventBridge rule, under moto."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import boto3
import pytest

from nextpick.errors import InvalidRequest
from nextpick.handlers import bus, wiring
from nextpick_local.standin.aws_resources import Stack
from tests.integration.serving import FakeLambdaContext, sample_event


@pytest.fixture
def bus_function(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for name, value in stack.env("BusEventFunction").items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    yield stack
    wiring.reset()


def count(table: str) -> int:
    return int(boto3.client("dynamodb").scan(TableName=table, Select="COUNT")["Count"])


def test_shopper_event_batch_and_duplicates(bus_function: Stack) -> None:
    event = sample_event("bus_shopper_event.json")
    single = event["detail"]
    event["detail"] = {"events": [single, {**single, "event_id": "evt-bus-2"}, single]}
    result = bus.lambda_handler(event, FakeLambdaContext())
    assert [r["status"] for r in result["results"]] == ["accepted", "accepted", "duplicate"]
    again = bus.lambda_handler(event, FakeLambdaContext())  # EventBridge delivers at least once
    assert [r["status"] for r in again["results"]] == ["duplicate"] * 3
    assert count(bus_function.state_table) == 1


def test_catalog_item_event_stores_the_item(bus_function: Stack) -> None:
    result = bus.lambda_handler(sample_event("bus_catalog_item.json"), FakeLambdaContext())
    assert result == {"stored": 1}
    assert count(bus_function.items_table) == 1


@pytest.mark.parametrize(
    ("detail_type", "change"),
    [("ShopperEvent", {"event_type": "teleport"}), ("CatalogItem", {"stock": -3})],
)
def test_invalid_detail_raises_so_it_reaches_the_dead_letter_queue_and_writes_nothing(
    bus_function: Stack, detail_type: str, change: dict[str, object]
) -> None:
    sample = "bus_shopper_event.json" if detail_type == "ShopperEvent" else "bus_catalog_item.json"
    event = copy.deepcopy(sample_event(sample))
    event["detail"].update(change)
    with pytest.raises(InvalidRequest):
        bus.lambda_handler(event, FakeLambdaContext())
    assert count(bus_function.state_table) == count(bus_function.items_table) == 0


def test_unknown_detail_type_is_an_error(bus_function: Stack) -> None:
    event = sample_event("bus_shopper_event.json")
    event["detail-type"] = "SomethingElse"
    with pytest.raises(ValueError, match="SomethingElse"):
        bus.lambda_handler(event, FakeLambdaContext())
