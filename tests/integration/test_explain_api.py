"""`?explain=true` through the real API handler under moto (docs/explanations.md): each pick carries
`because` (the shopper's own items and their shares, from the published model's `explain` signature) on
GET /users/{user_id}/recommendations and in POST /events answers; answers that did not ask do not
change; a bad value is a 422 naming `explain` that writes nothing; a model without the signature (here
contract v1) is still served, without `because`."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from nextpick.adapters import model_registry as registry
from nextpick.handlers import api
from nextpick_local.standin.aws_resources import Stack
from nextpick_training.publish import publish
from tests.conftest import TinyModel
from tests.integration.serving import call, proxy_event, publish_model

NOW = datetime.now(UTC).replace(microsecond=0)
SHOPPER_ITEMS = ["item-1", "item-2", "item-3", "item-9"]


def event(n: int, item: str, kind: str = "purchase", user: str = "alice") -> dict[str, Any]:
    ts = (NOW - timedelta(hours=2) + timedelta(minutes=n)).isoformat()
    return {
        "event_id": f"e-{user}-{n}",
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "timestamp": ts,
    }


def put_catalog(model: TinyModel) -> None:
    items = [{"item_id": i, "category": c, "price": 10.0, "stock": 5} for i, c in model.category_of.items()]
    assert call(api.lambda_handler, proxy_event("PUT", "/items", {"items": items}))[0] == 200


def recommendations(user: str, query: str = "") -> tuple[int, Any]:
    return call(api.lambda_handler, proxy_event("GET", f"/users/{user}/recommendations", query=query))


@pytest.fixture
def shop(serving: Stack, tiny_model: TinyModel) -> str:
    version = publish_model(serving, tiny_model)
    put_catalog(tiny_model)
    body = {
        "events": [event(n, item, "view" if n % 2 else "purchase") for n, item in enumerate(SHOPPER_ITEMS)]
    }
    assert call(api.lambda_handler, proxy_event("POST", "/events", body))[0] == 200
    return version


def check_because(picks: list[dict[str, Any]]) -> None:
    assert picks
    for pick in picks:
        because = pick["because"]
        assert 1 <= len(because) <= 2, pick
        assert {reason["item_id"] for reason in because} <= set(SHOPPER_ITEMS), pick
        shares = [reason["share"] for reason in because]
        assert all(0 < share <= 1 for share in shares) and sum(shares) <= 1.0 + 1e-9, pick
        assert shares == sorted(shares, reverse=True), pick


def test_get_recommendations_explains_each_pick_only_when_asked(shop: str) -> None:
    status, plain = recommendations("alice", "k=8")
    assert status == 200, plain
    assert all("because" not in pick for pick in plain["recommendations"])
    status, explained = recommendations("alice", "k=8&explain=true")
    assert status == 200, explained
    check_because(explained["recommendations"])
    # Explaining changes nothing else: same picks, same scores, same answer fields (each answer has its
    # own recommendation_id: two answers, two impressions).
    stripped = [{k: v for k, v in p.items() if k != "because"} for p in explained["recommendations"]]
    assert stripped == plain["recommendations"]
    per_answer = ("recommendations", "took_ms", "recommendation_id")
    assert {k: v for k, v in explained.items() if k not in per_answer} == {
        k: v for k, v in plain.items() if k not in per_answer
    }
    assert explained["recommendation_id"] != plain["recommendation_id"]
    status, off = recommendations("alice", "k=8&explain=false")
    assert status == 200 and all("because" not in pick for pick in off["recommendations"])


def test_post_events_answers_carry_because_when_asked(shop: str) -> None:
    status, single = call(
        api.lambda_handler, proxy_event("POST", "/events", event(10, "item-3", "view"), "k=5&explain=true")
    )
    assert status == 200 and single["status"] == "accepted", single
    check_because(single["recommendations"])
    batch = {"events": [event(11, "item-2", "click"), event(0, "item-5", user="bob")]}
    status, answer = call(api.lambda_handler, proxy_event("POST", "/events", batch, "k=5&explain=1"))
    assert status == 200, answer
    alice = next(user for user in answer["users"] if user["user_id"] == "alice")
    check_because(alice["recommendations"])
    status, plain = call(
        api.lambda_handler, proxy_event("POST", "/events", event(12, "item-1", "view"), "k=5")
    )
    assert status == 200 and all("because" not in pick for pick in plain["recommendations"])


def test_a_new_shopper_has_nothing_to_cite(shop: str) -> None:
    """No events, no own items: a trending answer carries no `because`, a model's answer an empty one."""
    status, answer = recommendations("nobody-yet", "k=5&explain=true")
    assert status == 200 and answer["recommendations"], answer
    assert all(p.get("because", []) == [] for p in answer["recommendations"])


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_bad_explain_value_is_a_422_naming_explain_and_writes_nothing(serving: Stack, method: str) -> None:
    path = "/users/alice/recommendations" if method == "GET" else "/events"
    body = event(1, "item-1") if method == "POST" else None
    status, answer = call(api.lambda_handler, proxy_event(method, path, body, "explain=maybe"))
    assert status == 422 and "explain" in answer["message"], answer
    assert boto3.client("dynamodb").scan(TableName=serving.state_table)["Count"] == 0


def test_a_model_without_the_signature_is_served_without_because(
    serving: Stack, tiny_model: TinyModel
) -> None:
    from tests.unit.v1_model import export_v1_model

    s3 = boto3.client("s3")
    v1_bytes, v1_state_dim = export_v1_model(tiny_model.items)
    v1 = publish(
        s3, None, serving.model_bucket, "models/", None, v1_bytes, state_dim=v1_state_dim,
        items=tiny_model.items, training_window={}, hyperparameters={}, metrics={}, history_slots=0,
    )  # fmt: skip
    key = registry.manifest_key("models/", v1.version)
    manifest = json.loads(s3.get_object(Bucket=serving.model_bucket, Key=key)["Body"].read())
    manifest["format"] = registry.MANIFEST_FORMAT_V1
    for field in ("history_slots", "history_features", "attribute_buckets", "weights_sha256", "lineage"):
        manifest.pop(field, None)
    s3.put_object(Bucket=serving.model_bucket, Key=key, Body=json.dumps(manifest).encode())
    put_catalog(tiny_model)
    status, answer = call(
        api.lambda_handler, proxy_event("POST", "/events", event(1, "item-1"), "k=5&explain=true")
    )
    assert status == 200 and answer["model_version"] == v1.version, answer
    assert answer["recommendations"] and all("because" not in p for p in answer["recommendations"])


def test_the_openapi_document_has_explain_and_because(serving: Stack) -> None:
    status, document = call(api.lambda_handler, proxy_event("GET", "/swagger", query="format=json"))
    assert status == 200
    operation = document["paths"]["/users/{user_id}/recommendations"]["get"]
    assert "explain" in {parameter["name"] for parameter in operation["parameters"]}
    assert "explain" in {p["name"] for p in document["paths"]["/events"]["post"]["parameters"]}
    schemas = document["components"]["schemas"]
    assert "because" in schemas["Recommendation"]["properties"]
    assert set(schemas["Because"]["properties"]) == {"item_id", "share"}
