"""Bought together and cart completion through the real API handler, against the template's stack in
moto, with a real (tiny) TFLite model and its bought_together.npz published as a retrain publishes it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import numpy as np
import pytest

from nextpick.adapters import model_artifacts
from nextpick.adapters import model_registry as registry
from nextpick.adapters.dynamodb_trending import DynamoDbTrending
from nextpick.domain.ranking import CandidateMasks
from nextpick.domain.together import PartnerTable
from nextpick.domain.trending import bucket_key
from nextpick.handlers import api
from nextpick_local.standin.aws_resources import Stack
from nextpick_training.publish import publish
from tests.conftest import TinyModel
from tests.integration.serving import call, proxy_event
from tests.integration.test_api import put_catalog, stored_state

# item-1's partners, best first: item-3 is out of stock in these tests.
PARTNERS = {"item-1": [("item-2", 5.0), ("item-3", 4.0), ("item-9", 3.0)], "item-2": [("item-1", 2.0)]}
OUT_OF_STOCK = {"item-3"}


def table_for(model: TinyModel, partners: dict[str, list[tuple[str, float]]] = PARTNERS) -> PartnerTable:
    index = {item: i for i, item in enumerate(model.items) if item is not None}
    rows = np.zeros((len(model.items), 20), np.int32)
    scores = np.zeros((len(model.items), 20), np.float32)
    for item, row in partners.items():
        for rank, (partner, score) in enumerate(row):
            rows[index[item], rank], scores[index[item], rank] = index[partner], score
    return PartnerTable(rows, scores)


def publish_with_table(stack: Stack, model: TinyModel, table: PartnerTable | None, when: datetime) -> str:
    outcome = publish(
        boto3.client("s3"),
        None,
        stack.model_bucket,
        "models/",
        None,
        model.tflite,
        **model.manifest_fields(),
        created_at=when,
        bought_together=model_artifacts.encode_partner_table(table) if table is not None else None,
        bought_together_parameters={"beta": 0.5},
    )
    return outcome.version


@pytest.fixture
def shop(serving: Stack, tiny_model: TinyModel) -> Iterator[str]:
    put_catalog(tiny_model, out_of_stock=OUT_OF_STOCK)
    yield publish_with_table(serving, tiny_model, table_for(tiny_model), datetime(2026, 11, 1, tzinfo=UTC))


def bought_together(item: str, query: str = "", authorizer: dict[str, Any] | None = None) -> tuple[int, Any]:
    return call(
        api.lambda_handler,
        proxy_event("GET", f"/items/{item}/bought-together", query=query, authorizer=authorizer),
    )


def cart(body: Any, query: str = "", authorizer: dict[str, Any] | None = None) -> tuple[int, Any]:
    return call(api.lambda_handler, proxy_event("POST", "/recommendations/cart", body, query, authorizer))


SHOPPER = {"scope": "shopper", "principalId": "shopper", "user_id": "alice"}


def test_bought_together_answers_the_partners_in_stock(shop: str) -> None:
    status, body = bought_together("item-1", authorizer=SHOPPER)
    assert status == 200, body
    assert body["source"] == "model" and body["model_version"] == shop and body["item_id"] == "item-1"
    assert [(i["item_id"], i["score"]) for i in body["items"]] == [("item-2", 5.0), ("item-9", 3.0)]
    assert body["took_ms"] >= 0
    # k and the rules apply; the query item is never its own partner
    assert [i["item_id"] for i in bought_together("item-1", "k=1")[1]["items"]] == ["item-2"]
    assert [i["item_id"] for i in bought_together("item-1", "exclude_items=item-2")[1]["items"]] == ["item-9"]
    assert [i["item_id"] for i in bought_together("item-2")[1]["items"]] == ["item-1"]


def test_without_a_row_the_answer_is_trending_in_the_items_category(
    shop: str, serving: Stack, dynamodb: Any, tiny_model: TinyModel
) -> None:
    table = serving.env("ApiFunction")["TRENDING_TABLE_NAME"]
    trending = DynamoDbTrending(table, max_items=2000, client=dynamodb)
    # item-5 (shoes) has no partners; item-9 is a book, item-3 out of stock
    trending.add(
        bucket_key("_all", datetime.now(UTC)),
        0,
        {"item-4": 3.0, "item-6": 5.0, "item-9": 9.0, "item-3": 9.0, "item-5": 1.0},
    )
    status, body = bought_together("item-5")
    assert status == 200, body
    assert body["source"] == "fallback" and body["model_version"] == shop
    assert [i["item_id"] for i in body["items"]] == ["item-6", "item-4"]


@pytest.mark.parametrize("query", ["k=0", "k=1001", "max_per_category=0", "filter=price%20%3C", "rules=nope"])
def test_bad_options_are_refused_naming_them(shop: str, query: str) -> None:
    status, body = bought_together("item-1", query)
    assert status in (404, 422), body
    assert query.split("=")[0] in body["message"]


def test_an_unknown_item_is_404_naming_item_id(shop: str) -> None:
    status, body = bought_together("no-such-item")
    assert status == 404 and "item_id" in body["message"], body


def test_the_cart_is_completed_without_its_items_and_nothing_is_written(shop: str, serving: Stack) -> None:
    assert stored_state(serving, "alice") is None
    status, body = cart({"items": ["item-1", "item-4"], "user_id": "alice"}, "k=10", SHOPPER)
    assert status == 200, body
    assert body["user_id"] == "alice" and body["model_version"] == shop and body["model_status"] == "live"
    returned = [r["item_id"] for r in body["recommendations"]]
    assert len(returned) == 10 and not {"item-1", "item-4", "item-3"} & set(returned)
    assert all(isinstance(r["score"], float) for r in body["recommendations"])
    assert stored_state(serving, "alice") is None  # nothing written
    # an anonymous cart (no user_id) is answered too, from zeros
    status, body = cart({"items": ["item-1"]}, authorizer=SHOPPER)
    assert (
        status == 200
        and body["user_id"] is None
        and "item-1" not in [r["item_id"] for r in body["recommendations"]]
    )


def test_a_shopper_may_only_name_their_own_user(shop: str) -> None:
    status, body = cart({"items": ["item-1"], "user_id": "bob"}, authorizer=SHOPPER)
    assert status == 403 and "user_id" in body["message"], body


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"items": []}, 422, "items"),
        ({"items": ["item-1", "item-1"]}, 422, "items"),
        ({"items": [f"item-{n}" for n in range(51)]}, 422, "items"),
        ({"items": ["item-1"], "user_id": 7}, 422, "user_id"),
        ({"items": ["item-1", "ghost"]}, 404, "items[1]"),
        ("not json", 400, "body"),
    ],
)
def test_a_bad_cart_names_its_field_and_changes_nothing(
    shop: str, serving: Stack, body: Any, status: int, field: str
) -> None:
    answer_status, answer = cart(body)
    assert answer_status == status and field in answer["message"], answer
    assert boto3.client("dynamodb").scan(TableName=serving.state_table)["Count"] == 0


def test_a_corrupt_table_refuses_its_version_and_the_previous_model_stays(
    shop: str, serving: Stack, s3: Any, tiny_model_v2: TinyModel
) -> None:
    assert bought_together("item-1")[1]["model_version"] == shop
    newer = publish_with_table(
        serving, tiny_model_v2, table_for(tiny_model_v2), datetime(2026, 11, 2, tzinfo=UTC)
    )
    # The object is replaced after the publish verified it (a bit flip at rest).
    key = registry.bought_together_key("models/", newer)
    s3.put_object(Bucket=serving.model_bucket, Key=key, Body=b"not the published bytes")
    status, body = bought_together("item-1")
    assert status == 200 and body["model_version"] == shop and body["source"] == "model"
    status, body = cart({"items": ["item-1"]})
    assert status == 200 and body["model_version"] == shop and body["model_status"] == "fallback"


def test_a_model_without_the_artifact_answers_from_trending(serving: Stack, tiny_model: TinyModel) -> None:
    put_catalog(tiny_model)
    version = publish_with_table(serving, tiny_model, None, datetime(2026, 11, 3, tzinfo=UTC))
    manifest = json.loads(
        boto3.client("s3")
        .get_object(Bucket=serving.model_bucket, Key=f"models/{version}/manifest.json")["Body"]
        .read()
    )
    assert manifest["bought_together"] is None
    status, body = bought_together("item-1")
    assert status == 200 and body["source"] == "fallback" and body["model_version"] == version
    status, body = cart({"items": ["item-1"]})
    assert status == 200 and len(body["recommendations"]) == 10


def test_the_table_is_read_once_per_version_not_per_call(shop: str, serving: Stack, s3: Any) -> None:
    assert bought_together("item-1")[1]["source"] == "model"  # loads the version and its table
    # Gone from the bucket now: a container that read it per call would fall back or fail.
    s3.delete_object(Bucket=serving.model_bucket, Key=registry.bought_together_key("models/", shop))
    for _ in range(3):
        status, body = bought_together("item-1")
        assert status == 200 and body["source"] == "model" and body["model_version"] == shop


def test_every_ranking_route_of_a_container_shares_one_build_of_the_masks(
    shop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recommendations, similar items, bought together and the cart read the same (model, catalog
    snapshot): the container builds its stock and rule columns once, not once per route."""
    builds: list[str] = []
    original = CandidateMasks.build

    def counted(model: Any, snapshot: Any) -> CandidateMasks:
        builds.append(model.version)
        return original(model, snapshot)

    monkeypatch.setattr(CandidateMasks, "build", staticmethod(counted))
    recommendations = call(api.lambda_handler, proxy_event("GET", "/users/alice/recommendations"))
    similar = call(api.lambda_handler, proxy_event("GET", "/items/item-1/similar"))
    assert recommendations[0] == similar[0] == 200
    assert bought_together("item-1")[0] == 200
    assert cart({"items": ["item-1"]})[0] == 200
    assert builds == [shop]
