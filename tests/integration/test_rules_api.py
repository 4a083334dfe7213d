"""Business rules through the API handler under moto (docs/rules.md, "On the API"): the query options,
named rule sets and their scopes, against a small catalog with prices and brands and the real tiny
model. Expected answers come from the brute-force reading of docs/rules.md (tests/unit/rules_reference)
fed with the model's own unruled scores."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import pytest

from nextpick.adapters.s3_rule_sets import S3RuleSetStore
from nextpick.domain.events import CatalogItem
from nextpick.domain.rules import MAX_PROMOTIONS, RuleSet
from nextpick.handlers import api
from nextpick_local.standin.aws_resources import Stack
from tests.conftest import TinyModel
from tests.integration.serving import call, proxy_event, publish_model
from tests.unit.rules_reference import Reference, Request

USER = "shopper-1"
ADMIN = {"scope": "admin", "principalId": "admin"}
SERVER = {"scope": "server", "principalId": "server"}
K = 10


def catalog(model: TinyModel) -> dict[str, CatalogItem]:
    """Prices 5, 10, ... by vocabulary position; brands brand-0..2 in turn."""
    return {
        item_id: CatalogItem(
            item_id=item_id,
            category=category,
            price=5.0 * (n + 1),
            stock=5,
            attributes={"brand": f"brand-{n % 3}"},
        )
        for n, (item_id, category) in enumerate(model.category_of.items())
    }


@pytest.fixture
def shop(serving: Stack, tiny_model: TinyModel) -> dict[str, CatalogItem]:
    publish_model(serving, tiny_model)
    items = catalog(tiny_model)
    body = {"items": [item.model_dump(mode="json", exclude_none=True) for item in items.values()]}
    assert call(api.lambda_handler, proxy_event("PUT", "/items", body))[0] == 200
    assert call(api.lambda_handler, proxy_event("POST", "/events", event(1)))[0] == 200
    return items


def event(n: int, item: str = "item-2") -> dict[str, Any]:
    timestamp = (datetime.now(UTC) - timedelta(minutes=10) + timedelta(seconds=n)).isoformat()
    return {
        "event_id": f"e-{n}",
        "user_id": USER,
        "item_id": item,
        "event_type": "view",
        "timestamp": timestamp,
    }


def recommend(query: str = "", k: int = K) -> tuple[int, Any]:
    return call(
        api.lambda_handler, proxy_event("GET", f"/users/{USER}/recommendations", query=f"k={k}&{query}")
    )


def ids(body: dict[str, Any]) -> list[str]:
    return [r["item_id"] for r in body["recommendations"]]


def expected(model: TinyModel, items: dict[str, CatalogItem], rules: RuleSet) -> list[str]:
    """docs/rules.md's reading of `rules` over the model's unruled scores for the same shopper."""
    status, everything = recommend(k=len(model.items) - 1)
    assert status == 200 and len(everything["recommendations"]) == len(model.items) - 1
    score = {r["item_id"]: r["score"] for r in everything["recommendations"]}
    vocabulary = [item for item in model.items[1:] if item is not None]
    request = Request(vocabulary, items, [0.0, *(score[i] for i in vocabulary)], rules, K)
    return [item_id for item_id, _ in Reference(request).top_k()]


def put_rule_set(name: str, body: Any, authorizer: dict[str, Any] = ADMIN) -> tuple[int, Any]:
    return call(api.lambda_handler, proxy_event("PUT", f"/rule-sets/{name}", body, authorizer=authorizer))


# --------------------------------------------------------------------------------- query options


@pytest.mark.parametrize(
    ("query", "rules"),
    [
        (
            "filter=" + quote('price < 70 and brand != "brand-1"'),
            RuleSet(filter='price < 70 and brand != "brand-1"'),
        ),
        ("max_per_category=2", RuleSet(max_per_category=2)),
        ("exclude_items=item-1,item-9,item-17", RuleSet(exclude_items=("item-1", "item-9", "item-17"))),
        (
            "filter=" + quote("price >= 20") + "&max_per_category=3&exclude_items=item-5",
            RuleSet(filter="price >= 20", max_per_category=3, exclude_items=("item-5",)),
        ),
    ],
    ids=["filter", "max_per_category", "exclude_items", "all three"],
)
def test_each_option_ranks_as_the_rules_say(
    shop: dict[str, CatalogItem], tiny_model: TinyModel, query: str, rules: RuleSet
) -> None:
    status, body = recommend(query)
    assert status == 200, body
    answer = ids(body)
    assert answer == expected(tiny_model, shop, rules)
    assert answer != ids(recommend()[1])  # the option changed the answer
    for item_id in answer:
        item = shop[item_id]
        if rules.filter == "price >= 20":
            assert item.price is not None and item.price >= 20
        assert item_id not in rules.exclude_items
    if rules.max_per_category is not None:
        categories = [shop[i].category for i in answer]
        assert max(categories.count(c) for c in categories) <= rules.max_per_category


def test_post_events_takes_the_same_options(shop: dict[str, CatalogItem], tiny_model: TinyModel) -> None:
    query = f"k={K}&filter=" + quote('brand == "brand-2"') + "&exclude_items=item-3"
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", event(2, "item-2"), query))
    assert status == 200 and body["status"] == "accepted", body
    answer = ids(body)
    assert answer and all(shop[i].attributes["brand"] == "brand-2" and i != "item-3" for i in answer)
    assert answer == expected(
        tiny_model, shop, RuleSet(filter='brand == "brand-2"', exclude_items=("item-3",))
    )


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("filter=" + quote("price <"), "filter", "position 8:"),
        ("filter=" + quote('colour == "red"'), "filter", "position 1:"),
        ("filter=", "filter", "is empty"),
        ("max_per_category=0", "max_per_category", ""),
        ("exclude_items=item-1,,item-2", "exclude_items[1]", ""),
        ("exclude_items=" + ",".join(f"i{n}" for n in range(501)), "exclude_items", "500"),
        ("rules=" + quote("no such!"), "rules", ""),
    ],
)
def test_a_bad_option_is_a_422_naming_it_and_applies_nothing(
    shop: dict[str, CatalogItem], query: str, field: str, message: str
) -> None:
    status, body = recommend(query)
    assert status == 422, body
    assert [e["field"] for e in body["errors"]] == [field], body
    assert body["errors"][0]["message"].startswith(message) or message in body["errors"][0]["message"], body
    # POST /events with the same option: refused, and the event is not tracked.
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", event(3), query))
    assert status == 422 and [e["field"] for e in body["errors"]] == [field], body
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", event(3)))
    assert status == 200 and body["status"] == "accepted", body


# ----------------------------------------------------------------------------------- named sets

SPRING = {
    "filter": "price <= 100",
    "promotions": [{"name": "spring", "slots": 2, "items": ["item-19", "item-20"]}],
    "max_per_category": 4,
}


def test_rule_sets_are_stored_read_and_deleted_by_the_admin(shop: dict[str, CatalogItem]) -> None:
    status, body = put_rule_set("spring", SPRING)
    assert (status, body) == (200, {"name": "spring", "status": "stored"})
    for scope in (ADMIN, SERVER):
        status, body = call(api.lambda_handler, proxy_event("GET", "/rule-sets/spring", authorizer=scope))
        assert status == 200 and RuleSet.model_validate(body) == RuleSet.model_validate(SPRING), body
    stored = boto3.client("s3").get_object(Bucket=shop_bucket(), Key="rules/spring.json")["Body"].read()
    assert RuleSet.model_validate_json(stored) == RuleSet.model_validate(SPRING)
    status, body = call(api.lambda_handler, proxy_event("DELETE", "/rule-sets/spring"))
    assert (status, body) == (200, {"name": "spring", "status": "deleted"})
    for method in ("GET", "DELETE"):
        status, body = call(api.lambda_handler, proxy_event(method, "/rule-sets/spring"))
        assert status == 404 and body["errors"][0]["field"] == "name", body
    status, body = recommend("rules=spring")
    assert status == 404 and body["errors"] == [
        {"field": "rules", "message": "no rule set is named 'spring'"}
    ]


def shop_bucket() -> str:
    from nextpick.settings import get_settings

    return get_settings().model_bucket_name


def test_the_server_scope_may_read_but_not_write_or_delete(shop: dict[str, CatalogItem]) -> None:
    status, body = put_rule_set("spring", SPRING, authorizer=SERVER)
    assert status == 403, body
    assert call(api.lambda_handler, proxy_event("GET", "/rule-sets/spring"))[0] == 404  # nothing stored
    assert put_rule_set("spring", SPRING)[0] == 200
    status, _ = call(api.lambda_handler, proxy_event("DELETE", "/rule-sets/spring", authorizer=SERVER))
    assert status == 403
    shopper = {"scope": "shopper", "principalId": USER, "user_id": USER}
    assert call(api.lambda_handler, proxy_event("GET", "/rule-sets/spring", authorizer=shopper))[0] == 403
    assert call(api.lambda_handler, proxy_event("GET", "/rule-sets/spring"))[0] == 200  # still there


@pytest.mark.parametrize(
    ("name", "body", "status", "field"),
    [
        ("spring", {**SPRING, "filters": "price < 3"}, 422, "filters"),
        ("spring", {"filter": "price <"}, 422, "filter"),
        (
            "spring",
            {
                "promotions": [
                    {"name": f"p{n}", "slots": 1, "items": ["item-1"]} for n in range(MAX_PROMOTIONS + 1)
                ]
            },
            422,
            "promotions",
        ),
        (
            "spring",
            {"pinned": [{"item_id": "item-1", "position": 1}, {"item_id": "item-1", "position": 2}]},
            422,
            "pinned",
        ),
        ("spring", {"exclude_items": ["item-1"] * 501}, 422, "exclude_items"),
        ("spring", {"exclude_items": ["x" * 120] * 2500}, 413, "body"),
        ("spring", "{not json", 400, "body"),
        (quote("bad name!"), SPRING, 422, "name"),
    ],
    ids=[
        "unknown field",
        "bad filter",
        "too many promotions",
        "pinned twice",
        "cart too long",
        "too large",
        "not json",
        "bad name",
    ],
)
def test_a_bad_rule_set_is_refused_and_nothing_is_stored(
    shop: dict[str, CatalogItem], name: str, body: Any, status: int, field: str
) -> None:
    answer_status, answer = put_rule_set(name, body)
    assert answer_status == status, answer
    assert field in {
        e["field"].split(".")[0].split("[")[0] for e in answer.get("errors", [{"field": "body"}])
    }, answer
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=shop_bucket(), Prefix="rules/")


def test_a_stored_promotion_shows_up_in_recommendations(
    shop: dict[str, CatalogItem], tiny_model: TinyModel
) -> None:
    plain = ids(recommend()[1])
    promoted = [i for i in reversed(ids(recommend(k=len(tiny_model.items) - 1)[1])) if shop[i].price <= 100][
        :2
    ]
    assert not set(promoted) & set(plain)  # the two worst-ranked: never shown unpromoted
    rules = {**SPRING, "promotions": [{"name": "spring", "slots": 2, "items": promoted}]}
    assert put_rule_set("spring", rules)[0] == 200
    status, body = recommend("rules=spring")
    assert status == 200, body
    assert set(promoted) <= set(ids(body))
    assert ids(body) == expected(tiny_model, shop, RuleSet.model_validate(rules))
    # And on POST /events: the answer carries the promotion as well.
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", event(4), f"k={K}&rules=spring"))
    assert status == 200 and set(promoted) <= set(ids(body)), body


def test_request_options_merge_over_the_stored_set(
    shop: dict[str, CatalogItem], tiny_model: TinyModel
) -> None:
    assert (
        put_rule_set("house", {"filter": "price <= 80", "max_per_category": 4, "exclude_items": ["item-4"]})[
            0
        ]
        == 200
    )
    query = "rules=house&filter=" + quote('brand != "brand-0"') + "&max_per_category=2&exclude_items=item-6"
    status, body = recommend(query)
    assert status == 200, body
    merged = RuleSet(
        filter='(price <= 80) and (brand != "brand-0")',
        max_per_category=2,
        exclude_items=("item-4", "item-6"),
    )
    assert ids(body) == expected(tiny_model, shop, merged)
    assert all(shop[i].price <= 80 and shop[i].attributes["brand"] != "brand-0" for i in ids(body))
    # A request filter that makes the pair too long is refused on `filter`.
    status, body = recommend("rules=house&filter=" + quote("price > 1" + " or price > 1" * 75))
    assert status == 422 and body["errors"][0]["field"] == "filter", body
    assert "stored rule set" in body["errors"][0]["message"], body


def test_missing_set_on_post_events_is_a_404_and_nothing_is_tracked(shop: dict[str, CatalogItem]) -> None:
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", event(5), "rules=nope"))
    assert status == 404 and body["errors"][0]["field"] == "rules", body
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", event(5)))
    assert status == 200 and body["status"] == "accepted", body


def test_another_container_sees_a_change_within_its_refresh(stack: Stack) -> None:
    class Clock:
        now = 0.0

        def __call__(self) -> float:
            return self.now

    clock = Clock()
    writer = S3RuleSetStore(stack.model_bucket, refresh_seconds=30, clock=clock)
    reader = S3RuleSetStore(stack.model_bucket, refresh_seconds=30, clock=clock)
    assert reader.cached("spring") is None
    spring = RuleSet.model_validate(SPRING)
    writer.put("spring", spring)
    assert writer.cached("spring") == spring  # the writing container: at once
    clock.now = 29.9
    assert reader.cached("spring") is None  # the absence is cached too
    clock.now = 30.0
    assert reader.cached("spring") == spring
    assert writer.delete("spring") and not writer.delete("spring")
    clock.now = 59.9
    assert reader.cached("spring") == spring
    clock.now = 60.0
    assert reader.cached("spring") is None
