"""The REST API's shared path and query parameters and their checks, for api.py and the route modules
it includes (api_items.py): one definition each, so every route bounds and names them alike."""

# No `from __future__ import annotations`: Powertools reads these annotations at run time.

import base64
import binascii
from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

from nextpick.domain.access import Principal
from nextpick.domain.events import ID_MAX_LENGTH
from nextpick.domain.ranking import RecommendOptions
from nextpick.domain.requests import parse_identifier
from nextpick.domain.rule_sets import RuleQuery
from nextpick.domain.rules import MAX_POSITION
from nextpick.errors import InvalidInput, InvalidRequest, RequestProblem
from nextpick.handlers import wiring
from nextpick.settings import get_settings

JSON_MEDIA_TYPE = "application/json"

# Ids in a path are checked by the domain's id rule (events.ID_PATTERN) after URL-decoding; this only
# bounds the work (an id of 128 characters is at most 384 when every character is %-encoded).
PathId = Annotated[str, Path(min_length=1, max_length=3 * ID_MAX_LENGTH)]
K = Annotated[int | None, Query(ge=1, le=1000)]
ExcludePurchased = Annotated[bool | None, Query()]
# `?explain=true`: each pick carries `because` (docs/explanations.md); left out, no pick carries it.
Explain = Annotated[
    bool | None, Query(description="Say which of the shopper's own items each pick owes most to")
]
Category = Annotated[str | None, Query(min_length=1, max_length=128)]
# Business rules (docs/rules.md, "On the API"): validated by the domain, which names the parameter.
Filter = Annotated[str | None, Query(description="A filter expression (docs/rules.md's grammar)")]
MaxPerCategory = Annotated[int | None, Query(ge=1, le=MAX_POSITION)]
ExcludeItems = Annotated[str | None, Query(description="Comma-separated item ids never to recommend")]
RuleSetParam = Annotated[
    str | None, Query(description="The name of a stored rule set", max_length=3 * ID_MAX_LENGTH)
]


def list_size(k: int | None) -> int:
    """The request's `k`, or the deployment's default; more than MAX_K is a 422 naming `k`."""
    settings = get_settings()
    if k is not None and k > settings.max_k:
        raise InvalidInput("k", f"must be at most {settings.max_k}")
    return k or settings.default_k


def path_id(name: str, raw: str) -> str:
    """A path id URL-decoded (ids never contain '%', so decoding an already decoded id changes nothing)
    and held to the same id rule as ids in bodies."""
    return parse_identifier(name, unquote(raw))


def recommend_options(
    k: int | None,
    exclude_purchased: bool | None,
    category: str | None,
    rules: RuleQuery,
    explain: bool | None = None,
) -> RecommendOptions:
    """The ranking options of a request, rules resolved: all checked before anything is applied."""
    size = list_size(k)
    rule_set = wiring.rule_sets().for_request(rules)
    return RecommendOptions(size, exclude_purchased, category, rule_set, explain=bool(explain))


def principal_of(event: BaseProxyEvent) -> Principal:
    """The caller the API's authorizer established (requestContext.authorizer)."""
    return Principal.from_context(event.raw_event.get("requestContext", {}).get("authorizer"))


def request_body(event: BaseProxyEvent) -> bytes:
    """The request's body as bytes: JSON only, base64-decoded when API Gateway flagged it so."""
    content_type = event.headers.get("content-type")
    if content_type and content_type.split(";")[0].strip().lower() != JSON_MEDIA_TYPE:
        raise InvalidRequest.of(
            "Content-Type", f"must be {JSON_MEDIA_TYPE}", RequestProblem.UNSUPPORTED_MEDIA_TYPE
        )
    body = event.body or ""
    if not event.is_base64_encoded:
        try:
            return body.encode()
        except UnicodeEncodeError:
            raise InvalidRequest.of("body", "is not valid UTF-8", RequestProblem.MALFORMED) from None
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest.of(
            "body", "is flagged base64 but is not base64", RequestProblem.MALFORMED
        ) from None
