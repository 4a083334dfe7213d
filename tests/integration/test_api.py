"""The REST API end to end under moto: real resolver, real DynamoDB/S3 semantics, real TFLite model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import numpy as np

from nextpick.adapters.litert_model import LiteRTModel
from nextpick.adapters.model_registry import MANIFEST_FORMAT
from nextpick.domain.events import EventType
from nextpick.domain.history import ItemHistory
from nextpick.handlers import api
from nextpick_local.standin.aws_resources import Stack
from tests.conftest import TinyModel
from tests.integration.serving import call, proxy_event, publish_model, sample_event

NOW = datetime.now(UTC).replace(microsecond=0)


def tracked(n: int, user: str = "shopper-1", item: str = "item-2", kind: str = "view", **extra: Any) -> dict:
    ts = (NOW - timedelta(minutes=30) + timedelta(seconds=n)).isoformat()
    return {
        "event_id": f"evt-{user}-{n}",
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "timestamp": ts,
        **extra,
    }


def history_input(model: LiteRTModel, events: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Contract v2: rank also sees the shopper's own items, as of now (built as serving builds it)."""
    history = ItemHistory[str]()
    for e in events:
        ts = datetime.fromisoformat(e["timestamp"]).timestamp()
        history.observe(e["item_id"], EventType(e["event_type"]).code, 1.0, ts)
    return history.model_input(model.item_index, datetime.now(UTC).timestamp(), model.history_slots)


