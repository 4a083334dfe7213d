"""POST /events with a search event at 10,000 catalog items (issue 12; docs/benchmarks.md quotes it).

    .venv/bin/python -m bench.search

The template's stack in moto (in process): 10,000 catalog items in 20 categories with a three-word
title and a brand (50 brands). Times the whole API handler on events/api_post_search_event.json's
proxy event, body replaced per call (a new event id and shopper each time), for a search (three query
words, one click) and, interleaved, a plain view: the difference is the search's own cost (parsing,
resolving the query against the cached index, more fold steps through the model's `update`, a longer
log record). The benchmark's 10k model (bench/models.py: the served architecture, random weights) is
published, so both calls fold and rank, as POST /events does. Also the once-per-catalog-snapshot
index build. moto's DynamoDB emulation is included,
so these are not Lambda latencies. Median and p90 of the calls; nothing here is a timed assert.
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.common import BenchLambdaContext, median_p90

SAMPLE = Path(__file__).resolve().parents[1] / "events" / "api_post_search_event.json"
CATALOG_ITEMS, REPEATS = 10_000, 40
WORDS = ("trail", "road", "leather", "wool", "light", "classic", "pro", "kids", "winter", "summer")


def main() -> None:
    os.environ.update(
        AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench"
    )
    from moto import mock_aws

    with mock_aws():
        from nextpick_local.standin.aws_resources import create_stack

        stack = create_stack("bench-search")
        os.environ.update(stack.env("ApiFunction"))
        import boto3

        from bench import models
        from nextpick.adapters import model_registry as registry
        from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
        from nextpick.domain.events import CatalogItem
        from nextpick.domain.search import SearchIndex
        from nextpick.handlers import api, wiring

        DynamoDbCatalog(stack.refs["ItemsTable"], 30).put_items(
            [
                CatalogItem(
                    item_id=f"item-{n}",
                    category=f"c{n % 20}",
                    price=float(1 + n % 90),
                    stock=5,
                    title=f"{WORDS[n % 10]} {WORDS[(n // 10) % 10]} shoe {n}",
                    attributes={"brand": f"brand-{n % 50}"},
                )
                for n in range(1, CATALOG_ITEMS)
            ]
        )
        models.ensure_models((CATALOG_ITEMS,))
        model_bytes, manifest = models.load(CATALOG_ITEMS)
        s3, bucket, version = boto3.client("s3"), stack.model_bucket, manifest["version"]
        s3.put_object(
            Bucket=bucket, Key=registry.model_key(registry.DEFAULT_PREFIX, version), Body=model_bytes
        )
        s3.put_object(
            Bucket=bucket,
            Key=registry.manifest_key(registry.DEFAULT_PREFIX, version),
            Body=json.dumps(manifest).encode(),
        )
        pointer = registry.build_pointer(manifest, registry.DEFAULT_PREFIX, datetime.now(UTC))
        s3.put_object(Bucket=bucket, Key=registry.pointer_key(), Body=json.dumps(pointer).encode())
        wiring.reset()
        sample = json.loads(SAMPLE.read_text())
        base = json.loads(sample["body"])

        def post(n: int, search: bool) -> float:
            body = (
                {**base, "event_id": f"s{n}", "user_id": f"u{n}", "query": "trail running shoe brand-7"}
                if search
                else {k: v for k, v in base.items() if k not in ("query", "clicked_items")}
                | {"event_id": f"v{n}", "user_id": f"w{n}", "event_type": "view", "item_id": "item-7"}
            )
            event = copy.deepcopy(sample)
            event["body"] = json.dumps(body)
            started = time.perf_counter()
            response = api.lambda_handler(event, BenchLambdaContext())
            elapsed = (time.perf_counter() - started) * 1000
            assert response["statusCode"] == 200, response
            assert len(json.loads(response["body"])["recommendations"]) == 10, response
            return elapsed

        post(0, True)  # the container's first call: clients, the catalog snapshot, the search index
        searches, views = [], []
        for n in range(1, REPEATS + 1):
            searches.append(post(n, True))
            views.append(post(n, False))
        snapshot = wiring.catalog().snapshot()
        builds = []
        for _ in range(3):
            started = time.perf_counter()
            index = SearchIndex.build(snapshot)
            builds.append((time.perf_counter() - started) * 1000)
        resolves = []
        for _ in range(REPEATS):
            started = time.perf_counter()
            index.resolve("trail running shoe brand-7")
            resolves.append((time.perf_counter() - started) * 1000)
        print(
            json.dumps(
                {
                    "catalog_items": CATALOG_ITEMS,
                    "post_search_whole_handler_ms": median_p90(searches),
                    "post_view_whole_handler_ms": median_p90(views),
                    "resolve_query_ms": median_p90(resolves),
                    "index_build_once_per_snapshot_ms": round(statistics.median(builds), 1),
                }
            )
        )


if __name__ == "__main__":
    main()
