"""The three scopes on every route, through API Gateway's authorizer as the local stack runs it.

The template's resources in moto, its AuthSecret included; the gateway, its REQUEST authorizer and its
gateway responses read from the translated template (standin/gateway.py, standin/authorizers.py); the
real authorizer and API handlers answer. Nothing here knows a key but what the secret derives."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from nextpick.domain.access import ROUTE_GRANTS, Scope
from nextpick.domain.credentials import ShopCredentials, mint_shopper_token
from nextpick_local.ops.credentials import current_credentials, rotate
from nextpick_local.standin.authorizers import AuthorizerRunner
from nextpick_local.standin.aws_resources import Stack
from nextpick_local.standin.functions import Invoker, functions_of
from nextpick_local.standin.gateway import ApiGateway, HttpRequest, routes_of

REPO = Path(__file__).resolve().parents[2]
ALICE, BOB = "alice", "bob"
# A concrete request per route: (path, body); the route's function may answer anything but 401/403.
REQUESTS: dict[tuple[str, str], tuple[str, Any]] = {
    ("POST", "/events"): (
        "/events",
        {
            "event_id": "e-1",
            "user_id": ALICE,
            "item_id": "i1",
            "event_type": "view",
            "timestamp": "2026-11-30T00:00:00Z",
        },
    ),
    ("GET", "/users/{user_id}/recommendations"): (f"/users/{ALICE}/recommendations", None),
    ("DELETE", "/users/{user_id}"): (f"/users/{ALICE}", None),
    ("GET", "/users/{user_id}/data"): (f"/users/{ALICE}/data", None),
    ("PUT", "/items/{item_id}"): ("/items/i1", {"category": "books", "stock": 3}),
    ("PUT", "/items"): ("/items", {"items": [{"item_id": "i2", "category": "books"}]}),
    ("GET", "/model"): ("/model", None),
    ("PUT", "/rule-sets/{name}"): ("/rule-sets/spring", {"filter": "price < 50"}),
    ("GET", "/rule-sets/{name}"): ("/rule-sets/spring", None),
    ("DELETE", "/rule-sets/{name}"): ("/rule-sets/spring", None),
    ("GET", "/trending"): ("/trending?k=5", None),
    ("GET", "/items/{item_id}/similar"): ("/items/i1/similar?k=5", None),
    ("GET", "/items/{item_id}/bought-together"): ("/items/i1/bought-together?k=5", None),
    ("POST", "/recommendations/cart"): ("/recommendations/cart", {"items": ["i1"], "user_id": ALICE}),
}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def api(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ApiGateway, Clock]]:
    """The stack's API Gateway with the real functions; every secret read goes to Secrets Manager."""
    from nextpick.handlers import wiring

    for name, value in {**stack.env("ApiFunction"), **stack.env("AuthorizerFunction")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODEL_REFRESH_SECONDS", "0")
    monkeypatch.setenv("AUTH_SECRET_REFRESH_SECONDS", "0")
    wiring.reset()
    invoker = Invoker(functions_of(stack.resources, REPO), {}, stack.region, stack.account_id)
    gateway = ApiGateway.of_template(stack.resources, invoker.invoke, stack.account_id, stack.region)
    clock = Clock()
    gateway.runner = AuthorizerRunner(invoker.invoke, clock=clock)
    yield gateway, clock
    wiring.reset()


@pytest.fixture
def keys(stack: Stack, boto_session: Any) -> ShopCredentials:
    return current_credentials(boto_session.client("secretsmanager"), stack.auth_secret)


def call(
    gateway: ApiGateway, method: str, path: str, body: Any = None, credential: str | None = None
) -> tuple[int, Any]:
    headers = [("Content-Type", "application/json")]
    if credential is not None:
        headers.append(("Authorization", f"Bearer {credential}"))
    data = b"" if body is None else json.dumps(body).encode()
    response = gateway.handle(HttpRequest(method, path, headers, data, "127.0.0.1"))
    return response.status, json.loads(response.body) if response.body else None


def credential_of(scope: Scope, keys: ShopCredentials) -> str:
    if scope is Scope.ADMIN:
        return keys.admin_key
    if scope is Scope.SERVER:
        return keys.server_key
    return mint_shopper_token(keys.token_signing_key, ALICE)


def test_the_route_grants_are_exactly_the_templates_authorized_routes(stack: Stack) -> None:
    routes = routes_of(stack.resources)
    authorized = {(r.method, r.resource) for r in routes if r.authorizer is not None}
    assert authorized == {(g.method, g.resource) for g in ROUTE_GRANTS} == set(REQUESTS)
    assert {(r.method, r.resource) for r in routes if r.authorizer is None} == {("GET", "/swagger")}


@pytest.mark.parametrize("scope", list(Scope))
def test_each_scope_reaches_exactly_its_routes(
    api: tuple[ApiGateway, Clock], keys: ShopCredentials, scope: Scope
) -> None:
    gateway, _ = api
    credential = credential_of(scope, keys)
    for grant in ROUTE_GRANTS:
        path, body = REQUESTS[(grant.method, grant.resource)]
        status, answer = call(gateway, grant.method, path, body, credential)
        if scope in grant.scopes:
            assert status not in (401, 403), (scope, grant, status, answer)
        else:
            assert status == 403, (scope, grant, status, answer)
            assert answer["message"].startswith("forbidden"), answer


def test_the_openapi_document_needs_no_credential(api: tuple[ApiGateway, Clock]) -> None:
    status, _ = call(api[0], "GET", "/swagger?format=json")
    assert status == 200


def _forged_tokens(keys: ShopCredentials) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": ALICE, "scope": "shopper", "aud": "nextpick", "iat": now, "exp": now + 600}
    return {
        "another key": mint_shopper_token("npt_someone-elses-signing-key-0123456789abcdef", ALICE),
        "expired": mint_shopper_token(keys.token_signing_key, ALICE, ttl_seconds=60, now=now - 3600),
        "lives too long": mint_shopper_token(keys.token_signing_key, ALICE, ttl_seconds=7 * 86400),
        "alg none": jwt.encode(claims, "", algorithm="none"),
        "server scope claim": jwt.encode(
            {**claims, "scope": "server"}, keys.token_signing_key, algorithm="HS256"
        ),
        "other audience": jwt.encode({**claims, "aud": "someone"}, keys.token_signing_key, algorithm="HS256"),
        "no expiry": jwt.encode(
            {k: v for k, v in claims.items() if k != "exp"}, keys.token_signing_key, algorithm="HS256"
        ),
        "bad user id": mint_shopper_token(keys.token_signing_key, "a/b"),
        "a key off by one character": keys.server_key[:-1] + ("A" if keys.server_key[-1] != "A" else "B"),
        "the signing key itself": keys.token_signing_key,
    }


def test_missing_forged_and_expired_credentials_are_401(
    api: tuple[ApiGateway, Clock], keys: ShopCredentials
) -> None:
    gateway, _ = api
    path = f"/users/{ALICE}/recommendations"
    status, answer = call(gateway, "GET", path)
    assert status == 401 and answer["message"].startswith("unauthorized"), answer
    for scheme in ("Basic abc", "Bearer", keys.server_key):
        response = gateway.handle(HttpRequest("GET", path, [("Authorization", scheme)], b"", "127.0.0.1"))
        assert response.status == 401, scheme
    for name, token in _forged_tokens(keys).items():
        status, answer = call(gateway, "GET", path, credential=token)
        assert status == 401, name
        assert set(answer) == {"message"} and answer["message"].startswith("unauthorized"), name


def test_a_shopper_token_cannot_read_or_write_another_shopper(
    api: tuple[ApiGateway, Clock], keys: ShopCredentials, stack: Stack, dynamodb: Any
) -> None:
    gateway, _ = api
    alice = mint_shopper_token(keys.token_signing_key, ALICE)
    status, answer = call(gateway, "GET", f"/users/{BOB}/recommendations", credential=alice)
    assert status == 403 and answer["message"].startswith("forbidden"), answer

    event = dict(REQUESTS[("POST", "/events")][1], user_id=BOB)
    status, answer = call(gateway, "POST", "/events", event, alice)
    assert status == 403
    assert answer["errors"] == [{"field": "user_id", "message": "is not the user this token is for"}]
    batch = {"events": [REQUESTS[("POST", "/events")][1], dict(event, event_id="e-2")]}
    status, answer = call(gateway, "POST", "/events", batch, alice)
    assert status == 403 and answer["errors"][0]["field"] == "events[1].user_id"
    # Refused as a whole: not even Alice's own event of the batch was applied.
    for user in (ALICE, BOB):
        assert "Item" not in dynamodb.get_item(TableName=stack.state_table, Key={"user_id": {"S": user}})

    status, answer = call(gateway, "POST", "/events", REQUESTS[("POST", "/events")][1], alice)
    assert status == 200 and answer["status"] == "accepted", answer


def test_rotation_keeps_the_previous_credentials_until_the_next_one(
    api: tuple[ApiGateway, Clock], keys: ShopCredentials, stack: Stack, boto_session: Any
) -> None:
    gateway, clock = api
    secrets = boto_session.client("secretsmanager")
    path = "/model"
    old_token = mint_shopper_token(keys.token_signing_key, ALICE)

    new = rotate(secrets, stack.auth_secret)
    clock.now += 301  # API Gateway's cached answers (AuthCacheSeconds) have expired
    assert call(gateway, "GET", path, credential=keys.server_key)[0] == 200
    assert call(gateway, "GET", path, credential=new.server_key)[0] == 200
    assert call(gateway, "GET", f"/users/{ALICE}/recommendations", credential=old_token)[0] == 200

    newest = rotate(secrets, stack.auth_secret)
    # Until API Gateway's cached answer expires, a credential it accepted is still accepted.
    assert call(gateway, "GET", path, credential=keys.server_key)[0] == 200
    clock.now += 301
    assert call(gateway, "GET", path, credential=keys.server_key)[0] == 401
    assert call(gateway, "GET", f"/users/{ALICE}/recommendations", credential=old_token)[0] == 401
    assert call(gateway, "GET", path, credential=new.server_key)[0] == 200
    assert call(gateway, "GET", path, credential=newest.server_key)[0] == 200

    revoked = rotate(secrets, stack.auth_secret, revoke_previous=True)
    clock.now += 301
    assert call(gateway, "GET", path, credential=newest.server_key)[0] == 401
    assert call(gateway, "GET", path, credential=revoked.server_key)[0] == 200
