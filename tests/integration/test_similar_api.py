"""GET /items/{item_id}/similar through the real API handler under moto (docs/similar.md): the published
tiny model's `similar` signature behind LiteRT, the items table's stock, the business rules and named rule
sets, live trending as the fallback (an item the model does not know yet, a model without the signature),
404 for an unknown item, 422 for bad options."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import numpy as np
import pytest

from nextpick.adapters import model_registry as registry
from nextpick.adapters.dynamodb_trending import DynamoDbTrending
from nextpick.adapters.litert_model import ContractRunner
from nextpick.domain.events import CatalogItem
from nextpick.domain.trending import bucket_key
from nextpick.handlers import api
from nextpick_local.standin.aws_resources import Stack
from nextpick_training.publish import publish
from tests.conftest import TinyModel
from tests.integration.serving import call, proxy_event, publish_model

SHOPPER = {"scope": "shopper", "principalId": "alice", "user_id": "alice"}
SOLD_OUT = "item-2"
NEW_ITEM = "item-new-boot"


def catalog(model: TinyModel) -> list[CatalogItem]:
    return [
        CatalogItem(item_id=item_id, category=category, price=5.0 * n, stock=0 if item_id == SOLD_OUT else 3)
        for n, (item_id, category) in enumerate(model.category_of.items(), start=1)
    ]


@pytest.fixture
def shop(serving: Stack, tiny_model: TinyModel) -> str:
    version = publish_model(serving, tiny_model)
    items = [*catalog(tiny_model), CatalogItem(item_id=NEW_ITEM, category="shoes", price=80.0, stock=2)]
    body = {"items": [item.model_dump(mode="json", exclude_none=True) for item in items]}
    assert call(api.lambda_handler, proxy_event("PUT", "/items", body))[0] == 200
    # Live trending this hour: shoes item-5 > item-3 > item-2 (sold out) > item-1; a book.
    counts = {"item-5": 9.0, "item-3": 6.0, SOLD_OUT: 5.0, "item-1": 3.0, "item-9": 8.0}
    DynamoDbTrending(serving.refs["TrendingTable"], 2000).add(
        bucket_key("_all", datetime.now(UTC)), 0, counts
    )
    return version


def similar(item_id: str, query: str = "", authorizer: dict[str, Any] | None = None) -> tuple[int, Any]:
    return call(
        api.lambda_handler,
        proxy_event("GET", f"/items/{item_id}/similar", query=query, authorizer=authorizer),
    )


def ids(body: dict[str, Any]) -> list[str]:
    return [item["item_id"] for item in body["items"]]


def model_order(model: TinyModel, item_id: str, dropped: set[str]) -> list[str]:
    """The exported signature's own order, read straight from the model bytes."""
    index = model.items.index(item_id)
    exclude = np.array([1.0 if i == 0 or model.items[i] in dropped else 0.0 for i in range(len(model.items))])
    scores = ContractRunner(model.tflite).similar(index, exclude.astype(np.float32))
    assert scores is not None
    allowed = [i for i in np.argsort(-scores, kind="stable") if scores[i] > -1e9]
    return [str(model.items[i]) for i in allowed]


def test_neighbours_come_from_the_models_signature_without_the_item_or_sold_out_items(
    shop: str, tiny_model: TinyModel
) -> None:
    status, body = similar("item-1", "k=5")
    assert status == 200, body
    assert body["item_id"] == "item-1" and body["model_version"] == shop and body["source"] == "model"
    assert ids(body) == model_order(tiny_model, "item-1", {SOLD_OUT})[:5]
    assert "item-1" not in ids(body) and SOLD_OUT not in ids(body)
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(-1.0 - 1e-5 <= s <= 1.0 + 1e-5 for s in scores)
    assert body["took_ms"] >= 0
    # A shopper token may ask too (no personal data in the answer), and k defaults to DEFAULT_K.
    status, as_shopper = similar("item-1", authorizer=SHOPPER)
    assert status == 200 and len(as_shopper["items"]) == 10


