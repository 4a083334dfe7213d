"""Fuzz the API from its own published OpenAPI document (schemathesis), over real HTTP.

The API function runs behind a small WSGI server that turns each HTTP request into the API Gateway
REST proxy event (path decoded, query and headers as API Gateway passes them, a body that is not
UTF-8 sent base64 with `isBase64Encoded`) and the proxy response back into HTTP, on the template's
resources in moto. The document is fetched from the function itself (`/swagger?format=json`), so
what is tested is what is published. Schemathesis generates valid and invalid requests for every
operation and checks: no 5xx, only documented status codes and content types, answers match their
documented schema, and schema-invalid requests are refused."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from nextpick.handlers import api, wiring
from nextpick_local.standin.aws_resources import Stack
from tests.conftest import TinyModel
from tests.integration.serving import FakeLambdaContext, publish_model

STAGE = "prod"
PUBLISHED_OPERATIONS = {
    "POST /events",
    "GET /users/{user_id}/recommendations",
    "PUT /items/{item_id}",
    "PUT /items",
    "GET /model",
    "DELETE /users/{user_id}",
    "GET /users/{user_id}/data",
    "PUT /rule-sets/{name}",
    "GET /rule-sets/{name}",
    "DELETE /rule-sets/{name}",
    "GET /trending",
    "GET /items/{item_id}/similar",
}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def proxy_event_of(environ: dict[str, Any]) -> dict[str, Any]:
    """The API Gateway REST proxy event API Gateway would build for this WSGI request."""
    # WSGI hands over the decoded path as latin-1 characters; API Gateway decodes it as UTF-8. The URL
    # starts with the stage, which API Gateway takes off the path (and keeps in requestContext.path).
    url_path = environ.get("PATH_INFO", "/").encode("latin-1").decode("utf-8", "replace")
    path = url_path.removeprefix(f"/{STAGE}") or "/"
    query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    headers = {
        name[5:].replace("_", "-").title(): value
        for name, value in environ.items()
        if name.startswith("HTTP_")
    }
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    raw = environ["wsgi.input"].read(length) if length else b""
    try:
        body, encoded = raw.decode(), False
    except UnicodeDecodeError:
        body, encoded = base64.b64encode(raw).decode(), True
    return {
        "resource": path,
        "path": path,
        "httpMethod": environ["REQUEST_METHOD"],
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": {name: values[-1] for name, values in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "requestContext": {
            # What API Gateway adds once its authorizer allowed the call (catalog writes are admin's).
            "authorizer": {"scope": "admin" if path.startswith(("/items", "/rule-sets")) else "server"},
            "requestId": "fuzz",
            "stage": STAGE,
            "path": url_path,
            "httpMethod": environ["REQUEST_METHOD"],
        },
        "body": body or None,
        "isBase64Encoded": encoded,
    }


def api_gateway(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    event = proxy_event_of(environ)
    if "Authorization" not in event["headers"] and event["path"] != "/swagger":
        # API Gateway's answer to a request without its authorizer's identity source; with one, this
        # stand-in lets every credential through (tests/integration/test_access.py checks them).
        start_response("401 Unauthorized", [("Content-Type", "application/json")])
        return [b'{"message": "unauthorized"}']
    response = api.lambda_handler(event, FakeLambdaContext())
    body = response.get("body") or ""
    data = base64.b64decode(body) if response.get("isBase64Encoded") else body.encode()
    headers = [
        (name, value)
        for name, values in (response.get("multiValueHeaders") or {}).items()
        for value in values
    ]
    headers += list((response.get("headers") or {}).items())
    status = response["statusCode"]
    start_response(f"{status} {'OK' if status < 400 else 'Error'}", headers)
    return [data]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def api_url(stack: Stack, tiny_model: TinyModel, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in stack.env("ApiFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    publish_model(stack, tiny_model)
    wiring.reset()
    server: WSGIServer = make_server("127.0.0.1", 0, api_gateway, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{STAGE}"
    finally:
        server.shutdown()
        server.server_close()
        wiring.reset()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_api_honours_its_published_document(api_url: str, mode: GenerationMode) -> None:
    # The schema is loaded and each operation driven by hand: schemathesis' pytest plugin (lazy
    # `from_fixture` schemas) does not run under pytest 9.
    schema = schemathesis.openapi.from_url(f"{api_url}/swagger?format=json")
    operations = [result.ok() for result in schema.get_all_operations() if isinstance(result, Ok)]
    assert {f"{o.method.upper()} {o.path}" for o in operations} == PUBLISHED_OPERATIONS
    for operation in operations:
        takes_input = "parameters" in operation.definition.raw or "requestBody" in operation.definition.raw
        if mode is GenerationMode.NEGATIVE and not takes_input:
            continue  # GET /model takes nothing: there is no invalid request to make

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            # Kept modest: every operation, valid and invalid, in well under a minute on a quiet machine.
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def honours_the_document(case: Any) -> None:
            case.call_and_validate(base_url=api_url, checks=CHECKS)

        honours_the_document()
