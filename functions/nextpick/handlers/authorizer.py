"""API Gateway REQUEST authorizer: who is calling, and which routes their scope may use.

API Gateway calls it with the `Authorization` header (a request without one is answered 401 before it
gets here) and caches the answer per header value for the template's ReauthorizeEvery (300 s). So the
policy must hold for every route the caller may use, not only the one being called: it lists all of
them (domain/access.py), a shopper's reads with their own user id in the path. API Gateway then answers
403 for any other route, and the function learns the caller from requestContext.authorizer.

A refused credential raises `Unauthorized`: an error whose message is exactly "Unauthorized" is the
one way an authorizer makes API Gateway answer 401."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerRequestEvent,
    APIGatewayRouteArn,
    parse_api_gateway_arn,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.domain.access import Principal
from nextpick.errors import Unauthenticated
from nextpick.handlers import wiring

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="Nextpick")


class Unauthorized(Exception):
    """Raised with the message API Gateway turns into a 401."""

    def __init__(self) -> None:
        super().__init__("Unauthorized")


def policy(method_arn: str, principal: Principal) -> dict[str, Any]:
    """The IAM policy allowing exactly `principal`'s routes of the API and stage `method_arn` names.
    Path parameters become `*`; a user id is an id (events.ID_PATTERN), so it holds no wildcard."""
    called = parse_api_gateway_arn(method_arn)
    resources = [
        APIGatewayRouteArn(
            called.region,
            called.aws_account_id,
            called.api_id,
            called.stage,
            method,
            _wildcard_parameters(path),
            partition=called.partition,
        ).arn
        for method, path in principal.allowed_routes()
    ]
    return {
        # Only the scope: access logs and traces may show the principal, and must not show user ids.
        "principalId": principal.scope.value,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resources}],
        },
        "context": principal.context(),
    }


def _wildcard_parameters(path: str) -> str:
    return "/".join("*" if part.startswith("{") else part for part in path.split("/"))


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = APIGatewayAuthorizerRequestEvent(event)
    try:
        principal = wiring.authenticator().authenticate(request.headers.get("authorization"))
    except Unauthenticated as refused:
        metrics.add_metric(name="CredentialsRefused", unit=MetricUnit.Count, value=1)
        # The reason, never the credential: a log line must not become a way to steal one.
        logger.info("credential refused", extra={"reason": str(refused)})
        raise Unauthorized() from None
    metrics.add_metric(name="CredentialsAccepted", unit=MetricUnit.Count, value=1)
    return policy(request.method_arn, principal)
