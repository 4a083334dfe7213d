"""Bought together and cart completion (issue 12; docs/bought-together.md): a Powertools Router that
api.py includes, whose authorization middleware, error handlers, logging and metrics apply here
unchanged; parameters, option parsing and body reading are api_params.py's, as on every route."""

# No `from __future__ import annotations`: Powertools reads the route signatures at run time.

import time

from aws_lambda_powertools.event_handler.api_gateway import Router

from nextpick.domain.impressions import Surface
from nextpick.domain.requests import parse_body
from nextpick.domain.rule_sets import RuleQuery
from nextpick.domain.together_service import CartBody
from nextpick.handlers import wiring
from nextpick.handlers.api_errors import json_response as _json
from nextpick.handlers.api_params import (
    Category,
    ExcludeItems,
    ExcludePurchased,
    Filter,
    K,
    MaxPerCategory,
    PathId,
    RuleSetParam,
    path_id,
    principal_of,
    recommend_options,
    request_body,
)
from nextpick.handlers.openapi import BoughtTogetherAnswer, CartAnswer, answer, error_responses
from nextpick.handlers.served import log_impressions

router = Router()


def _took(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


@router.get(
    "/items/<item_id>/bought-together",
    responses={
        **answer("What is bought with the item, best first", BoughtTogetherAnswer),
        **error_responses(401, 403, 404, 422, 503),
    },
)
def get_bought_together(
    item_id: PathId,
    k: K = None,
    filter: Filter = None,
    max_per_category: MaxPerCategory = None,
    exclude_items: ExcludeItems = None,
    rules: RuleSetParam = None,
):
    started = time.perf_counter()
    item_id = path_id("item_id", item_id)
    options = recommend_options(k, None, None, RuleQuery(filter, max_per_category, exclude_items, rules))
    picks = wiring.together().bought_together(item_id, options)
    user_id = principal_of(router.current_event).user_id
    log_impressions(lambda now: [picks.impression(user_id, now)])
    return _json({**picks.as_json(), "took_ms": _took(started)})


@router.post(
    "/recommendations/cart",
    responses={
        **answer("What completes the cart, best first", CartAnswer),
        **error_responses(400, 401, 403, 404, 413, 415, 422, 503),
    },
)
def post_cart(
    k: K = None,
    exclude_purchased: ExcludePurchased = None,
    category: Category = None,
    filter: Filter = None,
    max_per_category: MaxPerCategory = None,
    exclude_items: ExcludeItems = None,
    rules: RuleSetParam = None,
):
    started = time.perf_counter()
    options = recommend_options(
        k, exclude_purchased, category, RuleQuery(filter, max_per_category, exclude_items, rules)
    )
    body = parse_body(CartBody, request_body(router.current_event), wiring.request_limits())
    if body.user_id is not None:
        principal_of(router.current_event).require_user("user_id", body.user_id)
    result = wiring.together().cart(body.items, body.user_id, options)
    log_impressions(lambda now: [result.impression(Surface.CART, now)])
    return _json({**result.as_json(), "user_id": body.user_id, "took_ms": _took(started)})
