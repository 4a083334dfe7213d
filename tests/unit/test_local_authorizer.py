"""The local API Gateway's Lambda REQUEST authorizer (standin/authorizers.py), as the template declares
it: when the function is called, what its answer or error becomes, the per-identity cache, and what the
integration receives. The authorizer decides as the real one does (the domain's Authenticator and the
handler's policy) unless a test makes it fail or answer something else."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from nextpick.domain.credentials import Authenticator, ShopCredentials, mint_shopper_token
from nextpick.errors import Unauthenticated
from nextpick.handlers.authorizer import Unauthorized, policy
from nextpick_local.standin.authorizers import AuthorizerRunner, method_arn, policy_allows
from nextpick_local.standin.functions import FunctionError
from nextpick_local.standin.gateway import ApiGateway, HttpRequest, HttpResponse
from nextpick_local.standin.template import translated_template

MASTER = "unit-test-master-secret"
KEYS = ShopCredentials.derive(MASTER)
# Stands for a token minted when the test runs: one minted at import would expire in a long test run.
ALICE_TOKEN = "<alice's token>"


def credential_of(credential: str) -> str:
    return mint_shopper_token(KEYS.token_signing_key, "alice") if credential == ALICE_TOKEN else credential


AUTHORIZER_FUNCTION = "AuthorizerFunction"
SCHEME = "NextpickAuthorizer"
ACCOUNT, REGION = "123456789012", "us-east-1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Functions:
    """Invokes the template's functions by logical id, as the local Invoker does; records every call."""

    def __init__(self) -> None:
        self.authorizer_events: list[dict[str, Any]] = []
        self.api_events: list[dict[str, Any]] = []
        # When set: the authorizer fails with it (wrapped as the Invoker wraps a handler's exception).
        self.authorizer_error: Exception | None = None
        # When set: the authorizer answers this instead of the real policy.
        self.authorizer_answer: Any = None

    def __call__(self, function: str, event: dict[str, Any]) -> Any:
        if function != AUTHORIZER_FUNCTION:
            self.api_events.append(event)
            return {"statusCode": 200, "body": json.dumps({"ok": True})}
        self.authorizer_events.append(event)
        if self.authorizer_error is not None:
            raise FunctionError(f"{function}: {self.authorizer_error}") from self.authorizer_error
        if self.authorizer_answer is not None:
            return self.authorizer_answer
        headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
        try:
            principal = Authenticator(lambda: [MASTER], 3600).authenticate(headers.get("authorization"))
        except Unauthenticated:
            raise FunctionError(f"{function}: Unauthorized") from Unauthorized()
        return policy(event["methodArn"], principal)


@pytest.fixture
def functions() -> Functions:
    return Functions()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def gateway(functions: Functions, clock: Clock) -> ApiGateway:
    gateway = ApiGateway.of_template(translated_template()["Resources"], functions, ACCOUNT, REGION)
    gateway.stage = "prod"  # the translated template leaves `!Ref Stage` unresolved
    gateway.runner = AuthorizerRunner(functions, clock=clock)
    return gateway


def call(gateway: ApiGateway, method: str, path: str, credential: str | None = None) -> HttpResponse:
    headers = [("Authorization", f"Bearer {credential}")] if credential is not None else []
    return gateway.handle(HttpRequest(method, path, headers, b"", "10.0.0.7"))


def answer(response: HttpResponse) -> tuple[int, str]:
    return response.status, json.loads(response.body)["message"]


def error_type(response: HttpResponse) -> str:
    return dict(response.headers)["x-amzn-ErrorType"]


def test_without_the_authorization_header_api_gateway_answers_401_without_calling_anything(
    gateway: ApiGateway, functions: Functions
) -> None:
    response = call(gateway, "GET", "/users/alice/recommendations")

    status, message = answer(response)
    assert status == 401 and message.startswith("unauthorized: send Authorization: Bearer")
    assert error_type(response) == "UNAUTHORIZED"
    assert functions.authorizer_events == [] and functions.api_events == []
    # An empty header is no identity either.
    empty = gateway.handle(HttpRequest("GET", "/model", [("Authorization", "")], b"", "10.0.0.7"))
    assert empty.status == 401 and functions.authorizer_events == []


def test_an_authorizer_raising_unauthorized_is_a_401(gateway: ApiGateway, functions: Functions) -> None:
    response = call(gateway, "GET", "/model", "nps_forged")

    assert answer(response)[0] == 401 and error_type(response) == "UNAUTHORIZED"
    assert len(functions.authorizer_events) == 1 and functions.api_events == []


@pytest.mark.parametrize(
    "failure",
    [
        {"error": RuntimeError("Secrets Manager timed out")},
        # "Unauthorized" must be the whole message: anything else is a failure, not a refusal.
        {"error": RuntimeError("Unauthorized caller")},
        {"answer": {"principalId": "server"}},  # no policyDocument
        {"answer": ["not", "a", "dict"]},
    ],
    ids=["error", "other message", "no policy", "not an object"],
)
def test_any_other_authorizer_error_or_a_malformed_answer_is_the_templates_authorizer_failure(
    gateway: ApiGateway, functions: Functions, failure: dict[str, Any]
) -> None:
    functions.authorizer_error = failure.get("error")
    functions.authorizer_answer = failure.get("answer")

    response = call(gateway, "GET", "/model", KEYS.server_key)

    status, message = answer(response)
    # The template's AUTHORIZER_FAILURE gateway response: 503 and Retry-After, not API Gateway's 500.
    assert (status, message) == (503, "credentials could not be checked; retry the call")
    assert ("Retry-After", "1") in response.headers and error_type(response) == "AUTHORIZER_FAILURE"
    assert functions.api_events == []


