"""GET /items/{item_id}/bought-together and POST /recommendations/cart through the whole API handler at
10,000 catalog items (issue 12, docs/bought-together.md quotes it).

    .venv/bin/python -m bench.together_latency

The template's stack in moto (in process): the served architecture at 10,000 items (bench.models,
random weights: speed depends on shapes only) published with a bought_together.npz of 20 partners per
item (every 10th item without a row: the fallback), 10,000 catalog items in 20 categories (every 50th
out of stock), one full hour bucket of live trending (2,000 items). Times the API handler on the
sample events (events/api_get_bought_together.json, events/api_post_cart.json) with the model and
catalog already loaded: bought together plain (k=10), with a filter and a diversity cap, the fallback;
a cart of 5 items, anonymous and for a shopper with 50 stored events. Also the one-off cost a container
pays per model version: reading and verifying the table. Median and p90 of 20 calls each; nothing here
is a timed assert.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CATALOG_ITEMS, PARTNERS, REPEATS = 10_000, 20, 20


def _quantiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median": round(statistics.median(ordered), 2), "p90": round(ordered[int(len(ordered) * 0.9)], 2)}


def random_table(num_items: int, seed: int = 7) -> Any:
    from nextpick.domain.together import PartnerTable

    rng = np.random.default_rng(seed)
    partners = np.zeros((num_items, PARTNERS), np.int32)
    scores = np.zeros((num_items, PARTNERS), np.float32)
    for item in range(1, num_items):
        if item % 10 == 0:
            continue
        chosen = rng.choice(np.arange(1, num_items), PARTNERS + 1, replace=False)
        chosen = chosen[chosen != item][:PARTNERS]
        partners[item] = chosen
        scores[item] = np.sort(rng.uniform(0.1, 10.0, PARTNERS))[::-1]
    return PartnerTable(partners, scores)


def main() -> None:
    os.environ.update(
        AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench"
    )
    from bench import models

    models.ensure_models((CATALOG_ITEMS,))
    from moto import mock_aws

    with mock_aws():
        run()


def run() -> None:
    import boto3

    from bench import models
    from nextpick.adapters import model_registry as registry
    from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
    from nextpick.adapters.dynamodb_trending import DynamoDbTrending
    from nextpick.domain.events import CatalogItem
    from nextpick.domain.trending import bucket_key
    from nextpick.handlers import api, wiring
    from nextpick_local.standin.aws_resources import create_stack
    from nextpick_training.publish import publish

    stack = create_stack("bench-together")
    os.environ.update(stack.env("ApiFunction"))
    # Only the figures on stdout: no log lines, no EMF metrics (their cost is in every API call alike).
    os.environ.update(POWERTOOLS_LOG_LEVEL="WARNING", POWERTOOLS_METRICS_DISABLED="true")
    model_bytes, manifest = models.load(CATALOG_ITEMS)
    ids = [str(i) for i in models.item_ids(CATALOG_ITEMS)[1:]]
    DynamoDbCatalog(stack.refs["ItemsTable"], 30).put_items(
        [
            CatalogItem(item_id=i, category=f"c{n % 20}", price=1.0 + n % 100, stock=0 if n % 50 == 0 else 5)
            for n, i in enumerate(ids)
        ]
    )
    now = datetime.now(UTC)
    rng = np.random.default_rng(3)
    DynamoDbTrending(stack.refs["TrendingTable"], 2000).add(
        bucket_key("_all", now),
        0,
        {str(i): float(rng.integers(1, 40)) for i in rng.choice(ids, 2000, replace=False)},
    )
    table = random_table(CATALOG_ITEMS)
    table_bytes = registry.encode_partner_table(table)
    s3 = boto3.client("s3")
    version = publish(
        s3,
        None,
        stack.model_bucket,
        "models/",
        None,
        model_bytes,
        state_dim=manifest["state_dim"],
        items=manifest["items"],
        training_window={},
        hyperparameters={},
        metrics={},
        bought_together=table_bytes,
        bought_together_parameters={"bench": True},
    ).version
    published = registry.read_manifest(s3, stack.model_bucket, "models/", version)
    load_ms = []
    for _ in range(5):
        started = time.perf_counter()
        registry.load_partner_table(s3, stack.model_bucket, "models/", published)
        load_ms.append((time.perf_counter() - started) * 1000)
    wiring.reset()
    together = json.loads((ROOT / "events" / "api_get_bought_together.json").read_text())
    cart = json.loads((ROOT / "events" / "api_post_cart.json").read_text())

    def handle(event: dict[str, Any]) -> dict[str, Any]:
        response = api.lambda_handler(event, _Context())
        assert response["statusCode"] == 200, response
        body: dict[str, Any] = json.loads(response["body"])
        return body

    def item_page(item: str, query: dict[str, str]) -> dict[str, Any]:
        event = copy.deepcopy(together)
        event["pathParameters"] = {"item_id": item}
        event["path"] = f"/items/{item}/bought-together"
        event["queryStringParameters"] = query
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
        return event

    def cart_of(items: list[str], user: str | None) -> dict[str, Any]:
        event = copy.deepcopy(cart)
        event["body"] = json.dumps({"items": items, **({"user_id": user} if user else {})})
        event["queryStringParameters"] = {"k": "10"}
        event["multiValueQueryStringParameters"] = {"k": ["10"]}
        return event

    # A shopper with 50 stored events (the state's recent events) for the personal cart.
    post = json.loads((ROOT / "events" / "api_post_event.json").read_text())
    for n in range(50):
        event = copy.deepcopy(post)
        event["body"] = json.dumps(
            {
                "event_id": f"bench-{n}",
                "user_id": "bench-shopper",
                "item_id": ids[(n * 37) % len(ids)],
                "event_type": "purchase" if n % 5 == 0 else "view",
                "timestamp": (now - timedelta(minutes=60 - n)).isoformat(),
            }
        )
        handle(event)

    cases = {
        "bought_together_k10": item_page("item-11", {"k": "10"}),
        "bought_together_filter_and_cap": item_page(
            "item-11", {"k": "10", "filter": "price < 80", "max_per_category": "2"}
        ),
        "bought_together_fallback": item_page("item-20", {"k": "10"}),
        "cart_5_items_anonymous": cart_of([f"item-{n}" for n in (11, 12, 13, 14, 15)], None),
        "cart_5_items_shopper_50_events": cart_of(
            [f"item-{n}" for n in (11, 12, 13, 14, 15)], "bench-shopper"
        ),
    }
    sources = {name: handle(event).get("source") for name, event in cases.items()}  # warm: the first calls
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(REPEATS):
        for name, event in cases.items():
            started = time.perf_counter()
            handle(event)
            timings[name].append((time.perf_counter() - started) * 1000)
    print(
        json.dumps(
            {
                "catalog_items": CATALOG_ITEMS,
                "partners_per_item": PARTNERS,
                "artifact_bytes": len(table_bytes),
                "table_read_and_verify_ms": _quantiles(load_ms),
                "sources": sources,
                "whole_handler_ms": {name: _quantiles(samples) for name, samples in timings.items()},
            },
            indent=2,
        )
    )


class _Context:
    function_name = "bench-together"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench-together"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


if __name__ == "__main__":
    main()
