"""The API's OpenAPI document, from Powertools' resolver, and the error format every answer shares.

Request bodies are validated by the domain (`nextpick.domain.requests`: one validation, straight from
the bytes, for the API and the bus alike), not by the resolver, so the routes declare no `Body()`
parameter. `ContractResolver` puts each body's schema, taken from the same pydantic model, back into
the document the resolver generates, so `/swagger` and `get_openapi_json_schema()` describe the whole
contract."""

from __future__ import annotations

from typing import Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.models import OpenAPI, RequestBody, Schema
from pydantic import BaseModel, ConfigDict, Field

from nextpick.domain.events import Recommendation
from nextpick.domain.impressions import RECOMMENDATION_ID_PATTERN
from nextpick.domain.ranking import ColdStart
from nextpick.domain.state import EventStatus


class FieldError(BaseModel):
    field: str
    message: str


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: `message` names the field(s); `errors` says what is wrong with each."""

    message: str
    errors: list[FieldError] | None = None


class Served(BaseModel):
    """What every answer with a list carries (docs/attribution.md)."""

    # docs/attribution.md: the id events cite to tie a click or purchase to this answer, and the
    # A/B variant that produced it ("control" when no test runs).
    recommendation_id: str = Field(pattern=RECOMMENDATION_ID_PATTERN)
    variant: str


class UserAnswer(Served):
    """A user's fresh recommendations; `model_version` is null (and the list empty) before any model."""

    user_id: str
    model_version: str | None
    # A shopper without events: which trending list answered (docs/trending.md, "A new shopper's
    # answer"); null when the model ranked the shopper's own state.
    cold_start: ColdStart | None = None
    recommendations: list[Recommendation]


class RecommendationsAnswer(UserAnswer):
    took_ms: float


class EventAnswer(UserAnswer):
    """`POST /events` with one event."""

    event_id: str
    status: EventStatus
    took_ms: float


class EventResult(BaseModel):
    event_id: str
    user_id: str
    status: EventStatus


class BatchAnswer(BaseModel):
    """`POST /events` with {"events": [...]}: a result per event, in order, and a list per user."""

    results: list[EventResult]
    users: list[UserAnswer]
    took_ms: float


class ItemStored(BaseModel):
    item_id: str
    status: Literal["stored"]


class ItemsStored(BaseModel):
    stored: int


class RuleSetStored(BaseModel):
    """`PUT` and `DELETE /rule-sets/{name}`."""

    name: str
    status: Literal["stored", "deleted"]


class ModelAnswer(BaseModel):
    """The live model's version and manifest facts; only `model_version` (null) before any model."""

    model_config = ConfigDict(extra="allow")

    model_version: str | None


class TrendingItemAnswer(BaseModel):
    item_id: str
    score: float


class TrendingAnswer(Served):
    """`GET /trending`: the last `window_hours` of events, decayed with `half_life_hours`, in stock."""

    items: list[TrendingItemAnswer]
    # Live counts, not a model: always null.
    model_version: None = None
    category: str | None
    window_hours: int
    half_life_hours: float


class SimilarAnswer(Served):
    """`GET /items/{item_id}/similar`: `source` "model" (cosine of the live model's item vectors) or
    "fallback" (live trending in the item's category: the model has no `similar`, or not this item)."""

    item_id: str
    model_version: str | None
    source: Literal["model", "fallback"]
    items: list[Recommendation]
    took_ms: float


class ErasureAnswer(BaseModel):
    """`DELETE /users/{user_id}`: erased from serving at once; from the event log by `log_erased_by`."""

    user_id: str
    status: Literal["erased"]
    erased_at: str
    log_erased_by: str


class UserDataAnswer(BaseModel):
    """`GET /users/{user_id}/data`: the state item decoded (`state` null when none is held; `erasure`
    set while an erasure marker stands) and where else data lives (`elsewhere`)."""

    user_id: str
    state: dict[str, Any] | None
    erasure: dict[str, str] | None
    elsewhere: dict[str, str]


class BoughtTogetherAnswer(Served):
    """`GET /items/{item_id}/bought-together`: the item's co-purchase partners (`source` "model"), or
    live trending in its category when the model has none for it (`source` "fallback")."""

    item_id: str
    model_version: str | None
    source: Literal["model", "fallback"]
    items: list[Recommendation]
    took_ms: float


class CartAnswer(Served):
    """`POST /recommendations/cart`: what completes the cart (`user_id` null for an anonymous cart)."""

    user_id: str | None
    model_version: str | None
    model_status: str
    recommendations: list[Recommendation]
    took_ms: float


def answer(description: str, model: Any) -> dict[int, Any]:
    """The documented 200 answer of a route (documentation only: answers are not re-validated)."""
    return {200: {"description": description, "content": {"application/json": {"model": model}}}}


def error_responses(*statuses: int) -> dict[int, Any]:
    """The `responses` of a route for these error statuses, all in the one error format."""
    meaning = {
        400: "Body is not JSON (or flagged base64 and is not base64)",
        401: "No credential, or a forged, expired or revoked one (answered by API Gateway)",
        403: "The credential's scope may not call this route, or a shopper token acts for another user",
        404: "No such route (an id with '/' makes another path), or a named rule set is not stored",
        409: "The shopper's state changed concurrently too many times; retry the call",
        413: "Body, or what it would add to a shopper's state, is too large",
        415: "Body is not application/json",
        422: "A field breaks the contract; `errors` names each one",
        503: "Storage or the model is unavailable; retry the call",
    }
    return {
        status: {
            "description": meaning[status],
            "content": {"application/json": {"model": ErrorBody}},
        }
        for status in statuses
    }


class ContractResolver(APIGatewayRestResolver):
    """Powertools' REST resolver whose OpenAPI document also carries the domain-validated bodies."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._request_bodies: dict[tuple[str, str], type[BaseModel]] = {}

    def request_body(self, method: str, path: str, model: type[BaseModel]) -> None:
        """Document `model` as the JSON body of `method path` (OpenAPI path syntax: `/items/{item_id}`)."""
        self._request_bodies[(path, method.lower())] = model

    def get_openapi_schema(self, **kwargs: Any) -> OpenAPI:
        document = super().get_openapi_schema(**kwargs)
        schemas: dict[str, Any] = {}
        for (path, method), model in self._request_bodies.items():
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            operation = getattr((document.paths or {})[path], method)
            operation.requestBody = RequestBody.model_validate(
                {"required": True, "content": {"application/json": {"schema": schema}}}
            )
        if schemas:
            assert document.components is not None
            existing = document.components.schemas or {}
            document.components.schemas = {
                **{name: Schema.model_validate(value) for name, value in schemas.items()},
                **existing,
            }
        return document