def stored_state(stack: Stack, user_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = (
        boto3.client("dynamodb")
        .get_item(TableName=stack.state_table, Key={"user_id": {"S": user_id}}, ConsistentRead=True)
        .get("Item")
    )
    return item


def put_catalog(model: TinyModel, out_of_stock: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    items = [
        {"item_id": i, "category": c, "price": 10.0, "stock": 0 if i in out_of_stock else 5}
        for i, c in model.category_of.items()
    ]
    status, _ = call(api.lambda_handler, proxy_event("PUT", "/items", {"items": items}))
    assert status == 200


def test_before_the_first_model_events_are_kept_and_the_answer_is_empty(serving: Stack) -> None:
    status, body = call(api.lambda_handler, sample_event("api_post_event.json"))
    assert status == 200, body
    assert body["status"] == "accepted"
    assert body["model_version"] is None and body["recommendations"] == []
    state = stored_state(serving, "user-42")
    assert state is not None and "vector" not in state


def test_post_event_answers_with_recommendations_that_reflect_it(
    serving: Stack, tiny_model: TinyModel
) -> None:
    version = publish_model(serving, tiny_model)
    put_catalog(tiny_model)
    _, cold = call(api.lambda_handler, proxy_event("GET", "/users/shopper-1/recommendations", query="k=5"))
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", tracked(1, item="item-20"), "k=5"))
    assert status == 200, body
    assert body["model_version"] == version and len(body["recommendations"]) == 5
    assert cold["model_version"] == version
    # The answer is the model's ranking of the state folded from exactly this event.
    model = LiteRTModel(
        tiny_model.tflite, {"format": MANIFEST_FORMAT, "version": version, **tiny_model.manifest_fields()}
    )
    state = model.update(
        np.zeros(model.state_dim, np.float32), model.item_index("item-20"), EventType.VIEW.code, 1.0
    )
    exclude = np.zeros(len(model.items), np.float32)
    exclude[0] = 1
    inputs = history_input(model, [tracked(1, item="item-20")])
    expected = [model.items[i] for i in np.argsort(-model.rank(state, exclude, *inputs), kind="stable")[:5]]
    assert [r["item_id"] for r in body["recommendations"]] == expected
    assert [r["item_id"] for r in body["recommendations"]] != [r["item_id"] for r in cold["recommendations"]]
    # The read path answers from the stored state: the same list.
    _, again = call(api.lambda_handler, proxy_event("GET", "/users/shopper-1/recommendations", query="k=5"))
    assert again["recommendations"] == body["recommendations"]


def test_batch_reports_every_event_and_every_user(serving: Stack, tiny_model: TinyModel) -> None:
    publish_model(serving, tiny_model)
    batch = {"events": [tracked(1), tracked(2, user="shopper-2"), tracked(1), tracked(3, kind="purchase")]}
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", batch))
    assert status == 200, body
    assert [r["status"] for r in body["results"]] == ["accepted", "accepted", "duplicate", "accepted"]
    assert [u["user_id"] for u in body["users"]] == ["shopper-1", "shopper-2"]
    assert "item-2" not in [r["item_id"] for r in body["users"][0]["recommendations"]]  # bought: excluded


def test_duplicate_delivery_changes_nothing_and_answers_the_same(
    serving: Stack, tiny_model: TinyModel
) -> None:
    publish_model(serving, tiny_model)
    event = proxy_event("POST", "/events", tracked(1, item="item-9"))
    _, first = call(api.lambda_handler, event)
    before = stored_state(serving, "shopper-1")
    _, second = call(api.lambda_handler, event)
    assert second["status"] == "duplicate"
    assert stored_state(serving, "shopper-1") == before
    assert second["recommendations"] == first["recommendations"]


def test_purchased_items_are_excluded_by_default_and_allowed_on_request(
    serving: Stack, tiny_model: TinyModel
) -> None:
    publish_model(serving, tiny_model)
    call(api.lambda_handler, proxy_event("POST", "/events", tracked(1, item="item-3", kind="purchase")))
    _, default = call(
        api.lambda_handler, proxy_event("GET", "/users/shopper-1/recommendations", query="k=23")
    )
    _, allowed = call(
        api.lambda_handler,
        proxy_event("GET", "/users/shopper-1/recommendations", query="k=24&exclude_purchased=false"),
    )
    assert "item-3" not in [r["item_id"] for r in default["recommendations"]]
    assert "item-3" in [r["item_id"] for r in allowed["recommendations"]]


def test_out_of_stock_never_appears_and_category_filters(serving: Stack, tiny_model: TinyModel) -> None:
    publish_model(serving, tiny_model)
    put_catalog(tiny_model, out_of_stock={"item-1", "item-2"})
    _, body = call(api.lambda_handler, proxy_event("POST", "/events", tracked(1, item="item-1"), "k=100"))
    ids = [r["item_id"] for r in body["recommendations"]]
    assert len(ids) == 22 and not {"item-1", "item-2"} & set(ids)
    status, _ = call(
        api.lambda_handler,
        proxy_event("PUT", "/items/item-5", {"category": "shoes", "price": 1.0, "stock": 0, "title": "Gone"}),
    )
    assert status == 200
    _, body = call(
        api.lambda_handler,
        proxy_event("GET", "/users/shopper-1/recommendations", query="k=100&category=shoes"),
    )
    ids = [r["item_id"] for r in body["recommendations"]]
    assert set(ids) == {f"item-{i}" for i in (3, 4, 6, 7, 8)}


def test_new_model_version_is_picked_up_and_users_keep_their_history(
    serving: Stack, tiny_model: TinyModel, tiny_model_v2: TinyModel
) -> None:
    publish_model(serving, tiny_model)
    for n, item in enumerate(["item-17", "item-18", "item-19"]):
        call(api.lambda_handler, proxy_event("POST", "/events", tracked(n, item=item)))
    v2 = publish_model(serving, tiny_model_v2)
    _, body = call(api.lambda_handler, proxy_event("GET", "/users/shopper-1/recommendations", query="k=5"))
    _, cold = call(api.lambda_handler, proxy_event("GET", "/users/nobody/recommendations", query="k=5"))
    assert body["model_version"] == v2
    model = LiteRTModel(
        tiny_model_v2.tflite, {"format": MANIFEST_FORMAT, "version": v2, **tiny_model_v2.manifest_fields()}
    )
    state = np.zeros(model.state_dim, np.float32)
    for item in ["item-17", "item-18", "item-19"]:
        state = model.update(state, model.item_index(item), EventType.VIEW.code, 1.0)
    exclude = np.zeros(len(model.items), np.float32)
    exclude[0] = 1
    inputs = history_input(
        model, [tracked(n, item=item) for n, item in enumerate(["item-17", "item-18", "item-19"])]
    )
    expected = [model.items[i] for i in np.argsort(-model.rank(state, exclude, *inputs), kind="stable")[:5]]
    assert [r["item_id"] for r in body["recommendations"]] == expected
    assert body["recommendations"] != cold["recommendations"]
    # The next event stores the state rebuilt under the new version.
    call(api.lambda_handler, proxy_event("POST", "/events", tracked(9, item="item-19")))
    assert stored_state(serving, "shopper-1")["model_version"] == {"S": v2}  # type: ignore[index]


def test_a_corrupted_artifact_is_never_served(
    serving: Stack, tiny_model: TinyModel, tiny_model_v2: TinyModel
) -> None:
    v1 = publish_model(serving, tiny_model)
    _, body = call(api.lambda_handler, proxy_event("GET", "/users/u/recommendations"))
    assert body["model_version"] == v1
    v2 = publish_model(serving, tiny_model_v2)
    s3 = boto3.client("s3")
    s3.put_object(Bucket=serving.model_bucket, Key=f"models/{v2}/model.tflite", Body=tiny_model.tflite)
    _, body = call(api.lambda_handler, proxy_event("GET", "/users/u/recommendations"))
    assert body["model_version"] == v1


def test_model_route_reports_the_live_version(serving: Stack, tiny_model: TinyModel) -> None:
    _, body = call(api.lambda_handler, sample_event("api_get_model.json"))
    assert body == {"model_version": None}
    version = publish_model(serving, tiny_model)
    status, body = call(api.lambda_handler, sample_event("api_get_model.json"))
    assert status == 200 and body["model_version"] == version and body["num_items"] == 25


BAD_REQUESTS = [
    ("POST", "/events", {**tracked(1), "event_type": "like"}, "", 422, "event_type"),
    ("POST", "/events", {**tracked(1), "user_id": "x" * 129}, "", 422, "user_id"),
    ("POST", "/events", {**tracked(1), "item_id": "two words"}, "", 422, "item_id"),
    (
        "POST",
        "/events",
        {**tracked(1), "timestamp": (NOW + timedelta(days=1)).isoformat()},
        "",
        422,
        "timestamp",
    ),
    ("POST", "/events", {**tracked(1), "event_type": "rate"}, "", 422, "rating"),
    ("POST", "/events", {**tracked(1), "quantity": -2}, "", 422, "quantity"),
    ("POST", "/events", {k: v for k, v in tracked(1).items() if k != "user_id"}, "", 422, "user_id"),
    ("POST", "/events", {"events": [tracked(1), {**tracked(2), "rating": 9}]}, "", 422, "events[1].rating"),
    ("POST", "/events", {"events": [tracked(n) for n in range(26)]}, "", 422, "events"),
    ("POST", "/events", {"events": []}, "", 422, "events"),
    ("POST", "/events", "{not json", "", 400, "body"),
    ("POST", "/events", tracked(1), "k=0", 422, "k"),
    ("POST", "/events", tracked(1), "k=5000", 422, "k"),
    ("POST", "/events", tracked(1), "exclude_purchased=maybe", 422, "exclude_purchased"),
    ("POST", "/events", {**tracked(1), "context": {"note": "x" * 300_000}}, "", 413, "body"),
    ("GET", "/users/bad%20id/recommendations", None, "", 422, "user_id"),
    ("PUT", "/items/item-1", {"category": "shoes", "price": 1.0, "stock": -1}, "", 422, "stock"),
    ("PUT", "/items/item-1", {"category": "", "price": 1.0, "stock": 1}, "", 422, "category"),
    (
        "PUT",
        "/items",
        {"items": [{"item_id": "a", "category": "c", "price": "free", "stock": 1}]},
        "",
        422,
        "items[0].price",
    ),
]


def test_bad_input_gets_a_4xx_naming_the_field_and_writes_nothing(serving: Stack) -> None:
    # One stack for the whole table (building one costs a second); each row must leave it empty.
    dynamodb = boto3.client("dynamodb")
    for method, path, body, query, status, field in BAD_REQUESTS:
        event = proxy_event(method, path, body, query)
        if path.startswith("/users/"):
            event["pathParameters"] = {"user_id": "bad id"}
        got_status, got = call(api.lambda_handler, event)
        case = f"{method} {path}?{query} -> {got}"
        assert got_status == status, case
        assert field in got["message"], case
        assert dynamodb.scan(TableName=serving.state_table)["Count"] == 0, case
        assert dynamodb.scan(TableName=serving.items_table)["Count"] == 0, case


def test_unknown_route_is_a_404(serving: Stack) -> None:
    status, body = call(api.lambda_handler, proxy_event("DELETE", "/events"))
    assert status in (404, 405) and "message" in body
