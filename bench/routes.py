"""Every route of issue 12 through the whole API handler at 10,000 catalog items, in one stack
(docs/route-latency.md is this command's report).

    .venv/bin/python -m bench.routes [--out docs/route-latency.md]

The template's stack in moto (in process): the served architecture at 10,000 items (bench.models,
random weights: speed depends on shapes only; its export carries the `similar` signature) published
with a bought_together.npz of 20 partners per item (every 10th item without a row: the fallback);
10,000 catalog items in 20 categories with a title and a brand (every 50th out of stock); 24 full hour
buckets of live trending (2,000 items each: the cap); the named rule set `storefront` (a filter, a
promotion of 2 slots, a category cap). Each case is the route's sample event (events/*.json) with the
path, query and body replaced; `POST /events` gets a new event id per call, outside the timing. The
model, catalog, trending read and rule set are loaded by a first call, as in a warm container. Median
and p90 of `REPEATS` calls each, interleaved; moto's DynamoDB emulation is inside every figure that
reads or writes a table, so these are upper bounds for Lambda, not Lambda latencies. Nothing here is a
timed assert. Also the one-off cost a container pays per model version to read and verify the table.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BenchLambdaContext, median_p90

ROOT = Path(__file__).resolve().parents[1]
CATALOG_ITEMS, PARTNERS, REPEATS = 10_000, 20, 30
RULE_SET = {
    "filter": 'price >= 5 and brand != "brand-3"',
    "promotions": [{"name": "featured", "slots": 2, "items": [f"item-{n}" for n in range(100, 150)]}],
    "max_per_category": 3,
}


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.routes", description=__doc__)
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args(argv)
    result = run_in_moto(run, args.repeats)
    print(json.dumps(result, indent=2))
    if args.out:
        command = "python -m bench.routes" + (f" --repeats {args.repeats}" if args.repeats != REPEATS else "")
        args.out.write_text(render(result, command))


def run_in_moto(run: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """`run(*args)` inside moto (in process), with bench credentials and the 10k-item model built."""
    os.environ.update(
        AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench"
    )
    from bench import models

    models.ensure_models((CATALOG_ITEMS,))
    from moto import mock_aws

    with mock_aws():
        return run(*args)


def publish_model(stack: Any, created_at: datetime | None = None, **artifacts: Any) -> Any:
    """Publish the 10k-item bench model into the stack's bucket (a newer `created_at`: another version
    of the same shape); `artifacts` are publish's optional ones (e.g. the bought-together table)."""
    import boto3

    from bench import models
    from nextpick_training.publish import publish

    model_bytes, manifest = models.load(CATALOG_ITEMS)
    return publish(
        boto3.client("s3"),
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
        created_at=created_at,
        **artifacts,
    )


def sample(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "events" / f"{name}.json").read_text())
    return event


def request(
    name: str,
    path: str,
    params: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: Any = None,
) -> dict[str, Any]:
    """The sample event `name` (its resource, method and authorizer context) for another path."""
    event = copy.deepcopy(sample(name))
    event["path"] = path
    event["pathParameters"] = params
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    if body is not None:
        event["body"] = json.dumps(body)
    return event


def setup(stack: Any, now: datetime) -> tuple[list[str], int]:
    """Catalog, live trending and the published model with its partner table; the table's size."""
    from bench import models
    from nextpick.adapters import model_artifacts
    from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
    from nextpick.adapters.dynamodb_trending import DynamoDbTrending
    from nextpick.domain.events import CatalogItem
    from nextpick.domain.trending import bucket_key

    ids = [str(i) for i in models.item_ids(CATALOG_ITEMS)[1:]]
    words = ("trail", "road", "leather", "wool", "light", "classic", "pro", "kids", "winter", "summer")
    DynamoDbCatalog(stack.refs["ItemsTable"], 30).put_items(
        [
            CatalogItem(
                item_id=i,
                title=f"{words[n % 10]} {words[(n // 10) % 10]} shoe",
                category=f"c{n % 20}",
                price=1.0 + n % 100,
                stock=0 if n % 50 == 0 else 5,
                attributes={"brand": f"brand-{n % 50}"},
            )
            for n, i in enumerate(ids)
        ]
    )
    rng = np.random.default_rng(3)
    trending = DynamoDbTrending(stack.refs["TrendingTable"], 2000)
    for hours in range(24):
        counts = {str(i): float(rng.integers(1, 40)) for i in rng.choice(ids, 2000, replace=False)}
        trending.add(bucket_key("_all", now - timedelta(hours=hours)), 0, counts)
    table_bytes = model_artifacts.encode_partner_table(random_table(CATALOG_ITEMS))
    publish_model(stack, bought_together=table_bytes, bought_together_parameters={"bench": True})
    return ids, len(table_bytes)


