"""Live trending under moto (docs/trending.md): the log shipper adds each logged stream batch to the hour
buckets of the template's TrendingTable, a broken trending table does not fail shipping, and
`GET /trending` answers the decayed, in-stock order through the API handler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nextpick.adapters.dynamodb_state import DynamoDbStateRepository
from nextpick.adapters.dynamodb_trending import DynamoDbTrending
from nextpick.domain.events import CatalogItem, ReviewEvent, SearchEvent
from nextpick.domain.impressions import CONTROL_VARIANT, is_recommendation_id
from nextpick.domain.state import StateLimits, UserState, apply_events
from nextpick.domain.trending import bucket_key
from nextpick.handlers import api, log_shipper, wiring
from nextpick_local.standin.aws_resources import Stack
from tests.integration.serving import FakeLambdaContext, call, proxy_event
from tests.integration.spy import Spy
from tests.integration.test_log_shipper import (
    NOW,
    logged_lines,
    stream_event,
    tracked,
)
from tests.integration.test_log_shipper import (
    shipper as shipper_environment,  # noqa: F401 - the shipper's Lambda environment, as a fixture
)


def trending_table(stack: Stack) -> str:
    return stack.refs["TrendingTable"]


def stored_counts(dynamodb: Any, stack: Stack, bucket: str) -> tuple[dict[str, float], int]:
    item = dynamodb.get_item(TableName=trending_table(stack), Key={"bucket": {"S": bucket}})["Item"]
    counts = {item_id: float(value["N"]) for item_id, value in item["counts"]["M"].items()}
    return counts, int(item["expires_at"]["N"])


def emitted_metrics(out: str) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for line in out.splitlines():
        if '"_aws"' not in line:
            continue
        blob = json.loads(line)
        for name in ("EventsLogged", "TrendingUpdateFailed", "TrendingItemsDropped"):
            if name in blob:
                value = blob[name]
                found.setdefault(name, []).extend(value if isinstance(value, list) else [value])
    return found


@pytest.mark.usefixtures("shipper_environment")
def test_the_shipper_adds_each_logged_batch_to_its_hour_bucket(
    stack: Stack, dynamodb: Any, dynamodbstreams: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(dynamodb)
    trending = DynamoDbTrending(trending_table(stack), max_items=2000, client=spy)
    monkeypatch.setattr(log_shipper, "trending", lambda: trending)
    repo = DynamoDbStateRepository(stack.state_table, client=dynamodb)
    state, _ = apply_events(
        UserState.new("user-1"),
        [tracked("e1"), tracked("e2", "click"), tracked("e3", "purchase", item_id="item-2")],
        None,
        StateLimits(),
        NOW,
    )
    repo.save(state)
    event = stream_event(dynamodb, dynamodbstreams, stack.state_table)

    assert log_shipper.lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    bucket = bucket_key("_all", NOW)
    counts, expires_at = stored_counts(dynamodb, stack, bucket)
    # view 0.5 + click 0.75 on item-1; purchase 2.0 on item-2 (history.EVENT_INTENT).
    assert counts == {"item-1": 1.25, "item-2": 2.0}
    assert expires_at == int((NOW + timedelta(hours=48)).timestamp())
    # The hour's first write: the update finds no bucket, the conditional put creates it. Nothing read.
    assert [name for name, _ in spy.calls] == ["update_item", "put_item"]

    # A later batch adds to the same bucket (the UpdateItem path, the bucket existing).
    assert log_shipper.lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    assert stored_counts(dynamodb, stack, bucket)[0] == {"item-1": 2.5, "item-2": 4.0}
    assert [name for name, _ in spy.calls[2:]] == ["update_item"]  # one call per bucket and batch


@pytest.mark.usefixtures("shipper_environment")
def test_a_search_counts_its_clicks_and_a_review_its_rating_not_the_querys_matches(
    stack: Stack, dynamodb: Any, dynamodbstreams: Any, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    trending = DynamoDbTrending(trending_table(stack), max_items=2000, client=dynamodb)
    monkeypatch.setattr(log_shipper, "trending", lambda: trending)
    search = SearchEvent.model_validate(
        {
            "event_id": "s1",
            "user_id": "user-1",
            "event_type": "search",
            "query": "garden",
            "clicked_items": ["item-3"],
            "timestamp": NOW,
        }
    ).resolved(["item-1", "item-2"])
    review = ReviewEvent.model_validate(
        {
            "event_id": "r1",
            "user_id": "user-1",
            "event_type": "review",
            "item_id": "item-4",
            "rating": 2,
            "text": "Meh.",
            "timestamp": NOW,
        }
    )
    state, _ = apply_events(UserState.new("user-1"), [search, review], None, StateLimits(), NOW)
    DynamoDbStateRepository(stack.state_table, client=dynamodb).save(state)
    event = stream_event(dynamodb, dynamodbstreams, stack.state_table)

    assert log_shipper.lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    # click 0.75 on the clicked item, rate 1.0 on the reviewed one; the query's matches count nothing.
    assert stored_counts(dynamodb, stack, bucket_key("_all", NOW))[0] == {"item-3": 0.75, "item-4": 1.0}
    # The log keeps both whole: the resolution and the text, for training.
    logged = {json.loads(line)["event_id"]: json.loads(line) for line in logged_lines(s3, stack)}
    assert logged["s1"]["matched_items"] == ["item-1", "item-2"] and logged["r1"]["text"] == "Meh."


@pytest.mark.usefixtures("shipper_environment")
def test_a_broken_trending_table_does_not_fail_shipping(
    stack: Stack,
    dynamodb: Any,
    dynamodbstreams: Any,
    s3: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = DynamoDbStateRepository(stack.state_table, client=dynamodb)
    state, _ = apply_events(UserState.new("user-1"), [tracked("e1")], None, StateLimits(), NOW)
    repo.save(state)
    event = stream_event(dynamodb, dynamodbstreams, stack.state_table)
    dynamodb.delete_table(TableName=trending_table(stack))
    capsys.readouterr()

    assert log_shipper.lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}

    assert [json.loads(line)["event_id"] for line in logged_lines(s3, stack)] == ["e1"]
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["EventsLogged"] == [1.0] and metrics["TrendingUpdateFailed"] == [1.0]


def test_a_full_bucket_keeps_counting_its_items_and_drops_new_ones(stack: Stack, dynamodb: Any) -> None:
    trending = DynamoDbTrending(trending_table(stack), max_items=3, client=dynamodb)
    bucket, expires = bucket_key("_all", NOW), 1

    assert trending.add(bucket, expires, {"a": 1.0, "b": 2.0}) == 0  # created
    assert trending.add(bucket, expires, {"c": 0.5}) == 0  # 3 of 3
    # Full: "a" and "c" are held and still counted, "d" and "e" are new and dropped.
    assert trending.add(bucket, expires, {"a": 1.0, "c": 0.5, "d": 9.0, "e": 9.0}) == 2
    assert trending.add(bucket, expires, {"d": 1.0}) == 1
    assert stored_counts(dynamodb, stack, bucket)[0] == {"a": 2.0, "b": 2.0, "c": 1.0}
    assert trending.read([bucket, bucket_key("_all", NOW - timedelta(hours=1))]) == {
        bucket: {"a": 2.0, "b": 2.0, "c": 1.0}
    }


@pytest.fixture
def shop(serving: Stack, dynamodb: Any) -> Iterator[datetime]:
    """Four items (one out of stock) and counts in the current hour and 6 h before; the API's clock
    fixed, so an hour turning mid-test changes nothing."""
    items = [
        CatalogItem(item_id="shoe-1", category="shoes", price=10.0, stock=5),
        CatalogItem(item_id="shoe-2", category="shoes", price=10.0, stock=5),
        CatalogItem(item_id="hat-1", category="hats", price=10.0, stock=5),
        CatalogItem(item_id="hat-gone", category="hats", price=10.0, stock=0),
    ]
    body = {"items": [item.model_dump(mode="json", exclude_none=True) for item in items]}
    assert call(api.lambda_handler, proxy_event("PUT", "/items", body))[0] == 200
    now = datetime(2026, 11, 30, 6, 30, tzinfo=UTC)
    trending = DynamoDbTrending(trending_table(serving), max_items=2000, client=dynamodb)
    # Half-life 6 h (the default): shoe-1 8 x 0.5 + 1 = 5.0; shoe-2 4.5; hat-1 3.0; hat-gone 50 (no stock).
    trending.add(bucket_key("_all", now), 0, {"shoe-1": 1.0, "shoe-2": 4.5, "hat-1": 3.0, "hat-gone": 50.0})
    trending.add(bucket_key("_all", now - timedelta(hours=6)), 0, {"shoe-1": 8.0})
    # Older than the 24-hour window: never read.
    trending.add(bucket_key("_all", now - timedelta(hours=24)), 0, {"hat-1": 1000.0})
    live = wiring.live_trending()
    # Undone before `serving` resets the wiring's caches.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wiring, "live_trending", lambda: replace(live, clock=lambda: now))
        yield now


def test_get_trending_answers_the_decayed_in_stock_order(shop: datetime) -> None:
    status, body = call(api.lambda_handler, proxy_event("GET", "/trending"))
    assert status == 200
    assert is_recommendation_id(body.pop("recommendation_id"))  # docs/attribution.md
    assert body == {
        "model_version": None,
        "variant": CONTROL_VARIANT,
        "items": [
            {"item_id": "shoe-1", "score": 5.0},
            {"item_id": "shoe-2", "score": 4.5},
            {"item_id": "hat-1", "score": 3.0},
        ],
        "category": None,
        "window_hours": 24,
        "half_life_hours": 6.0,
    }
    status, body = call(api.lambda_handler, proxy_event("GET", "/trending", query="category=hats&k=5"))
    assert status == 200 and body["items"] == [{"item_id": "hat-1", "score": 3.0}]
    assert body["category"] == "hats"
    status, body = call(api.lambda_handler, proxy_event("GET", "/trending", query="k=1"))
    assert status == 200 and [i["item_id"] for i in body["items"]] == ["shoe-1"]


@pytest.mark.parametrize("scope", ["admin", "server", "shopper"])
def test_every_scope_may_read_trending(shop: datetime, scope: str) -> None:
    authorizer = {"scope": scope, "principalId": scope}
    if scope == "shopper":
        authorizer["user_id"] = "shopper-1"
    status, _ = call(api.lambda_handler, proxy_event("GET", "/trending", authorizer=authorizer))
    assert status == 200


@pytest.mark.parametrize("query", ["k=0", "k=1001", "k=101", "k=x", "category="])
def test_bad_parameters_are_422_naming_them(serving: Stack, query: str) -> None:
    status, body = call(api.lambda_handler, proxy_event("GET", "/trending", query=query))
    assert status == 422
    assert query.split("=")[0] in json.dumps(body)


def test_a_missing_trending_table_is_503(serving: Stack, dynamodb: Any) -> None:
    dynamodb.delete_table(TableName=trending_table(serving))
    status, _ = call(api.lambda_handler, proxy_event("GET", "/trending"))
    assert status == 503
