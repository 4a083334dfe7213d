"""GET /trending's cost at 10,000 catalog items (issue 12, docs/trending.md quotes it).

    .venv/bin/python -m bench.trending

The template's stack in moto (in process): 10,000 catalog items in 20 categories (every 50th out of
stock), 24 full hour buckets of 2,000 distinct items each. Times the whole API handler on the sample
event events/api_get_trending.json (all categories and `category=c3`, k=10), reading the buckets on
every call (moto's BatchGetItem of ~1 MB included, so an upper bound of what DynamoDB's read adds) and
with the container's read reused (TRENDING_REFRESH_SECONDS, the default 60 s) and the pure decay-and-merge
of the 48,000 bucket entries alone. Median and p90 of 10 calls each; nothing here is a timed assert.
"""

from __future__ import annotations

import copy
import json
import os
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import BenchLambdaContext, median_p90

SAMPLE = Path(__file__).resolve().parents[1] / "events" / "api_get_trending.json"
CATALOG_ITEMS, BUCKET_ITEMS, REPEATS = 10_000, 2_000, 10


def main() -> None:
    os.environ.update(
        AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench"
    )
    from moto import mock_aws

    with mock_aws():
        from nextpick_local.standin.aws_resources import create_stack

        stack = create_stack("bench-trending")
        os.environ.update(stack.env("ApiFunction"))
        from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
        from nextpick.adapters.dynamodb_trending import DynamoDbTrending
        from nextpick.domain.events import CatalogItem
        from nextpick.domain.trending import bucket_key, decayed_top_k
        from nextpick.handlers import api, wiring

        rng = random.Random(7)
        ids = [f"item-{n:05d}" for n in range(CATALOG_ITEMS)]
        DynamoDbCatalog(stack.refs["ItemsTable"], 30).put_items(
            [
                CatalogItem(item_id=i, category=f"c{n % 20}", price=1.0, stock=0 if n % 50 == 0 else 5)
                for n, i in enumerate(ids)
            ]
        )
        now = datetime.now(UTC)
        trending = DynamoDbTrending(stack.refs["TrendingTable"], BUCKET_ITEMS)
        for age in range(24):
            counts = {i: rng.randint(1, 40) / 2 for i in rng.sample(ids, BUCKET_ITEMS)}
            trending.add(bucket_key("_all", now - timedelta(hours=age)), 0, counts)
        wiring.reset()
        sample = json.loads(SAMPLE.read_text())

        def get(query: dict[str, str]) -> dict[str, Any]:
            event = copy.deepcopy(sample)
            event["queryStringParameters"] = query
            event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()}
            response = api.lambda_handler(event, BenchLambdaContext())
            assert response["statusCode"] == 200, response
            body: dict[str, Any] = json.loads(response["body"])
            return body

        def timed() -> list[float]:
            get({"k": "10"})  # the container's first call: the catalog snapshot, the clients, the read
            handler: list[float] = []
            for query in [{"k": "10"}, {"k": "10", "category": "c3"}] * (REPEATS // 2):
                started = time.perf_counter()
                assert len(get(query)["items"]) == 10
                handler.append((time.perf_counter() - started) * 1000)
            return handler

        os.environ["TRENDING_REFRESH_SECONDS"] = "0"  # every call reads the buckets
        uncached = timed()
        os.environ["TRENDING_REFRESH_SECONDS"] = "60"  # the default: a container reuses its read
        wiring.reset()
        cached = timed()
        live = wiring.live_trending()
        keys = [bucket_key("_all", hour) for hour in live.window.hours(now)]
        found = trending.read(keys)
        by_age = {age: found[key] for age, key in enumerate(keys)}
        snapshot = wiring.catalog().snapshot()
        merge: list[float] = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            decayed_top_k(by_age, live.window, snapshot, 10, None)
            merge.append((time.perf_counter() - started) * 1000)
        print(
            json.dumps(
                {
                    "catalog_items": CATALOG_ITEMS,
                    "bucket_entries": sum(len(v) for v in found.values()),
                    "whole_handler_reading_ms": median_p90(uncached),
                    "whole_handler_cached_read_ms": median_p90(cached),
                    "decay_and_merge_ms": median_p90(merge),
                }
            )
        )


if __name__ == "__main__":
    main()
