"""Helpers for driving the serving handlers the way API Gateway and EventBridge do."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3

from nextpick_local.standin.aws_resources import Stack
from nextpick_training.publish import publish
from tests.conftest import TinyModel

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"


class FakeLambdaContext:
    function_name = "nextpick-test"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:nextpick-test"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/nextpick-test"
    log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def sample_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text())
    return event


def proxy_event(
    method: str, path: str, body: Any = None, query: str = "", authorizer: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An API Gateway REST proxy event for `method path?query`, shaped like the samples in events/, as
    API Gateway sends it after its authorizer allowed the call: `authorizer` is the context (default:
    the server scope, or the admin scope for catalog writes, the scopes those routes are granted)."""
    event = copy.deepcopy(sample_event("api_get_recommendations.json"))
    if authorizer is None:
        scope = "admin" if path.startswith(("/items", "/rule-sets")) else "server"
        authorizer = {"scope": scope, "principalId": scope}
    event["requestContext"]["authorizer"] = authorizer
    params = {key: values for key, values in parse_qs(query, keep_blank_values=True).items()}
    segments = path.strip("/").split("/")
    resource, path_parameters = path, None
    if len(segments) >= 2 and segments[0] == "users":
        tail = "/".join(segments[2:3])  # /users/{user_id}, .../recommendations, .../data
        resource = "/users/{user_id}" + (f"/{tail}" if tail else "")
        path_parameters = {"user_id": segments[1]}
    elif len(segments) == 2 and segments[0] == "items":
        resource, path_parameters = "/items/{item_id}", {"item_id": segments[1]}
    elif len(segments) == 3 and segments[0] == "items":  # /items/{item_id}/bought-together, ...
        resource, path_parameters = f"/items/{{item_id}}/{segments[2]}", {"item_id": segments[1]}
    elif len(segments) == 2 and segments[0] == "rule-sets":
        resource, path_parameters = "/rule-sets/{name}", {"name": segments[1]}
    event.update(
        httpMethod=method,
        path=path,
        resource=resource,
        pathParameters=path_parameters,
        queryStringParameters={k: v[-1] for k, v in params.items()} or None,
        multiValueQueryStringParameters=params or None,
        body=body if body is None or isinstance(body, str) else json.dumps(body),
    )
    event["requestContext"].update(httpMethod=method, resourcePath=resource)
    return event


def call(handler: Any, event: dict[str, Any]) -> tuple[int, Any]:
    response = handler(event, FakeLambdaContext())
    body = response.get("body")
    return response["statusCode"], json.loads(body) if body else None


def publish_model(stack: Stack, model: TinyModel) -> str:
    """Publish a test model into the stack's bucket as a retrain would (its ModelPublished on the bus)."""
    outcome = publish(
        boto3.client("s3"),
        boto3.client("events"),
        stack.model_bucket,
        "models/",
        stack.event_bus,
        model.tflite,
        **model.manifest_fields(),
    )
    return outcome.version
