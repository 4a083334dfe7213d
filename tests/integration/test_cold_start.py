"""A new shopper's recommendations through the API handler under moto (docs/trending.md, "A new shopper's
answer"): live trending from the template's TrendingTable first, the published model's trending list for
the rest; a trending table that cannot be read answers with the model's list and says so; a stored rule
set's promotion is named on the picks it placed (docs/rules.md)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from nextpick.adapters.dynamodb_trending import DynamoDbTrending
from nextpick.domain.events import CatalogItem
from nextpick.domain.trending import bucket_key
from nextpick.handlers import api, wiring
from nextpick_local.standin.aws_resources import Stack
from nextpick_training.publish import publish
from tests.conftest import TinyModel
from tests.integration.serving import call, proxy_event

# The model's list as a retrain publishes it (manifest `trending`): best first.
MODEL_TRENDING = [["item-1", 90.0], ["item-9", 80.0], ["item-17", 70.0], ["item-2", 60.0]]
# Live counts of the current hour: item-20 out of stock, "brand-new" unknown to the model.
LIVE = {"item-12": 3.0, "item-5": 4.5, "item-20": 50.0, "brand-new": 40.0}
NEW_SHOPPER = {"scope": "shopper", "principalId": "shopper", "user_id": "newcomer"}


@pytest.fixture
def shop(serving: Stack, dynamodb: Any, tiny_model: TinyModel) -> Iterator[datetime]:
    publish(
        boto3.client("s3"),
        boto3.client("events"),
        serving.model_bucket,
        "models/",
        serving.event_bus,
        tiny_model.tflite,
        **tiny_model.manifest_fields(),
        trending=MODEL_TRENDING,
    )
    items = [
        CatalogItem(item_id=item_id, category=category, price=10.0, stock=0 if item_id == "item-20" else 5)
        for item_id, category in tiny_model.category_of.items()
    ]
    body = {"items": [item.model_dump(mode="json", exclude_none=True) for item in items]}
    assert call(api.lambda_handler, proxy_event("PUT", "/items", body))[0] == 200
    now = datetime.now(UTC)
    trending = DynamoDbTrending(serving.refs["TrendingTable"], max_items=2000, client=dynamodb)
    trending.add(bucket_key("_all", now), 0, LIVE)
    live = replace(wiring.live_trending(), clock=lambda: now)  # an hour turning mid-test changes nothing
    wiring.recommender.cache_clear()  # built again, below, with the clock-fixed live trending
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wiring, "live_trending", lambda: live)
        yield now
        wiring.recommender.cache_clear()


def recommend(user: str = "newcomer", query: str = "k=4") -> dict[str, Any]:
    authorizer = {**NEW_SHOPPER, "user_id": user}
    status, body = call(
        api.lambda_handler,
        proxy_event("GET", f"/users/{user}/recommendations", query=query, authorizer=authorizer),
    )
    assert status == 200, body
    return body


def test_a_new_shopper_gets_live_trending_then_the_models_list(shop: datetime) -> None:
    body = recommend()
    assert body["cold_start"] == "live_trending"
    assert body["recommendations"] == [
        {"item_id": "item-5", "score": 4.5},
        {"item_id": "item-12", "score": 3.0},
        {"item_id": "item-1", "score": 90.0},
        {"item_id": "item-9", "score": 80.0},
    ]
    # Category "garden" (item-17..24): no live item there in stock, so the model's list alone.
    garden = recommend(query="k=4&category=garden")
    assert garden["cold_start"] == "model_trending"
    assert [r["item_id"] for r in garden["recommendations"]] == ["item-17"]


def test_from_the_first_event_the_model_ranks_the_shopper(shop: datetime) -> None:
    event = {
        "event_id": "e-1",
        "user_id": "returning",
        "item_id": "item-3",
        "event_type": "view",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    authorizer = {**NEW_SHOPPER, "user_id": "returning"}
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", event, authorizer=authorizer))
    assert status == 200 and body["status"] == "accepted"
    assert body["cold_start"] is None and len(body["recommendations"]) == 10
    assert recommend("returning")["cold_start"] is None


def test_a_trending_table_fault_answers_with_the_models_list(
    shop: datetime, serving: Stack, dynamodb: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    dynamodb.delete_table(TableName=serving.refs["TrendingTable"])
    body = recommend()
    assert body["cold_start"] == "model_trending_live_unavailable"
    assert [r["item_id"] for r in body["recommendations"]] == ["item-1", "item-9", "item-17", "item-2"]
    out = capsys.readouterr().out
    metrics = [json.loads(line) for line in out.splitlines() if '"_aws"' in line]
    assert any(blob.get("LiveTrendingUnavailable") in (1.0, [1.0]) for blob in metrics)
    assert "newcomer" not in out  # no user id in the log line or the metric
    # GET /trending has no list of its own to fall back on: 503, as before.
    assert call(api.lambda_handler, proxy_event("GET", "/trending"))[0] == 503


def test_a_stored_promotion_is_named_on_the_picks_it_placed(shop: datetime) -> None:
    rule_set = {
        "promotions": [{"name": "storefront", "slots": 2, "items": ["item-22", "item-23", "item-24"]}]
    }
    status, _ = call(api.lambda_handler, proxy_event("PUT", "/rule-sets/storefront", rule_set))
    assert status == 200
    body = recommend(query="k=4&rules=storefront")
    picks = body["recommendations"]
    # Two places for the promotion (none of its items trends: ties by vocabulary position), scored 0.
    promoted = [p for p in picks if "promotion" in p]
    assert len(promoted) == 2 and {p["promotion"] for p in promoted} == {"storefront"}
    assert {p["item_id"] for p in promoted} <= {"item-22", "item-23", "item-24"}
    assert [p["item_id"] for p in picks if "promotion" not in p] == ["item-5", "item-12"]
