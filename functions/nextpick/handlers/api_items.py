"""The item routes of the REST API (issue 12): an item's neighbours for a product page. A Powertools
Router included by api.py, whose authorization middleware, error handlers, logging and metrics apply
here unchanged; the parameters are api_params.py's, as on every other route."""

# No `from __future__ import annotations`: Powertools reads the route signatures at run time.

import time

from aws_lambda_powertools.event_handler.api_gateway import Router

from nextpick.domain.rule_sets import RuleQuery
from nextpick.handlers import wiring
from nextpick.handlers.api_errors import json_response as _json
from nextpick.handlers.api_params import (
    ExcludeItems,
    Filter,
    K,
    MaxPerCategory,
    PathId,
    RuleSetParam,
    list_size,
    path_id,
    principal_of,
)
from nextpick.handlers.openapi import SimilarAnswer, answer, error_responses
from nextpick.handlers.served import log_impressions

router = Router()


@router.get(
    "/items/<item_id>/similar",
    responses={
        **answer("The item's most similar items, best first (docs/similar.md)", SimilarAnswer),
        **error_responses(401, 403, 404, 422, 503),
    },
)
def get_similar_items(
    item_id: PathId,
    k: K = None,
    filter: Filter = None,
    max_per_category: MaxPerCategory = None,
    exclude_items: ExcludeItems = None,
    rules: RuleSetParam = None,
):
    started = time.perf_counter()
    item_id = path_id("item_id", item_id)
    size = list_size(k)
    rule_set = wiring.rule_sets().for_request(RuleQuery(filter, max_per_category, exclude_items, rules))
    found = wiring.similar_items().similar(item_id, size, rule_set)
    user_id = principal_of(router.current_event).user_id
    log_impressions(lambda now: [found.impression(user_id, now)])
    return _json({**found.as_json(), "took_ms": round((time.perf_counter() - started) * 1000, 3)})
