"""API Gateway (REST API, Lambda proxy integration) in front of the template's functions.

The routes are the translated template's REST API (the OpenAPI body the SAM translator makes of the
functions' `Api` events: path + method -> function); a request becomes the proxy
event API Gateway would send, the function named by the template answers it, and its result becomes
the HTTP response. API keys and Lambda REQUEST authorizers (authorizers.py) are enforced as API
Gateway enforces them: a route that requires a key answers `403 {"message": "Forbidden"}` without a
valid `x-api-key`; a route behind an authorizer answers the API's UNAUTHORIZED (401), ACCESS_DENIED
(403) or AUTHORIZER_FAILURE gateway response, or reaches its function with the authorizer's context in
`requestContext.authorizer`; an unknown path or method answers
`403 {"message": "Missing Authentication Token"}`, and a function error answers `502`.

Not emulated (see docs/local.md): throttling and quotas, stage variables, TOKEN authorizers.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from nextpick_local.standin.authorizers import (
    AuthorizerRunner,
    Grant,
    RequestAuthorizer,
    gateway_responses,
    method_arn,
    request_authorizers,
)

REST_API = "AWS::ApiGateway::RestApi"
API_STAGE = "AWS::ApiGateway::Stage"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
LAMBDA_ALIAS = "AWS::Lambda::Alias"
LAMBDA_VERSION = "AWS::Lambda::Version"
FORBIDDEN = {"message": "Forbidden"}
MISSING_TOKEN = {"message": "Missing Authentication Token"}
INTERNAL_ERROR = {"message": "Internal server error"}


@dataclass(frozen=True)
class Route:
    method: str
    # The API Gateway resource path, e.g. "/users/{user_id}/recommendations".
    resource: str
    function: str
    api_key_required: bool
    # The security scheme name of the route's Lambda REQUEST authorizer, if it has one.
    authorizer: str | None = None

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if `path` is this resource ({name} matches one non-empty segment)."""
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.resource))
        found = re.fullmatch(pattern, path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}


