"""The REST API's shared path and query parameters and their checks, for api.py and the route modules
it includes (api_items.py): one definition each, so every route bounds and names them alike."""

# No `from __future__ import annotations`: Powertools reads these annotations at run time.

from typing import Annotated
from urllib.parse import unquote

from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from nextpick.domain.events import ID_MAX_LENGTH
from nextpick.domain.requests import parse_identifier
from nextpick.domain.rules import MAX_POSITION
from nextpick.errors import InvalidInput
from nextpick.settings import get_settings

# Ids in a path are checked by the domain's id rule (events.ID_PATTERN) after URL-decoding; this only
# bounds the work (an id of 128 characters is at most 384 when every character is %-encoded).
PathId = Annotated[str, Path(min_length=1, max_length=3 * ID_MAX_LENGTH)]
K = Annotated[int | None, Query(ge=1, le=1000)]
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
