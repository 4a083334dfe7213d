"""The local API Gateway: HTTP request -> REST proxy event -> handler result -> HTTP response, the
routes read from template.yaml, and its Lambda REQUEST authorizer run as API Gateway runs it."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from nextpick.domain.credentials import Authenticator, ShopCredentials
from nextpick.errors import Unauthenticated
from nextpick.handlers.authorizer import Unauthorized, policy
from nextpick_local.demo.load import Retrying
from nextpick_local.standin.functions import FunctionError
from nextpick_local.standin.gateway import (
    ApiGateway,
    HttpRequest,
    Route,
    http_response,
    proxy_event,
    routes_of,
)
from nextpick_local.standin.template import translated_template

AUTHORIZER = "NextpickAuthorizer"
RECOMMENDATIONS = Route(
    "GET", "/users/{user_id}/recommendations", "ApiFunction", api_key_required=False, authorizer=AUTHORIZER
)
KEY = "np-test-key"
MASTER = "unit-test-master-secret"
SERVER_KEY = ShopCredentials.derive(MASTER).server_key


def request(method: str = "GET", target: str = "/", body: bytes = b"", **headers: str) -> HttpRequest:
    pairs = [(name.replace("_", "-"), value) for name, value in headers.items()]
    return HttpRequest(method, target, pairs, body, "10.0.0.7")


def test_the_routes_are_the_template_api_events_behind_its_authorizer() -> None:
    routes = {(r.method, r.resource): r for r in routes_of(translated_template()["Resources"])}

    assert set(routes) == {
        ("POST", "/events"),
        ("GET", "/users/{user_id}/recommendations"),
        ("PUT", "/items/{item_id}"),
        ("PUT", "/items"),
        ("GET", "/model"),
        ("GET", "/swagger"),
        ("DELETE", "/users/{user_id}"),
        ("GET", "/users/{user_id}/data"),
        ("PUT", "/rule-sets/{name}"),
        ("GET", "/rule-sets/{name}"),
        ("DELETE", "/rule-sets/{name}"),
        ("GET", "/trending"),
        ("GET", "/items/{item_id}/similar"),
    }
    assert all(r.function == "ApiFunction" for r in routes.values())
    # Every route is behind the REQUEST authorizer but the API's own description (no data in it);
    # no route needs an API key (docs/deploy.md: API keys are not credentials).
    assert {resource for (_, resource), r in routes.items() if r.authorizer is None} == {"/swagger"}
    assert {r.authorizer for r in routes.values()} == {AUTHORIZER, None}
    assert not any(r.api_key_required for r in routes.values())


def test_the_gateway_of_the_template_has_its_authorizer_and_gateway_responses() -> None:
    gateway = ApiGateway.of_template(translated_template()["Resources"], Recorder(), "1", "eu-west-1")

    authorizer = gateway.authorizers[AUTHORIZER]
    assert (authorizer.function, authorizer.identity_headers) == ("AuthorizerFunction", ("Authorization",))
    assert authorizer.ttl_seconds == 300  # the AuthCacheSeconds default
    assert gateway.region == "eu-west-1"
    status, body, headers = gateway.responses["AUTHORIZER_FAILURE"]
    assert (status, headers) == (503, [("Retry-After", "1")])
    assert body["message"].startswith("credentials could not be checked")
    assert gateway.responses["UNAUTHORIZED"][0] == 401
    assert gateway.responses["ACCESS_DENIED"][0] == 403


def test_a_path_parameter_matches_one_decoded_segment() -> None:
    assert RECOMMENDATIONS.match("/users/user%3A42/recommendations") == {"user_id": "user:42"}
    assert RECOMMENDATIONS.match("/users/a/b/recommendations") is None
    assert RECOMMENDATIONS.match("/users//recommendations") is None


def test_the_proxy_event_has_api_gateway_shape() -> None:
    now = datetime(2026, 11, 28, 12, 0, 1, tzinfo=UTC)
    http = request(
        "GET",
        "/users/user-42/recommendations?k=5&category=a&category=b",
        Authorization=f"Bearer {SERVER_KEY}",
        User_Agent="shop/1.0",
    )

    event = proxy_event(
        RECOMMENDATIONS,
        http,
        "/users/user-42/recommendations",
        {"user_id": "user-42"},
        stage="prod",
        account_id="123456789012",
        api_id="local",
        api_key=None,
        request_id="req-1",
        now=now,
    )

    assert event["resource"] == "/users/{user_id}/recommendations"
    assert event["path"] == "/users/user-42/recommendations"
    assert event["httpMethod"] == "GET"
    assert event["headers"]["Authorization"] == f"Bearer {SERVER_KEY}"
    assert event["multiValueHeaders"]["User-Agent"] == ["shop/1.0"]
    # Single-value maps keep the last value, as API Gateway does.
    assert event["queryStringParameters"] == {"k": "5", "category": "b"}
    assert event["multiValueQueryStringParameters"] == {"k": ["5"], "category": ["a", "b"]}
    assert event["pathParameters"] == {"user_id": "user-42"}
    assert event["body"] is None and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["requestId"] == "req-1"
    assert context["stage"] == "prod"
    assert context["path"] == "/prod/users/user-42/recommendations"
    assert context["resourcePath"] == "/users/{user_id}/recommendations"
    assert context["identity"]["sourceIp"] == "10.0.0.7"
    # No API key: the caller is known from the authorizer (requestContext.authorizer), not from a key.
    assert context["identity"]["apiKey"] is None and context["identity"]["apiKeyId"] is None
    assert context["identity"]["userAgent"] == "shop/1.0"
    assert context["requestTimeEpoch"] == int(now.timestamp() * 1000)


def test_empty_maps_are_null_and_a_binary_body_is_base64() -> None:
    route = Route("POST", "/events", "ApiFunction", False, AUTHORIZER)

    event = proxy_event(
        route,
        request("POST", "/events", b"\xff\x00"),
        "/events",
        {},
        stage="prod",
        account_id="1",
        api_id="x",
        api_key=None,
    )

    assert event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["pathParameters"] is None
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\xff\x00"


def test_a_text_body_is_passed_as_is() -> None:
    route = Route("POST", "/events", "ApiFunction", False, AUTHORIZER)
    body = json.dumps({"event_id": "é"}).encode()

    event = proxy_event(
        route,
        request("POST", "/events", body),
        "/events",
        {},
        stage="prod",
        account_id="1",
        api_id="x",
        api_key=None,
    )

    assert event["body"] == body.decode() and event["isBase64Encoded"] is False


def test_a_handler_result_becomes_the_http_response() -> None:
    response = http_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "application/json"},
            "multiValueHeaders": {"Set-Cookie": ["a=1", "b=2"]},
            "body": '{"ok": true}',
            "isBase64Encoded": False,
        }
    )

    assert response.status == 201
    assert ("Set-Cookie", "a=1") in response.headers and ("Set-Cookie", "b=2") in response.headers
    assert response.body == b'{"ok": true}'
    assert (
        http_response(
            {"statusCode": 200, "body": base64.b64encode(b"\x01").decode(), "isBase64Encoded": True}
        ).body
        == b"\x01"
    )


def test_a_malformed_handler_result_is_a_502() -> None:
    response = http_response({"body": "no status"})

    assert response.status == 502
    assert json.loads(response.body) == {"message": "Internal server error"}


class Recorder:
    """The template's functions as the gateway invokes them: the authorizer answers as the real one
    does for the one master secret MASTER (the domain's Authenticator, the handler's policy)."""

    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.result = result if result is not None else {"statusCode": 200, "body": "{}"}
        self.error = error

    def __call__(self, function: str, event: dict[str, Any]) -> Any:
        if function == "AuthorizerFunction":
            return authorize(event)
        self.calls.append((function, event))
        if self.error:
            raise self.error
        return self.result


def authorize(event: dict[str, Any]) -> Any:
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    try:
        principal = Authenticator(lambda: [MASTER], 3600).authenticate(headers.get("authorization"))
    except Unauthenticated:
        # How the local Invoker reports the handler's `Unauthorized`.
        raise FunctionError("AuthorizerFunction: Unauthorized") from Unauthorized()
    return policy(event["methodArn"], principal)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def gateway(recorder: Recorder) -> ApiGateway:
    return template_gateway(recorder)


def template_gateway(functions: Any) -> ApiGateway:
    gateway = ApiGateway.of_template(
        translated_template()["Resources"], functions, "123456789012", "us-east-1"
    )
    # The translated template leaves `!Ref Stage` as is; a stack resolves it (its default, prod).
    gateway.stage = "prod"
    return gateway


def body_of(response: Any) -> Any:
    return json.loads(response.body)


@pytest.mark.parametrize("headers", [{}, {"x_api_key": "wrong"}])
def test_a_route_that_needs_an_api_key_refuses_a_missing_or_wrong_one(
    recorder: Recorder, headers: dict[str, str]
) -> None:
    # The template uses none, but API Gateway's key check stays emulated for a template that would.
    keyed = ApiGateway([Route("GET", "/model", "ApiFunction", True)], recorder, frozenset({KEY}), "prod", "1")

    response = keyed.handle(request("GET", "/model", b"", **headers))

    assert (response.status, body_of(response)) == (403, {"message": "Forbidden"})
    assert recorder.calls == []
    assert keyed.handle(request("GET", "/model", x_api_key=KEY)).status == 200
    assert recorder.calls[0][1]["requestContext"]["identity"]["apiKey"] == KEY


@pytest.mark.parametrize(("method", "target"), [("GET", "/nope"), ("DELETE", "/model"), ("GET", "/users/x")])
def test_an_unknown_route_is_a_missing_authentication_token(
    gateway: ApiGateway, method: str, target: str
) -> None:
    response = gateway.handle(request(method, target, Authorization=f"Bearer {SERVER_KEY}"))

    assert (response.status, body_of(response)) == (403, {"message": "Missing Authentication Token"})


@pytest.mark.parametrize("target", ["/users/u1/recommendations?k=3", "/prod/users/u1/recommendations?k=3"])
def test_a_valid_request_reaches_the_template_function(
    gateway: ApiGateway, recorder: Recorder, target: str
) -> None:
    response = gateway.handle(request("GET", target, Authorization=f"Bearer {SERVER_KEY}"))

    assert response.status == 200
    ((function, event),) = recorder.calls
    assert function == "ApiFunction"
    assert event["path"] == "/users/u1/recommendations"
    assert event["pathParameters"] == {"user_id": "u1"}
    assert event["queryStringParameters"] == {"k": "3"}
    assert event["requestContext"]["authorizer"] == {"scope": "server", "principalId": "server"}
    assert any(name == "x-amzn-RequestId" for name, _ in response.headers)


def test_a_function_error_is_a_502() -> None:
    failing = template_gateway(Recorder(error=RuntimeError("boom")))

    response = failing.handle(request("GET", "/model", Authorization=f"Bearer {SERVER_KEY}"))

    assert (response.status, body_of(response)) == (502, {"message": "Internal server error"})


def test_a_warm_up_batch_answered_5xx_is_sent_again() -> None:
    answers = iter([(503, b'{"message":"unavailable"}'), (502, b"{}"), (200, b'{"results":[]}')])
    sent: list[bytes] = []

    def send(body: bytes) -> tuple[int, bytes]:
        sent.append(body)
        return next(answers)

    assert Retrying(send, attempts=4, backoff_seconds=0)(b"batch") == (200, b'{"results":[]}')
    assert sent == [b"batch"] * 3


def test_warm_up_gives_up_after_its_attempts_and_never_retries_a_4xx() -> None:
    calls: list[int] = []

    def unavailable(body: bytes) -> tuple[int, bytes]:
        calls.append(1)
        return 503, b"{}"

    assert Retrying(unavailable, attempts=3, backoff_seconds=0)(b"x")[0] == 503
    assert len(calls) == 3

    refused: list[int] = []

    def invalid(body: bytes) -> tuple[int, bytes]:
        refused.append(1)
        return 422, b"{}"

    assert Retrying(invalid, attempts=3, backoff_seconds=0)(b"x")[0] == 422
    assert len(refused) == 1
