"""REST API (API Gateway proxy events): events in, fresh recommendations out; catalog upkeep.

Powertools does the routing, the path and query validation, the OpenAPI document, logging, EMF
metrics and tracing. Bodies are validated once, by the domain's request validation (the bus uses the
same), straight from the bytes. Answers are serialised once (api_errors.json_response) and not
re-validated. The HTTP shape of every error is decided in api_errors.py only."""

# No `from __future__ import annotations` here: Powertools reads the route signatures at run time,
# so the annotations must be real objects, not strings. Routes have no return annotation: Powertools
# would validate every answer against it, which is the one thing the answers need no second time.

import time
from dataclasses import asdict
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.domain.access import ROUTE_GRANTS, Principal
from nextpick.domain.events import CatalogBatch, EventsBody, ItemFields
from nextpick.domain.impressions import CONTROL_VARIANT, Impression, Surface, new_recommendation_id
from nextpick.domain.ranking import ColdStart, RecommendOptions
from nextpick.domain.requests import parse_body, parse_catalog, parse_events, parse_item
from nextpick.domain.rule_sets import RuleQuery
from nextpick.domain.rules import RuleSet
from nextpick.domain.service import TrackResult, UserRecommendations
from nextpick.domain.together_service import CartBody
from nextpick.errors import (
    Forbidden,
    InvalidInput,
)
from nextpick.handlers import wiring
from nextpick.handlers.api_errors import install_error_handlers
from nextpick.handlers.api_errors import json_response as _json
from nextpick.handlers.api_items import router as items_router
from nextpick.handlers.api_params import (
    Category,
    ExcludeItems,
    ExcludePurchased,
    Explain,
    Filter,
    K,
    MaxPerCategory,
    PathId,
    RuleSetParam,
    principal_of,
    recommend_options,
    request_body,
)
from nextpick.handlers.api_params import path_id as _path_id
from nextpick.handlers.api_together import router as together_router
from nextpick.handlers.openapi import (
    BatchAnswer,
    ContractResolver,
    ErasureAnswer,
    EventAnswer,
    ItemsStored,
    ItemStored,
    ModelAnswer,
    RecommendationsAnswer,
    RuleSetStored,
    TrendingAnswer,
    UserDataAnswer,
    answer,
    error_responses,
)
from nextpick.handlers.served import log_impressions
from nextpick.settings import get_settings

logger = Logger()
tracer = Tracer()
# The namespace is fixed in code so that a handler imported before its environment is set (tests, the
# local stack) still emits valid EMF; the template sets the same value.
metrics = Metrics(namespace="Nextpick")
app: ContractResolver = ContractResolver(enable_validation=True)
# Swagger UI and the OpenAPI document (`/swagger?format=json`), generated from the routes below.
# Every route but /swagger takes `Authorization: Bearer <admin key | server key | shopper token>`.
app.configure_openapi(
    title="nextpick",
    version="1",
    security_schemes={
        "bearer": HTTPBearer(
            description="An admin or server key (npa_..., nps_...) or a shopper token (an HS256 JWT)",
            bearerFormat="key or JWT",
        )
    },
    security=[{"bearer": []}],
)
app.enable_swagger(path="/swagger")

GRANTED_SCOPES = {(grant.method, grant.resource): grant.scopes for grant in ROUTE_GRANTS}
# template.yaml's routes without an authorizer: the OpenAPI document holds the API's shape, no data.
PUBLIC_ROUTES = frozenset({("GET", "/swagger")})


def _principal() -> Principal:
    return principal_of(app.current_event)


def _authorize(app: ContractResolver, next_middleware: NextMiddleware) -> Response:
    """API Gateway already refused what the caller's scope does not allow; this checks it again, in
    one place, so that a function reached another way (a misconfigured stage, a direct invoke) fails
    closed. A shopper's path user must be their own; their events' users are checked in post_events."""
    event = app.current_event
    if (event.http_method, event.resource) in PUBLIC_ROUTES:
        return next_middleware(app)
    principal = _principal()
    scopes = GRANTED_SCOPES.get((event.http_method, event.resource))
    if scopes is not None and principal.scope not in scopes:
        raise Forbidden("Authorization", f"the {principal.scope} scope may not call this route")
    user_id = (event.path_parameters or {}).get("user_id")
    if user_id is not None:
        principal.require_user("user_id", unquote(user_id))
    return next_middleware(app)