def table_load_ms(stack: Any) -> dict[str, float]:
    import boto3

    from nextpick.adapters import model_artifacts
    from nextpick.adapters import model_registry as registry

    s3 = boto3.client("s3")
    pointer = registry.current_pointer(s3, stack.model_bucket, "models/")
    assert pointer is not None
    version = pointer["version"]
    published = registry.read_manifest(s3, stack.model_bucket, "models/", version)
    samples = []
    for _ in range(5):
        started = time.perf_counter()
        model_artifacts.load_partner_table(s3, stack.model_bucket, "models/", published)
        samples.append((time.perf_counter() - started) * 1000)
    return median_p90(samples)


def cases(ids: list[str], now: datetime) -> dict[str, Callable[[int], dict[str, Any]]]:
    """Case name -> the event of its n-th call (POST /events needs a new event id each time)."""
    cart = [f"item-{n}" for n in (11, 12, 13, 14, 15)]
    shopper = "bench-shopper"

    def fixed(event: dict[str, Any]) -> Callable[[int], dict[str, Any]]:
        return lambda _: event

    def event_of(kind: str) -> Callable[[int], dict[str, Any]]:
        def build(n: int) -> dict[str, Any]:
            body: dict[str, Any] = {
                "event_id": f"bench-{kind}-{n}",
                "user_id": f"{shopper}-{kind}",
                "timestamp": now.isoformat(),
            }
            if kind == "search":
                body |= {"event_type": "search", "query": "trail running shoe", "clicked_items": [ids[7]]}
            elif kind == "review":
                body |= {"event_type": "review", "item_id": ids[n % 500], "rating": 4, "text": "Fits well."}
            else:
                body |= {"event_type": "view", "item_id": ids[n % 500]}
            return request("api_post_event", "/events", query={"k": "10"}, body=body)

        return build

    def recs(user: str, query: dict[str, str]) -> Callable[[int], dict[str, Any]]:
        path = f"/users/{user}/recommendations"
        return fixed(request("api_get_recommendations", path, {"user_id": user}, query))

    def item(route: str, item_id: str, query: dict[str, str]) -> Callable[[int], dict[str, Any]]:
        name = "api_get_similar_items" if route == "similar" else "api_get_bought_together"
        return fixed(request(name, f"/items/{item_id}/{route}", {"item_id": item_id}, query))

    def cart_of(user: str | None) -> Callable[[int], dict[str, Any]]:
        body = {"items": cart, **({"user_id": user} if user else {})}
        return fixed(request("api_post_cart", "/recommendations/cart", query={"k": "10"}, body=body))

    k10 = {"k": "10"}
    return {
        "GET /trending": fixed(request("api_get_trending", "/trending", query=k10)),
        "GET /trending?category=c3": fixed(
            request("api_get_trending", "/trending", query=k10 | {"category": "c3"})
        ),
        "GET recommendations, new shopper (live trending)": recs("nobody-yet", k10),
        "GET recommendations, new shopper, rules=storefront": recs(
            "nobody-yet", k10 | {"rules": "storefront"}
        ),
        "GET recommendations, shopper with 50 events": recs(shopper, k10),
        "GET recommendations, 50 events, rules=storefront": recs(shopper, k10 | {"rules": "storefront"}),
        "GET similar": item("similar", "item-11", k10),
        "GET similar, filter + max_per_category": item(
            "similar", "item-11", k10 | {"filter": "price < 80", "max_per_category": "2"}
        ),
        "GET bought-together": item("bought-together", "item-11", k10),
        "GET bought-together, fallback (no partners)": item("bought-together", "item-20", k10),
        "POST /recommendations/cart, 5 items, anonymous": cart_of(None),
        "POST /recommendations/cart, 5 items, shopper with 50 events": cart_of(shopper),
        "POST /events, view": event_of("view"),
        "POST /events, search (3 words, 1 click)": event_of("search"),
        "POST /events, review": event_of("review"),
    }