def function_of(reference: Any, resources: Mapping[str, Any]) -> str | None:
    """The function logical id an invocation target names: `!Ref F`, `!GetAtt F.Arn`, a `!Sub` with
    `${F.Arn}` or `${F}` in it (API Gateway's integration URI), or an alias/version of F (the
    translator points triggers at the alias when a function has `AutoPublishAlias`)."""
    if isinstance(reference, dict) and "Ref" in reference:
        candidates = [str(reference["Ref"])]
    elif isinstance(reference, dict) and "Fn::GetAtt" in reference:
        target = reference["Fn::GetAtt"]
        candidates = [str(target.split(".", 1)[0] if isinstance(target, str) else target[0])]
    elif isinstance(reference, dict) and "Fn::Sub" in reference:
        argument = reference["Fn::Sub"]
        text, variables = (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        names = [name.split(".", 1)[0] for name in re.findall(r"\$\{([^}!][^}]*)\}", text)]
        # `!Sub [".../${__FunctionArn__}/...", {__FunctionArn__: !GetAtt F.Arn}]` (an authorizer's URI).
        for name in names:
            if name in variables:
                found = function_of(variables[name], resources)
                if found is not None:
                    return found
        candidates = [name for name in names if name not in variables]
    else:
        return None
    for logical_id in candidates:
        resource = resources.get(logical_id, {})
        if resource.get("Type") == LAMBDA_FUNCTION:
            return logical_id
        if resource.get("Type") in (LAMBDA_ALIAS, LAMBDA_VERSION):
            return function_of(resource.get("Properties", {}).get("FunctionName"), resources)
    return None


def routes_of(resources: Mapping[str, Any]) -> list[Route]:
    """Every Lambda proxy route of every REST API of the translated template (the OpenAPI body SAM
    generates from the functions' `Api` events), and whether it needs an API key."""
    routes: list[Route] = []
    for body in _api_bodies(resources):
        schemes = body.get("securityDefinitions", {}) or body.get("components", {}).get("securitySchemes", {})
        # SAM declares an authorizer as an `apiKey` scheme too (header "Unused"): it is no API key.
        key_schemes = {
            name
            for name, scheme in schemes.items()
            if scheme.get("type") == "apiKey" and "x-amazon-apigateway-authorizer" not in scheme
        }
        authorizers = set(request_authorizers(body, lambda uri: function_of(uri, resources)))
        for path, operations in body.get("paths", {}).items():
            for method, operation in operations.items():
                integration = operation.get("x-amazon-apigateway-integration", {})
                function = function_of(integration.get("uri"), resources)
                if integration.get("type") != "aws_proxy" or function is None:
                    continue
                security = operation.get("security", [])
                required = any(set(entry) & key_schemes for entry in security)
                authorizer = next((name for entry in security for name in entry if name in authorizers), None)
                routes.append(Route(method.upper(), path, function, required, authorizer))
    return routes


def _api_bodies(resources: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        resource.get("Properties", {}).get("Body", {})
        for resource in resources.values()
        if resource.get("Type") == REST_API
    ]


def stage_of(resources: Mapping[str, Any], default: str = "prod") -> str:
    """The REST API's stage name (the first path segment of the deployed URL)."""
    for resource in resources.values():
        if resource.get("Type") == API_STAGE:
            return str(resource.get("Properties", {}).get("StageName", default))
    return default


@dataclass(frozen=True)
class HttpRequest:
    method: str
    # The request target as sent: path plus optional query string.
    target: str
    headers: Sequence[tuple[str, str]]
    body: bytes
    source_ip: str


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def json_response(status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", "application/json"), *headers], json.dumps(body).encode())


def _multi(pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    return multi


def proxy_event(
    route: Route,
    request: HttpRequest,
    path: str,
    path_parameters: Mapping[str, str],
    *,
    stage: str,
    account_id: str,
    api_id: str,
    api_key: str | None,
    request_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The event API Gateway's Lambda proxy integration (REST API, payload 1.0) sends for `request`.

    As API Gateway does: single-value maps keep the last value of a repeated header or parameter,
    maps are None when empty, and a body that is not UTF-8 text is sent base64-encoded."""
    now = now or datetime.now(UTC)
    request_id = request_id or str(uuid.uuid4())
    query = parse_qsl(urlsplit(request.target).query, keep_blank_values=True)
    headers = _multi(request.headers)
    user_agent = next((v for n, v in request.headers if n.lower() == "user-agent"), None)
    body: str | None
    encoded = False
    if not request.body:
        body = None
    else:
        try:
            body = request.body.decode("utf-8")
        except UnicodeDecodeError:
            body, encoded = base64.b64encode(request.body).decode(), True
    return {
        "resource": route.resource,
        "path": path,
        "httpMethod": request.method,
        "headers": {name: values[-1] for name, values in headers.items()} or None,
        "multiValueHeaders": headers or None,
        "queryStringParameters": {name: value for name, value in query} or None,
        "multiValueQueryStringParameters": _multi(query) or None,
        "pathParameters": dict(path_parameters) or None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": uuid.uuid5(uuid.NAMESPACE_URL, route.resource).hex[:6],
            "resourcePath": route.resource,
            "httpMethod": request.method,
            "extendedRequestId": request_id,
            "requestTime": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "path": f"/{stage}{path}",
            "accountId": account_id,
            "protocol": "HTTP/1.1",
            "stage": stage,
            "domainPrefix": api_id,
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "requestId": request_id,
            "identity": {
                "cognitoIdentityPoolId": None,
                "accountId": None,
                "cognitoIdentityId": None,
                "caller": None,
                "sourceIp": request.source_ip,
                "principalOrgId": None,
                "accessKey": None,
                "cognitoAuthenticationType": None,
                "cognitoAuthenticationProvider": None,
                "userArn": None,
                "userAgent": user_agent,
                "user": None,
                "apiKey": api_key,
                "apiKeyId": "local" if api_key else None,
            },
            "domainName": "localhost",
            "apiId": api_id,
        },
        "body": body,
        "isBase64Encoded": encoded,
    }


def http_response(result: Any) -> HttpResponse:
    """The HTTP response API Gateway makes of a proxy integration's result; a malformed one is a 502."""
    if not isinstance(result, dict) or not isinstance(result.get("statusCode"), int):
        return json_response(502, INTERNAL_ERROR)
    headers: list[tuple[str, str]] = list((result.get("headers") or {}).items())
    for name, values in (result.get("multiValueHeaders") or {}).items():
        headers.extend((name, value) for value in values)
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode("utf-8")
    return HttpResponse(result["statusCode"], [(n, str(v)) for n, v in headers], data)


@dataclass
class ApiGateway:
    routes: Sequence[Route]
    # Invokes a function by logical id with an event; raises if the function fails.
    invoke: Callable[[str, dict[str, Any]], Any]
    api_keys: frozenset[str]
    stage: str
    account_id: str
    api_id: str = "local"
    region: str = "us-east-1"
    authorizers: Mapping[str, RequestAuthorizer] = field(default_factory=dict)
    # Gateway response type -> (status, body, headers) (authorizers.gateway_responses).
    responses: Mapping[str, tuple[int, Any, list[tuple[str, str]]]] = field(default_factory=dict)
    runner: AuthorizerRunner | None = None

    @classmethod
    def of_template(
        cls,
        resources: Mapping[str, Any],
        invoke: Callable[[str, dict[str, Any]], Any],
        account_id: str,
        region: str,
        api_keys: frozenset[str] = frozenset(),
    ) -> ApiGateway:
        """The gateway the translated template declares: its routes, authorizers and gateway responses."""
        bodies = _api_bodies(resources)
        authorizers: dict[str, RequestAuthorizer] = {}
        responses: dict[str, tuple[int, Any, list[tuple[str, str]]]] = {}
        for body in bodies:
            authorizers.update(request_authorizers(body, lambda uri: function_of(uri, resources)))
            responses.update(gateway_responses(body))
        return cls(
            routes_of(resources),
            invoke,
            api_keys,
            stage_of(resources),
            account_id,
            region=region,
            authorizers=authorizers,
            responses=responses or gateway_responses({}),
            runner=AuthorizerRunner(invoke),
        )

    def strip_stage(self, path: str) -> str:
        """Requests may use the deployed URL shape (`/<stage>/events`) or, like `sam local start-api`,
        the bare resource path (`/events`)."""
        prefix = f"/{self.stage}"
        if path == prefix or path.startswith(prefix + "/"):
            return path[len(prefix) :] or "/"
        return path

    def find(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            if route.method == method:
                parameters = route.match(path)
                if parameters is not None:
                    return route, parameters
        return None

    def handle(self, request: HttpRequest) -> HttpResponse:
        path = self.strip_stage(unquote(urlsplit(request.target).path))
        found = self.find(request.method, path)
        request_id = str(uuid.uuid4())
        extra = [("x-amzn-RequestId", request_id)]
        if found is None:
            return json_response(
                403, MISSING_TOKEN, [*extra, ("x-amzn-ErrorType", "MissingAuthenticationTokenException")]
            )
        route, parameters = found
        api_key = next((v for n, v in request.headers if n.lower() == "x-api-key"), None)
        if route.api_key_required and api_key not in self.api_keys:
            return json_response(403, FORBIDDEN, [*extra, ("x-amzn-ErrorType", "ForbiddenException")])
        event = proxy_event(
            route,
            request,
            path,
            parameters,
            stage=self.stage,
            account_id=self.account_id,
            api_id=self.api_id,
            api_key=api_key if route.api_key_required else None,
            request_id=request_id,
        )
        if route.authorizer is not None:
            refused = self._authorize(route, path, event)
            if refused is not None:
                refused.headers.extend(extra)
                return refused
        try:
            result = self.invoke(route.function, event)
        except Exception:
            # API Gateway hides a function error behind a 502; the function's log has the details.
            return json_response(502, INTERNAL_ERROR, extra)
        response = http_response(result)
        response.headers.extend(extra)
        return response

    def _authorize(self, route: Route, path: str, event: dict[str, Any]) -> HttpResponse | None:
        """Run the route's authorizer: None and the context in `event`, or API Gateway's refusal."""
        authorizer = self.authorizers[str(route.authorizer)]
        runner = self.runner or AuthorizerRunner(self.invoke)
        arn = method_arn(self.region, self.account_id, self.api_id, self.stage, route.method, path)
        outcome = runner.authorize(authorizer, arn, event.get("headers") or {}, event)
        if isinstance(outcome, Grant):
            event["requestContext"]["authorizer"] = outcome.context
            return None
        status, body, headers = (self.responses or gateway_responses({}))[outcome.response_type]
        return json_response(status, body, [*headers, ("x-amzn-ErrorType", outcome.response_type)])