def test_rule_options_and_named_rule_sets_apply(shop: str, tiny_model: TinyModel) -> None:
    order = model_order(tiny_model, "item-1", {SOLD_OUT})
    status, body = similar("item-1", f"k=3&exclude_items={order[0]},{order[1]}")
    assert status == 200 and ids(body) == order[2:5]
    status, books = similar("item-1", "k=4&filter=" + quote('category == "books"'))
    assert status == 200 and ids(books) == [i for i in order if tiny_model.category_of[i] == "books"][:4]
    status, capped = similar("item-1", "k=6&max_per_category=2")
    categories = [tiny_model.category_of[i] for i in ids(capped)]
    assert (
        status == 200 and len(capped["items"]) == 6 and all(categories.count(c) == 2 for c in set(categories))
    )
    put = proxy_event("PUT", "/rule-sets/cheap", {"filter": "price < 30"})
    assert call(api.lambda_handler, put)[0] == 200
    status, cheap = similar("item-1", "k=24&rules=cheap")
    prices = {item.item_id: item.price for item in catalog(tiny_model)}
    assert status == 200 and ids(cheap) == [i for i in order if prices[i] < 30]


def test_an_item_the_model_does_not_know_yet_answers_from_trending_in_its_category(shop: str) -> None:
    status, body = similar(NEW_ITEM, "k=10")
    assert status == 200, body
    assert body["source"] == "fallback" and body["model_version"] == shop
    # Shoes trending now, in stock: item-5, item-3, item-1 (item-2 is sold out; item-9 is a book).
    assert ids(body) == ["item-5", "item-3", "item-1"]
    status, ruled = similar(NEW_ITEM, "k=10&exclude_items=item-5&filter=" + quote("price < 20"))
    assert status == 200 and ids(ruled) == ["item-3", "item-1"]


def test_a_model_without_the_signature_answers_from_trending(serving: Stack, tiny_model: TinyModel) -> None:
    """A model published before `similar` existed (here a contract-v1 model) stays servable."""
    from tests.unit.v1_model import export_v1_model

    s3 = boto3.client("s3")
    v1_bytes, v1_state_dim = export_v1_model(tiny_model.items)
    v1 = publish(
        s3, None, serving.model_bucket, "models/", None, v1_bytes, state_dim=v1_state_dim,
        items=tiny_model.items, training_window={}, hyperparameters={}, metrics={},
        created_at=datetime.now(UTC) - timedelta(hours=1), history_slots=0,
    )  # fmt: skip
    key = registry.manifest_key("models/", v1.version)
    manifest = json.loads(s3.get_object(Bucket=serving.model_bucket, Key=key)["Body"].read())
    manifest["format"] = registry.MANIFEST_FORMAT_V1
    for field in ("history_slots", "history_features", "attribute_buckets", "weights_sha256", "lineage"):
        manifest.pop(field, None)
    s3.put_object(Bucket=serving.model_bucket, Key=key, Body=json.dumps(manifest).encode())
    body = {"items": [item.model_dump(mode="json") for item in catalog(tiny_model)]}
    assert call(api.lambda_handler, proxy_event("PUT", "/items", body))[0] == 200
    DynamoDbTrending(serving.refs["TrendingTable"], 2000).add(
        bucket_key("_all", datetime.now(UTC)), 0, {"item-4": 2.0, "item-3": 1.0}
    )
    status, answer = similar("item-3", "k=5")
    assert status == 200, answer
    assert answer["source"] == "fallback" and answer["model_version"] == v1.version
    assert ids(answer) == ["item-4"]


def test_an_unknown_item_is_404_naming_item_id_and_bad_options_are_422(shop: str) -> None:
    status, body = similar("no-such-item")
    assert status == 404 and "item_id" in body["message"], body
    status, body = similar("item-1", "k=101")
    assert status == 422 and "k" in body["message"], body
    status, body = similar("item-1", "filter=" + quote("price <"))
    assert status == 422 and "filter" in body["message"], body
    status, body = similar("item-1", "rules=nothing-stored")
    assert status == 404 and "rules" in body["message"], body
    status, body = similar(quote("bad id!", safe=""))
    assert status == 422 and "item_id" in body["message"], body