def run(repeats: int) -> dict[str, Any]:
    from nextpick.handlers import api, wiring
    from nextpick_local.standin.aws_resources import create_stack

    stack = create_stack("bench-routes")
    os.environ.update(stack.env("ApiFunction"))
    # Only the figures on stdout: no log lines, no EMF metrics (their cost is in every API call alike).
    os.environ.update(POWERTOOLS_LOG_LEVEL="WARNING", POWERTOOLS_METRICS_DISABLED="true")
    now = datetime.now(UTC)
    ids, table_bytes = setup(stack, now)
    wiring.reset()

    def handle(event: dict[str, Any]) -> dict[str, Any]:
        response = api.lambda_handler(event, BenchLambdaContext())
        assert response["statusCode"] == 200, response
        body: dict[str, Any] = json.loads(response["body"])
        return body

    handle(request("api_put_rule_set", "/rule-sets/storefront", {"name": "storefront"}, body=RULE_SET))
    # A shopper with 50 stored events (the state's recent events) for the personal routes.
    for n in range(50):
        body = {
            "event_id": f"history-{n}",
            "user_id": "bench-shopper",
            "item_id": ids[(n * 37) % len(ids)],
            "event_type": "purchase" if n % 5 == 0 else "view",
            "timestamp": (now - timedelta(minutes=60 - n)).isoformat(),
        }
        handle(request("api_post_event", "/events", body=body))
    built = cases(ids, now)
    # The first call of each loads what a warm container holds (model, catalog, trending, rule set).
    first = {name: handle(make(-1)) for name, make in built.items()}
    sources = {
        name: answer.get("source") or answer.get("cold_start") or answer.get("model_status", "live trending")
        for name, answer in first.items()
    }
    timings: dict[str, list[float]] = {name: [] for name in built}
    for n in range(repeats):
        for name, make in built.items():
            event = make(n)
            started = time.perf_counter()
            handle(event)
            timings[name].append((time.perf_counter() - started) * 1000)
    return {
        "catalog_items": CATALOG_ITEMS,
        "partners_per_item": PARTNERS,
        "artifact_bytes": table_bytes,
        "table_read_and_verify_ms": table_load_ms(stack),
        "sources": sources,
        "whole_handler_ms": {name: median_p90(samples) for name, samples in timings.items()},
        "repeats": repeats,
        "date": now.strftime("%Y-%m-%d"),
        "load_average": round(os.getloadavg()[0], 1),
    }


def render(result: dict[str, Any], command: str) -> str:
    rows = [
        f"| {name} | {ms['median']} | {ms['p90']} | {result['sources'][name]} |"
        for name, ms in result["whole_handler_ms"].items()
    ]
    table_ms = result["table_read_and_verify_ms"]
    return "\n".join(
        [
            "# Route latency at 10,000 items (issue 12 surfaces)",
            "",
            f"Generated by `{command}` on {result['date']} (2-core shared VM, load average "
            f"{result['load_average']} at the end).",
            "The protocol is bench/routes.py's docstring: the whole",
            "API `lambda_handler` (Powertools logging, tracing and validation included) on the route's sample",
            "event, the template's tables in moto in process, a warm container. moto's DynamoDB is inside",
            "every figure that touches a table, so read them as upper bounds, not Lambda latencies.",
            "",
            "| route and case | median ms | p90 ms | answered from |",
            "|---|---|---|---|",
            *rows,
            "",
            "Once per model version per container: reading and verifying the "
            f"{result['artifact_bytes']:,}-byte bought-together table,",
            f"median {table_ms['median']} ms (p90 {table_ms['p90']}).",
            "",
            "`answered from`: `source` of the item routes (`model`, or `fallback` = live trending in the",
            "item's category), `cold_start` of a new shopper's answer (`live_trending`), else `model_status`.",
            "",
            "Measured apart, with their own protocols: the rules' own cost (`python -m bench.rules`,",
            "[rules.md](rules.md)), the trending read and a new shopper's answer at 100k items",
            "(`python -m bench.trending`, `python -m bench.new_shopper`, [trending.md](trending.md)), the",
            "`similar` signature alone (`python -m bench.similar latency`, [similar.md](similar.md)), the",
            "search's query resolution alone and its index, built once per catalog snapshot",
            "(`python -m bench.search`: 2.3 ms and ~70 ms at 10k items when a query word names every item).",
            "",
        ]
    )


if __name__ == "__main__":
    main()
