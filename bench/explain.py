"""Explanations (docs/explanations.md is this command's report): their fidelity on MovieLens-100K and the
demo shop, and their cost per request through the whole API handler at 10,000 items.

    .venv/bin/python -m bench.explain [--users 200] [--epochs 4] [--repeats 30] [--out docs/explanations.md]

**Fidelity.** A model is trained on the whole data set (the served architecture, `--epochs` epochs) and
exported; for `--users` shoppers (every n-th, spread over the data set) the top `--k` are scored at one
hour after the shopper's last event and explained through the exported `explain` signature
(`nextpick_training.explain_fidelity`): for each pick with a `because`, its cited items are removed from
the shopper's events for real (state refolded from zeros, history input rebuilt) and the pick rescored;
likewise for `--draws` random sets of as many of the shopper's history items. Reported: the share of
picks where the cited items lower the score more than the random ones do on average, and the mean drops.
MovieLens: every movie is rated once, so a shopper's own movies are excluded from the picks (every pick is
a new movie: the explore side). The demo shop (`nextpick_local.demo.demo_shop.generate()`, its history
and its named shoppers' live events): purchased items are excluded, as serving does by default; views
and cart items can be picked again (the repeat side).

**Cost.** The template's stack in moto (in process) with bench.routes' model (10,000 items, the served
architecture with random weights: speed depends on shapes only, its export carries `explain`) and a
10,000-item catalog (no trending buckets, no partner table: this route reads neither), one shopper with
50 events; GET /users/{user_id}/recommendations
k=10 with and without `explain=true`, interleaved, `--repeats` calls each, median and p90 of the whole
`lambda_handler`. No timed assert anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import BenchLambdaContext, median_p90

HOUR = 3600.0


def _train_export(
    sequences: Sequence[Sequence[Any]], num_items: int, tokens: list[list[str]], epochs: int
) -> Any:
    from nextpick_training.export import ExportedModel, export_tflite
    from nextpick_training.model import Hyperparameters, train

    model = train(sequences, num_items, Hyperparameters(epochs=epochs), item_tokens=tokens)
    return ExportedModel(export_tflite(model))


def _measure(
    model: Any, shoppers: Sequence[Sequence[Any]], users: int, k: int, draws: int, excluded: Any
) -> dict[str, Any]:
    from nextpick_training.explain_fidelity import Fidelity, measure_shopper

    fidelity, rng = Fidelity(), np.random.default_rng(0)
    chosen = [s for s in shoppers if len(s) >= 2]
    step = max(1, len(chosen) // users)
    started = time.perf_counter()
    for events in chosen[::step][:users]:
        measure_shopper(model, events, events[-1][3] + HOUR, k, rng, fidelity, excluded(events), draws)
    return {
        **fidelity.as_row(),
        "shoppers": min(users, len(chosen[::step])),
        "seconds": round(time.perf_counter() - started),
    }


def movielens(users: int, k: int, draws: int, epochs: int) -> dict[str, Any]:
    from bench.quality_model import item_token_lists
    from nextpick_training.datasets import load_movielens

    data = load_movielens()
    model = _train_export(
        data.events, data.num_items, item_token_lists(data.item_attributes, data.num_items), epochs
    )
    return _measure(model, data.events, users, k, draws, lambda events: sorted({e[0] for e in events}))


def demo(users: int, k: int, draws: int, epochs: int) -> dict[str, Any]:
    from nextpick.domain.item_attributes import item_tokens
    from nextpick_local.demo.demo_shop import generate

    shop = generate(now=datetime(2026, 11, 30, 12, tzinfo=UTC))
    index = {item.item_id: n for n, item in enumerate(shop.items, start=1)}
    tokens = [[], *(item_tokens(i.category, i.price, i.attributes) for i in shop.items)]
    by_user: dict[str, list[Any]] = {}
    events = [event for event, _ in shop.history] + [e for live in shop.live_events.values() for e in live]
    for event in sorted(events, key=lambda e: e.timestamp):
        for step in event.steps():
            by_user.setdefault(event.user_id, []).append(
                (index[step.item_id], step.event_type.code, step.strength, event.timestamp.timestamp())
            )
    shoppers = list(by_user.values())
    model = _train_export(shoppers, len(shop.items) + 1, tokens, epochs)
    return _measure(
        model, shoppers, users, k, draws, lambda events: sorted({e[0] for e in events if e[1] == 4})
    )


def cost(repeats: int) -> dict[str, Any]:
    """Median and p90 of the whole handler, GET recommendations k=10 with and without explain=true."""
    from bench import models
    from bench.routes import CATALOG_ITEMS, publish_model, request
    from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
    from nextpick.domain.events import CatalogItem
    from nextpick.handlers import api, wiring
    from nextpick_local.standin.aws_resources import create_stack

    stack = create_stack("bench-explain")
    os.environ.update(stack.env("ApiFunction"))
    os.environ.update(POWERTOOLS_LOG_LEVEL="WARNING", POWERTOOLS_METRICS_DISABLED="true")
    now = datetime.now(UTC)
    # bench.routes' catalog and model, without its trending buckets and partner table (not on this route).
    ids = [str(i) for i in models.item_ids(CATALOG_ITEMS)[1:]]
    DynamoDbCatalog(stack.refs["ItemsTable"], 30).put_items(
        [
            CatalogItem(item_id=i, category=f"c{n % 20}", price=1.0 + n % 100, stock=5)
            for n, i in enumerate(ids)
        ]
    )
    publish_model(stack)
    wiring.reset()

    def handle(event: dict[str, Any]) -> dict[str, Any]:
        response = api.lambda_handler(event, BenchLambdaContext())
        assert response["statusCode"] == 200, response
        body: dict[str, Any] = json.loads(response["body"])
        return body

    for n in range(50):
        body = {
            "event_id": f"history-{n}",
            "user_id": "bench-shopper",
            "item_id": ids[(n * 37) % len(ids)],
            "event_type": "purchase" if n % 5 == 0 else "view",
            "timestamp": (now - timedelta(minutes=60 - n)).isoformat(),
        }
        handle(request("api_post_event", "/events", body=body))
    path, params = "/users/bench-shopper/recommendations", {"user_id": "bench-shopper"}
    cases = {
        "without explain": request("api_get_recommendations", path, params, {"k": "10"}),
        "explain=true": request("api_get_recommendations", path, params, {"k": "10", "explain": "true"}),
    }
    first = {name: handle(event) for name, event in cases.items()}
    assert all("because" in pick for pick in first["explain=true"]["recommendations"])
    timings: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, event in cases.items():
            started = time.perf_counter()
            handle(event)
            timings[name].append((time.perf_counter() - started) * 1000)
    return {name: median_p90(samples) for name, samples in timings.items()}


def render(result: dict[str, Any], command: str) -> str:
    rows = [
        f"| {name} | {r['shoppers']} | {r['explained_picks']} | {r['unexplained_picks']} | "
        f"**{r['holds']:.1%}** | {r['mean_drop_cited']} | {r['mean_drop_random']} |"
        for name, r in result["fidelity"].items()
    ]
    costs = result["cost_ms"]
    cost_rows = [f"| {name} | {ms['median']} | {ms['p90']} |" for name, ms in costs.items()]
    extra = round(costs["explain=true"]["median"] - costs["without explain"]["median"], 2)
    return "\n".join(
        [
            f"Generated by `{command}` on {result['date']} (2-core shared VM, load average "
            f"{result['load_average']} at the end). Protocol: bench/explain.py's docstring.",
            "",
            "| data set | shoppers | explained picks | picks without because | cited > random | "
            "mean drop, cited (log P) | mean drop, random |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            "GET /users/{user_id}/recommendations, k=10, 10,000 items, whole `lambda_handler` (moto in process):",
            "",
            "| case | median ms | p90 ms |",
            "|---|---|---|",
            *cost_rows,
            "",
            f"Explaining ten picks costs **{extra} ms** (median) per request.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--only", choices=("movielens", "demo", "cost"), action="append")
    parser.add_argument("--out", type=Path, help="also write the markdown results here")
    args = parser.parse_args(argv)
    parts = args.only or ["movielens", "demo", "cost"]
    result: dict[str, Any] = {"fidelity": {}, "cost_ms": {}}
    if "movielens" in parts:
        result["fidelity"]["MovieLens-100K"] = movielens(args.users, args.k, args.draws, args.epochs)
        print(json.dumps(result["fidelity"]["MovieLens-100K"]), flush=True)
    if "demo" in parts:
        result["fidelity"]["demo shop"] = demo(args.users, args.k, args.draws, args.epochs)
        print(json.dumps(result["fidelity"]["demo shop"]), flush=True)
    if "cost" in parts:
        from bench.routes import run_in_moto

        result["cost_ms"] = run_in_moto(cost, args.repeats)
        print(json.dumps(result["cost_ms"]), flush=True)
    result |= {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "load_average": round(os.getloadavg()[0], 1)}
    print(json.dumps(result, indent=2))
    if args.out and len(parts) == 3:
        args.out.write_text(
            render(result, " ".join(["python -m bench.explain", *(sys.argv[1:] if argv is None else argv)]))
        )


if __name__ == "__main__":
    main()