app.use(middlewares=[_authorize])
# The item routes (similar items, issue 12) live in api_items.py; the middleware and error handlers
# above and below apply to them as to every route here.
app.include_router(items_router)
# Bought together and cart completion (issue 12, docs/bought-together.md): api_together.py, likewise.
app.include_router(together_router)


def _options(
    k: int | None,
    exclude_purchased: bool | None,
    category: str | None,
    rules: RuleQuery,
    explain: bool | None = None,
) -> RecommendOptions:
    return recommend_options(k, exclude_purchased, category, rules, explain)


def _request_body() -> bytes:
    return request_body(app.current_event)


def _observe(users: list[UserRecommendations]) -> None:
    for user in users:
        if user.cold_start is ColdStart.LIVE_UNAVAILABLE:
            # The answer fell back to the model's trending list (docs/trending.md); no user id logged.
            logger.warning("live trending unavailable: a new shopper was served the model's trending list")
            metrics.add_metric(name="LiveTrendingUnavailable", unit=MetricUnit.Count, value=1)
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


@app.post(
    "/events",
    responses={
        **answer("Events applied", EventAnswer | BatchAnswer),
        **error_responses(400, 401, 403, 404, 409, 413, 415, 422, 503),
    },
)
def post_events(
    k: K = None,
    exclude_purchased: ExcludePurchased = None,
    category: Category = None,
    filter: Filter = None,
    max_per_category: MaxPerCategory = None,
    exclude_items: ExcludeItems = None,
    rules: RuleSetParam = None,
    explain: Explain = None,
):
    started = time.perf_counter()
    options = _options(
        k, exclude_purchased, category, RuleQuery(filter, max_per_category, exclude_items, rules), explain
    )
    request = parse_events(_request_body(), wiring.request_limits())
    principal = _principal()
    for position, event in enumerate(request.events):
        principal.require_user(
            "user_id" if request.is_single else f"events[{position}].user_id", event.user_id
        )
    result = wiring.recommender().track(
        request.events, options, app.lambda_context.get_remaining_time_in_millis
    )
    for status in ("accepted", "duplicate"):
        count = sum(1 for r in result.results if r.status == status)
        metrics.add_metric(name=f"Events{status.capitalize()}", unit=MetricUnit.Count, value=count)
    _observe(result.users)
    log_impressions(lambda now: [user.impression(Surface.EVENTS, now) for user in result.users])
    return _json(_track_body(result, request.is_single, started))


@app.get(
    "/users/<user_id>/recommendations",
    responses={
        **answer("The user's recommendations", RecommendationsAnswer),
        **error_responses(401, 403, 404, 422, 503),
    },
)
def get_recommendations(
    user_id: PathId,
    k: K = None,
    exclude_purchased: ExcludePurchased = None,
    category: Category = None,
    filter: Filter = None,
    max_per_category: MaxPerCategory = None,
    exclude_items: ExcludeItems = None,
    rules: RuleSetParam = None,
    explain: Explain = None,
):
    started = time.perf_counter()
    user_id = _path_id("user_id", user_id)
    rule_query = RuleQuery(filter, max_per_category, exclude_items, rules)
    options = _options(k, exclude_purchased, category, rule_query, explain)
    user = wiring.recommender().recommendations(user_id, options)
    _observe([user])
    log_impressions(lambda now: [user.impression(Surface.USER, now)])
    return _json({**user.as_json(), "took_ms": round((time.perf_counter() - started) * 1000, 3)})


@app.put(
    "/items/<item_id>",
    responses={
        **answer("Item stored", ItemStored),
        **error_responses(400, 401, 403, 404, 413, 415, 422, 503),
    },
)
def put_item(item_id: PathId):
    item = parse_item(_path_id("item_id", item_id), _request_body(), wiring.request_limits())
    wiring.catalog().put_items([item])
    return _json({"item_id": item.item_id, "status": "stored"})


@app.put(
    "/items",
    responses={**answer("Items stored", ItemsStored), **error_responses(400, 401, 403, 413, 415, 422, 503)},
)
def put_items():
    items = parse_catalog(_request_body(), wiring.request_limits())
    wiring.catalog().put_items(items)
    return _json({"stored": len(items)})


# ------------------------------------------------------------------- named rule sets (issue 12)
# The admin stores them; the shop's server reads them back (docs/rules.md, "Named rule sets").


