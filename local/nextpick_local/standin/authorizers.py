"""API Gateway's Lambda REQUEST authorizers, as the REST API runs them.

Read from the translated template's OpenAPI body (the SAM translator writes each `Auth.Authorizers`
entry as a security scheme with `x-amazon-apigateway-authorizer`), they behave as API Gateway's do:

* a request without every identity source (the `Authorization` header) is answered 401 without
  calling the function;
* otherwise the function gets the REQUEST authorizer event; an error whose message is exactly
  "Unauthorized" means 401, any other error or a malformed answer means AUTHORIZER_FAILURE;
* the returned IAM policy is evaluated against the method ARN (wildcards `*` and `?`, an explicit
  Deny wins): no Allow means 403 ACCESS_DENIED;
* the answer (policy, context, principal) is cached per identity value for
  `authorizerResultTtlInSeconds` and applies to every method of the API in that time;
* the context reaches the integration as `requestContext.authorizer`, with `principalId`.

API Gateway's own refusals use the body's `x-amazon-apigateway-gateway-responses` when it has one.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nextpick_local.standin.functions import FunctionError

# API Gateway's own refusals, by gateway response type: (status, body) unless the API overrides them.
DEFAULT_RESPONSES = {
    "UNAUTHORIZED": (401, {"message": "Unauthorized"}),
    "ACCESS_DENIED": (403, {"message": "User is not authorized to access this resource"}),
    "AUTHORIZER_FAILURE": (500, {"message": None}),
}
_HEADER_SOURCE = re.compile(r"method\.request\.header\.(.+)")


@dataclass(frozen=True)
class RequestAuthorizer:
    name: str
    # The logical id of the authorizer function.
    function: str
    # Header names (case-insensitive) whose values identify the caller and key the cache.
    identity_headers: tuple[str, ...]
    ttl_seconds: int


@dataclass(frozen=True)
class Refusal:
    """API Gateway answered for the function: a gateway response type."""

    response_type: str


@dataclass(frozen=True)
class Grant:
    """What the integration receives as requestContext.authorizer."""

    context: dict[str, Any]


def request_authorizers(body: Mapping[str, Any], function_of: Callable[[Any], str | None]) -> dict[str, Any]:
    """The REQUEST authorizers an API's OpenAPI body declares, by security scheme name."""
    schemes = body.get("securityDefinitions", {}) or body.get("components", {}).get("securitySchemes", {})
    found: dict[str, RequestAuthorizer] = {}
    for name, scheme in schemes.items():
        spec = scheme.get("x-amazon-apigateway-authorizer")
        if not spec or spec.get("type") != "request":
            continue
        function = function_of(spec.get("authorizerUri"))
        if function is None:
            continue
        sources = [
            source.strip() for source in str(spec.get("identitySource", "")).split(",") if source.strip()
        ]
        headers = tuple(m.group(1) for source in sources if (m := _HEADER_SOURCE.fullmatch(source)))
        found[name] = RequestAuthorizer(
            name, function, headers, int(spec.get("authorizerResultTtlInSeconds", 300))
        )
    return found


def gateway_responses(body: Mapping[str, Any]) -> dict[str, tuple[int, Any, list[tuple[str, str]]]]:
    """The API's gateway responses (status, JSON body, headers), the defaults where it declares none."""
    declared = body.get("x-amazon-apigateway-gateway-responses", {})
    responses: dict[str, tuple[int, Any, list[tuple[str, str]]]] = {}
    for kind, (status, default_body) in DEFAULT_RESPONSES.items():
        spec = declared.get(kind, {})
        template = spec.get("responseTemplates", {}).get("application/json")
        headers = [
            (name.removeprefix("gatewayresponse.header."), str(value).strip("'"))
            for name, value in spec.get("responseParameters", {}).items()
            if name.startswith("gatewayresponse.header.")
        ]
        responses[kind] = (
            int(spec.get("statusCode", status)),
            json.loads(template) if template else default_body,
            headers,
        )
    return responses


def policy_allows(policy: Mapping[str, Any], method_arn: str) -> bool:
    """IAM evaluation of an authorizer's policy for execute-api:Invoke on `method_arn`."""
    allowed = False
    for statement in policy.get("Statement", []):
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        if not any(fnmatch.fnmatchcase("execute-api:Invoke", action) for action in actions):
            continue
        # IAM's `*` and `?` cross '/' (fnmatch's do too); `[` has no meaning in IAM, so it is escaped.
        if any(fnmatch.fnmatchcase(method_arn, r.replace("[", "[[]")) for r in resources):
            if statement.get("Effect") == "Deny":
                return False
            allowed = allowed or statement.get("Effect") == "Allow"
    return allowed


@dataclass
class AuthorizerRunner:
    """Runs the authorizers of one API, with API Gateway's per-identity cache."""

    invoke: Callable[[str, dict[str, Any]], Any]
    clock: Callable[[], float] = time.monotonic
    _cache: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, Any]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def authorize(
        self,
        authorizer: RequestAuthorizer,
        method_arn: str,
        headers: Mapping[str, str],
        proxy_event: Mapping[str, Any],
    ) -> Refusal | Grant:
        lowered = {name.lower(): value for name, value in headers.items()}
        identity = tuple(lowered.get(name.lower(), "") for name in authorizer.identity_headers)
        if not all(identity):
            return Refusal("UNAUTHORIZED")
        answer = self._cached(authorizer, identity)
        if answer is None:
            try:
                answer = self.invoke(authorizer.function, _request_event(method_arn, proxy_event))
            except FunctionError as error:
                unauthorized = str(error.__cause__) == "Unauthorized"
                return Refusal("UNAUTHORIZED" if unauthorized else "AUTHORIZER_FAILURE")
            if not isinstance(answer, dict) or not isinstance(answer.get("policyDocument"), dict):
                return Refusal("AUTHORIZER_FAILURE")
            if authorizer.ttl_seconds > 0:
                with self._lock:
                    self._cache[(authorizer.name, identity)] = (self.clock() + authorizer.ttl_seconds, answer)
        if not policy_allows(answer["policyDocument"], method_arn):
            return Refusal("ACCESS_DENIED")
        return Grant({**(answer.get("context") or {}), "principalId": answer.get("principalId")})

    def _cached(self, authorizer: RequestAuthorizer, identity: tuple[str, ...]) -> dict[str, Any] | None:
        with self._lock:
            entry = self._cache.get((authorizer.name, identity))
            if entry is None or entry[0] <= self.clock():
                return None
            return entry[1]


def _request_event(method_arn: str, proxy_event: Mapping[str, Any]) -> dict[str, Any]:
    """The REQUEST authorizer event: the proxy event's request fields plus its type and method ARN."""
    keys = (
        "resource",
        "path",
        "httpMethod",
        "headers",
        "multiValueHeaders",
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "stageVariables",
        "requestContext",
    )
    return {"type": "REQUEST", "methodArn": method_arn, **{key: proxy_event.get(key) for key in keys}}


def method_arn(region: str, account_id: str, api_id: str, stage: str, method: str, path: str) -> str:
    return f"arn:aws:execute-api:{region}:{account_id}:{api_id}/{stage}/{method}{path}"
