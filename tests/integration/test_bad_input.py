"""Bad input, all of it, against the real handlers on the template's resources in moto.

First the cases found by hand (issue 10), one row each; then hypothesis throwing arbitrary JSON,
arbitrary strings and boundary numbers at every route and at the bus handler. Whatever comes in,
nothing answers 5xx, and an answer of 4xx (or a bus delivery that raises) wrote nothing: no DynamoDB
write call at all (so nothing reaches the table's stream, hence nothing the event log), no item
changed."""

from __future__ import annotations

import base64
import copy
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nextpick.domain.events import ID_MAX_LENGTH, ID_PATTERN
from nextpick.errors import InvalidRequest
from nextpick.handlers import api, bus, wiring
from nextpick_local.standin.aws_resources import Stack
from tests.conftest import TinyModel
from tests.integration.serving import FakeLambdaContext, call, proxy_event, publish_model, sample_event

NOW = datetime.now(UTC).replace(microsecond=0)
WRITE_OPERATIONS = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
WRITE_OPERATIONS |= {"PutRecord", "PutRecordBatch", "PutObject", "PutEvents"}
PROPERTY_SETTINGS = settings(
    # Each example is a few handler calls on moto: 60 keep the suite within a minute or two.
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def valid_event(n: int = 0, **change: Any) -> dict[str, Any]:
    return {
        "event_id": f"evt-{n}",
        "user_id": "shopper-1",
        "item_id": "item-2",
        "event_type": "view",
        "timestamp": (NOW - timedelta(minutes=5)).isoformat(),
        **change,
    }


@dataclass
class Writes:
    """Every AWS write call the handlers make (through boto3's default session)."""

    calls: list[str] = field(default_factory=list)

    def record(self, model: Any, **_: Any) -> None:
        if model.name in WRITE_OPERATIONS:
            self.calls.append(model.name)


@dataclass
class World:
    stack: Stack
    writes: Writes

    def items(self) -> list[dict[str, Any]]:
        dynamodb = boto3.client("dynamodb")
        return [
            item
            for table in (self.stack.state_table, self.stack.items_table)
            for item in dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
        ]


@pytest.fixture
def world(stack: Stack, tiny_model: TinyModel, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Both serving functions' environment from the template, a published model, writes recorded."""
    for name, value in {**stack.env("BusEventFunction"), **stack.env("ApiFunction")}.items():
        monkeypatch.setenv(name, value)
    publish_model(stack, tiny_model)
    writes = Writes()
    session = boto3.Session()
    session.events.register("before-call", writes.record)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    wiring.reset()
    yield World(stack, writes)
    wiring.reset()


def assert_documented_error(status: int, body: Any) -> None:
    assert 400 <= status < 500, (status, body)
    assert isinstance(body, dict) and isinstance(body["message"], str), body
    for error in body.get("errors", []):
        assert set(error) == {"field", "message"} and error["field"] in body["message"], body


def api_call(world: World, event: dict[str, Any]) -> tuple[int, Any]:
    """The API handler on `event`; asserts no 5xx, and that a 4xx wrote nothing."""
    before, writes_before = world.items(), len(world.writes.calls)
    status, body = call(api.lambda_handler, event)
    assert status < 500, (status, body, event.get("path"), event.get("body"))
    if status >= 400:
        assert_documented_error(status, body)
        assert world.writes.calls[writes_before:] == [], (status, body)
        assert world.items() == before
    return status, body


def bus_call(world: World, detail_type: str, detail: Any) -> dict[str, Any] | None:
    """The bus handler on `detail`; it either succeeds or raises InvalidRequest having written nothing."""
    event = copy.deepcopy(sample_event("bus_shopper_event.json"))
    event["detail-type"], event["detail"] = detail_type, detail
    before, writes_before = world.items(), len(world.writes.calls)
    try:
        result: dict[str, Any] = bus.lambda_handler(event, FakeLambdaContext())
    except InvalidRequest as error:
        assert error.errors, error
        assert world.writes.calls[writes_before:] == []
        assert world.items() == before
        return None
    return result


def with_headers(event: dict[str, Any], **headers: str) -> dict[str, Any]:
    event = copy.deepcopy(event)
    event["headers"] = {**(event.get("headers") or {}), **headers}
    event["multiValueHeaders"] = {name: [value] for name, value in event["headers"].items()}
    return event


def utf8(value: Any) -> str:
    """JSON as a shop would send it: non-ASCII characters as themselves, not as \\u escapes."""
    return json.dumps(value, ensure_ascii=False)


def big_context() -> dict[str, str]:
    # 20 values of 256 characters outside the BMP: 1 KiB each in UTF-8, 3 KiB each once escaped in the log.
    return {f"k{i}": "\U0001f600" * 256 for i in range(20)}


def accented_context() -> dict[str, str]:
    # 20 values of 200 'é': 400 bytes each in UTF-8, 1,200 once escaped (\u00e9) in the event log.
    return {f"k{i}": "é" * 200 for i in range(20)}


# ------------------------------------------------------------------------------------------ the table

NAN_BODY = json.dumps(valid_event(1, context={"score": 0})).replace("0}", "NaN}")
INF_BODY = json.dumps(valid_event(1, price=1.0)).replace("1.0", "Infinity")

# (case, event, status, field): every case of issue 10 and its neighbours.
CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("JSON array body", proxy_event("POST", "/events", [valid_event(1), valid_event(2)]), 422, "body"),
    ("NaN in context", proxy_event("POST", "/events", NAN_BODY), 422, "context.score"),
    ("Infinity as price", proxy_event("POST", "/events", INF_BODY), 422, "price"),
    (
        "timestamp past datetime.max in UTC",
        proxy_event("POST", "/events", valid_event(1, timestamp="9999-12-31T23:59:59-01:00")),
        422,
        "timestamp",
    ),
    (
        "timestamp before datetime.min in UTC",
        proxy_event("POST", "/events", valid_event(1, timestamp="0001-01-01T00:00:00+01:00")),
        422,
        "timestamp",
    ),
    (
        "timestamp in 2150",
        proxy_event("POST", "/events", valid_event(1, timestamp="2150-01-01T00:00:00Z")),
        422,
        "timestamp",
    ),
    (
        "25 events of non-ASCII context (fits the body limit, not the state item)",
        proxy_event(
            "POST",
            "/events",
            utf8({"events": [valid_event(n, context=accented_context()) for n in range(25)]}),
        ),
        413,
        "events",
    ),
    (
        "body over 256 KiB counted in bytes (under it in characters)",
        proxy_event(
            "POST", "/events", utf8({"events": [valid_event(n, context=big_context()) for n in range(13)]})
        ),
        413,
        "body",
    ),
    (
        "26 events",
        proxy_event("POST", "/events", {"events": [valid_event(n) for n in range(26)]}),
        422,
        "events",
    ),
    ("user_id with '/'", proxy_event("POST", "/events", valid_event(1, user_id="shop/42")), 422, "user_id"),
    ("user_id '..'", proxy_event("POST", "/events", valid_event(1, user_id="..")), 422, "user_id"),
    (
        "item id with '/' in a catalog batch",
        proxy_event(
            "PUT", "/items", {"items": [{"item_id": "a/b", "category": "c", "price": 1, "stock": 1}]}
        ),
        422,
        "items[0].item_id",
    ),
    (
        "base64 flag on a body that is not base64",
        {**proxy_event("POST", "/events", valid_event(1)), "isBase64Encoded": True},
        400,
        "body",
    ),
    (
        "text/plain",
        with_headers(proxy_event("POST", "/events", valid_event(1)), **{"Content-Type": "text/plain"}),
        415,
        "Content-Type",
    ),
    ("rate without rating", proxy_event("POST", "/events", valid_event(1, event_type="rate")), 422, "rating"),
    ("rating on a view", proxy_event("POST", "/events", valid_event(1, rating=3)), 422, "rating"),
    (
        "integer beyond 2**53 in context",
        proxy_event("POST", "/events", valid_event(1, context={"n": 2**60})),
        422,
        "context.n",
    ),
    ("5,000-digit integer", proxy_event("POST", "/events", NAN_BODY.replace("NaN", "9" * 5000)), 400, "body"),
    ("empty body", proxy_event("POST", "/events", ""), 400, "body"),
    ("body not JSON", proxy_event("POST", "/events", "{nope"), 400, "body"),
    (
        "PUT /items/{id} with NaN price",
        proxy_event("PUT", "/items/item-1", '{"category": "c", "price": NaN, "stock": 1}'),
        422,
        "price",
    ),
    (
        "price 5e-324 (below DynamoDB's smallest number)",
        proxy_event("PUT", "/items/item-1", {"category": "c", "price": 5e-324, "stock": 1}),
        422,
        "price",
    ),
    (
        "attribute 1e308 (above DynamoDB's largest number)",
        proxy_event(
            "PUT",
            "/items",
            {
                "items": [
                    {"item_id": "a", "category": "c", "price": 1, "stock": 1, "attributes": {"w": 1e308}}
                ]
            },
        ),
        422,
        "items[0].attributes.w",
    ),
    ("GET with an id with '%2F'", proxy_event("GET", "/users/shop%2F42/recommendations"), 422, "user_id"),
]


@pytest.mark.parametrize(("case", "event", "status", "field"), CASES, ids=[c[0] for c in CASES])
def test_each_bad_input_case_is_a_4xx_naming_the_field_and_writes_nothing(
    world: World, case: str, event: dict[str, Any], status: int, field: str
) -> None:
    got_status, body = api_call(world, event)
    assert (got_status, field in [e["field"] for e in body.get("errors", [])]) == (status, True), body
    assert world.writes.calls == [] and world.items() == []


def test_the_bus_takes_the_same_limits_and_messages_as_the_api(world: World) -> None:
    too_many = {"events": [valid_event(n) for n in range(26)]}
    _, api_body = api_call(world, proxy_event("POST", "/events", too_many))
    with pytest.raises(InvalidRequest) as raised:
        bus_call_raising(world, "ShopperEvent", too_many)
    assert raised.value.errors == api_body["errors"]
    for detail in (
        valid_event(1, event_type="rate"),
        valid_event(1, user_id="a/b"),
        {"events": [valid_event(1)] * 0},
    ):
        _, api_body = api_call(world, proxy_event("POST", "/events", detail))
        with pytest.raises(InvalidRequest) as raised:
            bus_call_raising(world, "ShopperEvent", detail)
        assert raised.value.errors == api_body["errors"]
    with pytest.raises(InvalidRequest):
        bus_call_raising(world, "ShopperEvent", {**valid_event(1), "price": math.nan})
    assert world.writes.calls == [] and world.items() == []


def bus_call_raising(world: World, detail_type: str, detail: Any) -> None:
    event = copy.deepcopy(sample_event("bus_shopper_event.json"))
    event["detail-type"], event["detail"] = detail_type, detail
    bus.lambda_handler(event, FakeLambdaContext())


def test_a_valid_base64_body_is_accepted(world: World) -> None:
    event = proxy_event("POST", "/events", valid_event(1))
    event.update(body=base64.b64encode(event["body"].encode()).decode(), isBase64Encoded=True)
    status, body = api_call(world, event)
    assert (status, body["status"]) == (200, "accepted")


def test_the_bus_ingests_without_ranking(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_ranking(*_: Any, **__: Any) -> None:
        raise AssertionError("the bus path ranked")

    monkeypatch.setattr(wiring.recommender(), "_recommend", no_ranking)
    result = bus_call(world, "ShopperEvent", valid_event(1))
    assert result == {"results": [{"event_id": "evt-1", "status": "accepted"}]}
    assert world.writes.calls == ["PutItem"]


# ------------------------------------------------------------------------------------------ properties

BOUNDARY_NUMBERS = st.sampled_from(
    [
        *(0, -1, 1, 5, 6, 2**53 - 1, 2**53, -(2**53), 2**63, 2**64, 10**30, -0.0, 0.5, 1e-320, 1e308),
        *(math.nan, math.inf, -math.inf, 10_000_000, 10_000_001, 1_000_000_000, 1_000_000_001),
    ]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | BOUNDARY_NUMBERS | st.text(max_size=40)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=10,
)
EVENT_FIELDS = [*valid_event(), "session_id", "quantity", "price", "rating", "context", "unknown"]
IDS = st.from_regex(ID_PATTERN, fullmatch=True).filter(lambda s: len(s) <= ID_MAX_LENGTH)


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with one to three fields replaced by arbitrary JSON (or removed)."""
    event = valid_event(draw(st.integers(0, 10**6)))
    for name in draw(st.lists(st.sampled_from(EVENT_FIELDS), min_size=1, max_size=3)):
        if draw(st.booleans()) and name in event:
            del event[name]
        else:
            event[name] = draw(JSON_VALUES)
    return event


EVENT_BODIES = (
    mutated_events()
    | st.builds(
        lambda events: {"events": events}, st.lists(mutated_events() | st.just(valid_event()), max_size=27)
    )
    | JSON_VALUES
)
CATALOG_BODIES = (
    JSON_VALUES
    | st.fixed_dictionaries({"category": JSON_VALUES, "price": BOUNDARY_NUMBERS, "stock": BOUNDARY_NUMBERS})
    | st.builds(
        lambda items: {"items": items},
        st.lists(
            st.fixed_dictionaries(
                {
                    "item_id": st.text(max_size=20) | IDS,
                    "category": st.text(max_size=5),
                    "price": BOUNDARY_NUMBERS,
                    "stock": BOUNDARY_NUMBERS,
                }
            ),
            max_size=3,
        ),
    )
)


def encoded(value: Any, how: str) -> str:
    if how == "json":
        return json.dumps(value)  # Python writes NaN and Infinity as bare tokens: good bad input
    return str(value)


@PROPERTY_SETTINGS
@given(
    body=EVENT_BODIES,
    how=st.sampled_from(["json", "json", "json", "repr"]),
    query=st.sampled_from(
        ["", "k=0", "k=3", "k=x", "k=100000000000000000000", "category=", "exclude_purchased=maybe"]
    ),
)
def test_post_events_never_answers_5xx_and_a_4xx_writes_nothing(
    world: World, body: Any, how: str, query: str
) -> None:
    api_call(world, proxy_event("POST", "/events", encoded(body, how), query))


@PROPERTY_SETTINGS
@given(
    body=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    base64_flag=st.booleans(),
    content_type=st.sampled_from(
        [
            "application/json",
            "text/plain",
            "",
            "application/json; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ]
    ),
)
def test_arbitrary_strings_as_bodies_never_answer_5xx(
    world: World, body: str, base64_flag: bool, content_type: str
) -> None:
    for method, path in (("POST", "/events"), ("PUT", "/items"), ("PUT", "/items/item-1")):
        event = with_headers(proxy_event(method, path, body), **{"Content-Type": content_type})
        event["isBase64Encoded"] = base64_flag
        api_call(world, event)


@PROPERTY_SETTINGS
@given(body=CATALOG_BODIES, item_id=st.text(max_size=20) | IDS)
def test_catalog_routes_never_answer_5xx_and_a_4xx_writes_nothing(
    world: World, body: Any, item_id: str
) -> None:
    api_call(world, proxy_event("PUT", "/items", json.dumps(body)))
    event = proxy_event("PUT", "/items/x", json.dumps(body))
    event["path"], event["pathParameters"] = f"/items/{quote(item_id, safe='')}", {"item_id": item_id}
    api_call(world, event)


@PROPERTY_SETTINGS
@given(
    user_id=st.text(max_size=140),
    k=st.text(max_size=8) | st.integers().map(str),
    category=st.text(max_size=20),
)
def test_reads_never_answer_5xx(world: World, user_id: str, k: str, category: str) -> None:
    for path in (f"/users/{quote(user_id, safe='')}/recommendations", f"/users/{user_id}/recommendations"):
        event = proxy_event("GET", "/users/x/recommendations")
        event["path"] = path
        event["queryStringParameters"] = {"k": k, "category": category}
        event["multiValueQueryStringParameters"] = {"k": [k], "category": [category]}
        api_call(world, event)


@settings(PROPERTY_SETTINGS, max_examples=25)  # five calls per example
@given(user_id=IDS, item_id=IDS)
def test_every_accepted_id_is_readable_on_every_route(world: World, user_id: str, item_id: str) -> None:
    status, _ = api_call(
        world,
        proxy_event(
            "PUT", "/items", {"items": [{"item_id": item_id, "category": "c", "price": 1, "stock": 1}]}
        ),
    )
    assert status == 200
    event = proxy_event("PUT", "/items/x", {"category": "c", "price": 2, "stock": 1})
    event["path"] = f"/items/{quote(item_id, safe='')}"
    assert api_call(world, event)[0] == 200
    status, body = api_call(
        world,
        proxy_event(
            "POST",
            "/events",
            valid_event(0, user_id=user_id, item_id=item_id, event_id=f"e-{user_id}-{item_id}"[:128]),
        ),
    )
    assert (status, body["user_id"]) == (200, user_id)
    for path in (f"/users/{quote(user_id, safe='')}/recommendations", f"/users/{user_id}/recommendations"):
        event = proxy_event("GET", "/users/x/recommendations")
        event["path"] = path
        status, body = api_call(world, event)
        assert (status, body["user_id"]) == (200, user_id)


@PROPERTY_SETTINGS
@given(detail=EVENT_BODIES, detail_type=st.sampled_from(["ShopperEvent", "CatalogItem"]))
def test_the_bus_accepts_or_refuses_without_writing(world: World, detail: Any, detail_type: str) -> None:
    bus_call(world, detail_type, detail)