@app.put(
    "/rule-sets/<name>",
    responses={
        **answer("Rule set stored", RuleSetStored),
        **error_responses(400, 401, 403, 404, 413, 415, 422, 503),
    },
)
def put_rule_set(name: PathId):
    name = _path_id("name", name)
    rule_set = parse_body(RuleSet, _request_body(), wiring.request_limits())
    wiring.rule_sets().put(name, rule_set)
    return _json({"name": name, "status": "stored"})


@app.get(
    "/rule-sets/<name>",
    responses={**answer("The stored rule set", RuleSet), **error_responses(401, 403, 404, 422, 503)},
)
def get_rule_set(name: PathId):
    return _json(wiring.rule_sets().get(_path_id("name", name)).model_dump(mode="json"))


@app.delete(
    "/rule-sets/<name>",
    responses={**answer("Rule set deleted", RuleSetStored), **error_responses(401, 403, 404, 422, 503)},
)
def delete_rule_set(name: PathId):
    name = _path_id("name", name)
    wiring.rule_sets().delete(name)
    return _json({"name": name, "status": "deleted"})


app.request_body("POST", "/events", EventsBody)
app.request_body("PUT", "/rule-sets/{name}", RuleSet)
app.request_body("PUT", "/items/{item_id}", ItemFields)
app.request_body("PUT", "/items", CatalogBatch)
app.request_body("POST", "/recommendations/cart", CartBody)


@app.get(
    "/model",
    responses={**answer("The live model, or model_version null", ModelAnswer), **error_responses(401, 403)},
)
def get_model():
    model = wiring.model_source().current()
    if model is None:
        return _json({"model_version": None})
    manifest = model.manifest
    keys = ("created_at", "num_items", "state_dim", "metrics", "training_window")
    return _json({"model_version": model.version, **{key: manifest.get(key) for key in keys}})


@app.get(
    "/trending",
    responses={
        **answer("What is trending now, best first (docs/trending.md)", TrendingAnswer),
        **error_responses(401, 403, 422, 503),
    },
)
def get_trending(k: K = None, category: Category = None):
    settings = get_settings()
    if k is not None and k > settings.max_k:
        raise InvalidInput("k", f"must be at most {settings.max_k}")
    live = wiring.live_trending()
    items = live.top(k or settings.default_k, category)
    # Live counts, not a model: no model version, and the control of any A/B test.
    recommendation_id = new_recommendation_id()
    log_impressions(
        lambda now: [
            Impression(
                recommendation_id=recommendation_id,
                surface=Surface.TRENDING,
                user_id=_principal().user_id,
                model_version=None,
                variant=CONTROL_VARIANT,
                items=[item.item_id for item in items],
                served_at=now,
                context={"category": category} if category else {},
            )
        ]
    )
    served = {"recommendation_id": recommendation_id, "model_version": None, "variant": CONTROL_VARIANT}
    return _json({**served, **live.as_json(items, category)})


# ------------------------------------------------------------------------------- privacy (issue 9)
# Erasure and export (docs/privacy.md). API Gateway admits only the admin and shop-server scopes here.


@app.delete(
    "/users/<user_id>",
    responses={
        **answer("The shopper is erased from serving; the log follows by `log_erased_by`", ErasureAnswer),
        **error_responses(401, 403, 404, 409, 422, 503),
    },
)
def delete_user(user_id: PathId):
    request_id = app.current_event.request_context.request_id
    receipt = wiring.privacy_requests().erase(_path_id("user_id", user_id), request_id)
    metrics.add_metric(name="UsersErased", unit=MetricUnit.Count, value=1)
    return _json(receipt.as_json())


@app.get(
    "/users/<user_id>/data",
    responses={
        **answer("What nextpick holds about the shopper", UserDataAnswer),
        **error_responses(401, 403, 404, 422, 503),
    },
)
def get_user_data(user_id: PathId):
    return _json(wiring.privacy_requests().export(_path_id("user_id", user_id)))


# Every refusal and failure becomes its status and the documented error body in api_errors, once.
install_error_handlers(app, metrics, logger)


# Tracing: one subsegment per invocation, without the response as metadata (answers carry user ids and
# recommendations, and serialising them cost more than the rest of the tracer) or an error's details;
# routes add none of their own. The correlation id is API Gateway's request id, as in the access log.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    metrics.add_metric(name="Requests", unit=MetricUnit.Count, value=1)
    return app.resolve(event, context)