@pytest.mark.parametrize(
    ("credential", "method", "path"),
    [
        (ALICE_TOKEN, "GET", "/users/bob/recommendations"),  # another shopper
        (ALICE_TOKEN, "GET", "/model"),  # not a shopper's route
        (KEYS.admin_key, "GET", "/users/alice/recommendations"),
        (KEYS.server_key, "PUT", "/items/i-1"),
    ],
    ids=["other shopper", "shopper on /model", "admin reading", "server writing the catalog"],
)
def test_a_policy_that_allows_no_statement_for_the_route_is_403(
    gateway: ApiGateway, functions: Functions, credential: str, method: str, path: str
) -> None:
    response = call(gateway, method, path, credential_of(credential))

    status, message = answer(response)
    assert status == 403 and message.startswith("forbidden: this credential may not call this route")
    assert error_type(response) == "ACCESS_DENIED"
    assert functions.api_events == []


def test_an_explicit_deny_wins_over_an_allow(gateway: ApiGateway, functions: Functions) -> None:
    arn = method_arn(REGION, ACCOUNT, "local", "prod", "GET", "/model")
    functions.authorizer_answer = {
        "principalId": "server",
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*"},
                {"Action": "execute-api:*", "Effect": "Deny", "Resource": [arn]},
            ],
        },
    }

    assert call(gateway, "GET", "/model", KEYS.server_key).status == 403
    assert call(gateway, "GET", "/users/anyone/recommendations", KEYS.server_key).status == 200


def test_iam_wildcards_cross_path_segments_and_the_action_must_match() -> None:
    arn = method_arn(REGION, ACCOUNT, "api", "prod", "GET", "/users/alice/recommendations")

    def allows(resource: str, action: str = "execute-api:Invoke") -> bool:
        statement = {"Action": action, "Effect": "Allow", "Resource": resource}
        return policy_allows({"Statement": [statement]}, arn)

    assert allows(f"arn:aws:execute-api:{REGION}:{ACCOUNT}:api/prod/GET/users/*/recommendations")
    assert allows(f"arn:aws:execute-api:{REGION}:{ACCOUNT}:api/*")
    assert allows(f"arn:aws:execute-api:{REGION}:{ACCOUNT}:api/prod/GET/users/alic?/recommendations")
    assert not allows(f"arn:aws:execute-api:{REGION}:{ACCOUNT}:api/prod/GET/users/bob/recommendations")
    assert not allows(f"arn:aws:execute-api:{REGION}:{ACCOUNT}:api/prod/POST/*")
    assert not allows("*", action="execute-api:ManageConnections")


def test_the_answer_is_cached_per_identity_for_the_ttl_and_serves_every_route(
    gateway: ApiGateway, functions: Functions, clock: Clock
) -> None:
    assert call(gateway, "GET", "/model", KEYS.server_key).status == 200
    # The cached policy answers another route of the same credential too: its policy lists them all.
    assert call(gateway, "GET", "/users/alice/recommendations", KEYS.server_key).status == 200
    assert call(gateway, "PUT", "/items/i-1", KEYS.server_key).status == 403
    assert len(functions.authorizer_events) == 1

    assert call(gateway, "GET", "/model", KEYS.admin_key).status == 200  # another identity
    assert len(functions.authorizer_events) == 2

    clock.now += gateway.authorizers[SCHEME].ttl_seconds - 1
    call(gateway, "GET", "/model", KEYS.server_key)
    assert len(functions.authorizer_events) == 2
    clock.now += 1
    call(gateway, "GET", "/model", KEYS.server_key)
    assert len(functions.authorizer_events) == 3


def test_a_ttl_of_zero_asks_the_authorizer_every_call(gateway: ApiGateway, functions: Functions) -> None:
    gateway.authorizers = {SCHEME: replace(gateway.authorizers[SCHEME], ttl_seconds=0)}

    for _ in range(3):
        assert call(gateway, "GET", "/model", KEYS.server_key).status == 200

    assert len(functions.authorizer_events) == 3


def test_the_authorizer_gets_a_request_event_and_the_function_its_context(
    gateway: ApiGateway, functions: Functions
) -> None:
    token = credential_of(ALICE_TOKEN)
    response = call(gateway, "GET", "/prod/users/alice/recommendations?k=3", token)

    assert response.status == 200
    (request,) = functions.authorizer_events
    assert request["type"] == "REQUEST"
    assert request["methodArn"] == method_arn(
        REGION, ACCOUNT, "local", "prod", "GET", "/users/alice/recommendations"
    )
    assert request["headers"]["Authorization"] == f"Bearer {token}"
    assert request["pathParameters"] == {"user_id": "alice"}
    assert request["queryStringParameters"] == {"k": "3"}
    (event,) = functions.api_events
    assert event["requestContext"]["authorizer"] == {
        "scope": "shopper",
        "user_id": "alice",
        "principalId": "shopper",
    }
