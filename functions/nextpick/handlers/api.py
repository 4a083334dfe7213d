"""REST API (API Gateway proxy events): events in, fresh recommendations out; catalog upkeep."""

# No `from __future__ import annotations` here: Powertools reads the route signatures at run time
# (through the tracer's wrapper), so the annotations must be real objects, not strings.

import time
from dataclasses import asdict
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.domain.events import (
    CatalogBatch,
    CatalogItem,
    EventsBody,
    ItemFields,
    describe_errors,
)
from nextpick.domain.ranking import RecommendOptions
from nextpick.domain.service import TrackResult, UserRecommendations
from nextpick.errors import InvalidInput, NextpickError
from nextpick.handlers import wiring
from nextpick.settings import get_settings

logger = Logger()
tracer = Tracer()
# The namespace is fixed in code so that a handler imported before its environment is set (tests, the
# local stack) still emits valid EMF; the template sets the same value.
metrics = Metrics(namespace="Nextpick")
app = APIGatewayRestResolver(enable_validation=True)

ID_PATTERN = r"^[A-Za-z0-9._:@/+=-]{1,128}$"
K = Annotated[int | None, Query(ge=1, le=1000)]
ExcludePurchased = Annotated[bool | None, Query()]
Category = Annotated[str | None, Query(min_length=1, max_length=128)]


def _options(k: int | None, exclude_purchased: bool | None, category: str | None) -> RecommendOptions:
    settings = get_settings()
    if k is not None and k > settings.max_k:
        raise InvalidInput("k", f"must be at most {settings.max_k}")
    return RecommendOptions(k or settings.default_k, exclude_purchased, category)


def _observe(users: list[UserRecommendations]) -> None:
    for user in users:
        if user.model_version is not None:
            metrics.add_metric(name="RankingLatency", unit=MetricUnit.Milliseconds, value=user.rank_ms)
            metrics.add_metadata(key="model_version", value=user.model_version)


def _track_body(result: TrackResult, single: bool, started: float) -> dict[str, Any]:
    took_ms = round((time.perf_counter() - started) * 1000, 3)
    if single:
        (event,), (user,) = result.results, result.users
        return {**asdict(event), **user.as_json(), "took_ms": took_ms}
    return {
        "results": [asdict(r) for r in result.results],
        "users": [u.as_json() for u in result.users],
        "took_ms": took_ms,
    }


@app.post("/events")
@tracer.capture_method
def post_events(
    request: Annotated[EventsBody, Body()],
    k: K = None,
    exclude_purchased: ExcludePurchased = None,
    category: Category = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    events = request.events
    if len(events) > get_settings().max_batch_events:
        raise InvalidInput("events", f"at most {get_settings().max_batch_events} events per request")
    result = wiring.recommender().track(
        events, _options(k, exclude_purchased, category), app.lambda_context.get_remaining_time_in_millis
    )
    for status in ("accepted", "duplicate"):
        count = sum(1 for r in result.results if r.status == status)
        metrics.add_metric(name=f"Events{status.capitalize()}", unit=MetricUnit.Count, value=count)
    _observe(result.users)
    return _track_body(result, request.is_single, started)


@app.get("/users/<user_id>/recommendations")
@tracer.capture_method
def get_recommendations(
    user_id: Annotated[str, Path(pattern=ID_PATTERN)],
    k: K = None,
    exclude_purchased: ExcludePurchased = None,
    category: Category = None,
) -> dict[str, Any]:
    started = time.perf_counter()
    user = wiring.recommender().recommendations(user_id, _options(k, exclude_purchased, category))
    _observe([user])
    return {**user.as_json(), "took_ms": round((time.perf_counter() - started) * 1000, 3)}


@app.put("/items/<item_id>")
def put_item(
    item_id: Annotated[str, Path(pattern=ID_PATTERN)], fields: Annotated[ItemFields, Body()]
) -> dict:
    item = CatalogItem(item_id=item_id, **fields.model_dump())
    wiring.catalog().put_items([item])
    return {"item_id": item_id, "status": "stored"}


@app.put("/items")
def put_items(batch: Annotated[CatalogBatch, Body()]) -> dict[str, Any]:
    wiring.catalog().put_items(batch.items)
    return {"stored": len(batch.items)}


@app.get("/model")
def get_model() -> dict[str, Any]:
    model = wiring.model_source().current()
    if model is None:
        return {"model_version": None}
    manifest = model.manifest
    keys = ("created_at", "num_items", "state_dim", "metrics", "training_window")
    return {"model_version": model.version, **{key: manifest.get(key) for key in keys}}


def _error(status: int, message: str, errors: list[dict[str, str]] | None = None) -> Response:
    if status < 500:
        metrics.add_metric(
            name="EventsRejected" if app.current_event.path == "/events" else "RequestsRejected",
            unit=MetricUnit.Count,
            value=1,
        )
    body: dict[str, Any] = {"message": message}
    if errors:
        body["errors"] = errors
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


@app.exception_handler(RequestValidationError)
def _invalid_request(error: RequestValidationError) -> Response:
    errors = describe_errors(list(error.errors()))
    fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
    return _error(HTTPStatus.UNPROCESSABLE_ENTITY, f"invalid request: {fields}", errors)


@app.exception_handler(InvalidInput)
def _invalid_input(error: InvalidInput) -> Response:
    return _error(
        error.status, f"invalid request: {error.field}", [{"field": error.field, "message": error.message}]
    )


@app.exception_handler(NextpickError)
def _domain_error(error: NextpickError) -> Response:
    if error.status >= 500:
        logger.exception("request failed")
    response = _error(error.status, str(error))
    if error.retry_after_seconds is not None:
        response.headers["Retry-After"] = str(error.retry_after_seconds)
    return response


@app.not_found
def _no_route(error: NotFoundError) -> Response:
    return _error(HTTPStatus.NOT_FOUND, f"no route {app.current_event.http_method} {app.current_event.path}")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    body = event.get("body") or ""
    if len(body) > get_settings().max_body_bytes:
        # Refused before parsing so an oversized body costs nothing.
        return {
            "statusCode": 413,
            "headers": {"Content-Type": "application/json"},
            "body": f'{{"message": "body: larger than {get_settings().max_body_bytes} bytes"}}',
        }
    return app.resolve(event, context)
