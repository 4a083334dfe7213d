"""`GET /items/{item_id}/similar`: how good the model's neighbours are, and what the route costs.

    .venv/bin/python -m bench.similar quality   # MovieLens-100K: trains the model once (~2 min)
    .venv/bin/python -m bench.similar latency   # the whole API handler at 10,000 items, under moto
                                                # (nothing here is a timed assert)

**Quality** (docs/similar.md repeats the protocol next to the numbers). MovieLens-100K's users are split
by a seeded draw: 80 % train (the model is trained on their ratings with the default hyperparameters,
one seed, exported and queried through the exported `similar` signature behind LiteRT, as serving
does), 20 % held out. For every query movie that at least `MIN_HELD_OUT_RATERS` held-out users rated
and the training data knows, each contender names 10 other movies, and on the held-out users only:

- co-rating rate: mean over the 10 of P(user rated rec | user rated query);
- lift: that rate / the mean of P(user rated rec) over the same 10 (1 = no better than the base rates
  of the items named; popularity alone cannot raise it);
- genre overlap: mean Jaccard similarity of the query's and each rec's genres.

Contenders: the served model (`similar` = cosine of the item vectors), the same vectors with the
item bias appended (the design alternative, in numpy), the 10 most popular other movies, and
item-kNN cosine on the training co-ratings (`baselines.ItemKNN`'s similarity, topped up by popularity
when a movie has fewer than 10 neighbours). 95 % CIs: bootstrap over query movies (1,000 draws).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import numpy as np

from bench.common import BenchLambdaContext, median_p90

K = 10
HELD_OUT_SHARE = 0.2
MIN_HELD_OUT_RATERS = 20
SPLIT_SEED = 0
BOOTSTRAP_DRAWS = 1000

# query index -> its K recommendations (vocabulary indices)
Recommender = Callable[[int], np.ndarray]


@dataclass(frozen=True)
class HeldOut:
    """Who of the held-out users rated what, as a dense users x items 0/1 matrix (189 x 1,683)."""

    rated: np.ndarray

    @property
    def base_rate(self) -> np.ndarray:
        return self.rated.mean(axis=0)

    def co_rate(self, query: int, recs: np.ndarray) -> np.ndarray:
        raters = self.rated[:, query] > 0
        return self.rated[raters][:, recs].mean(axis=0)


def user_split(num_users: int, share: float, seed: int) -> np.ndarray:
    """True for a held-out user."""
    rng = np.random.default_rng(seed)
    held = np.zeros(num_users, dtype=bool)
    held[rng.choice(num_users, size=round(num_users * share), replace=False)] = True
    return held


def best(scores: np.ndarray, k: int) -> np.ndarray:
    order = np.argsort(-scores, kind="stable")
    return order[:k]


def unit_rows(table: np.ndarray) -> np.ndarray:
    return table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)


def cosine_recommender(table: np.ndarray) -> Recommender:
    """The top K by cosine of `table`'s rows, never the query or index 0 (numpy)."""
    unit = unit_rows(table)

    def recommend(query: int) -> np.ndarray:
        scores = unit @ unit[query]
        scores[[0, query]] = -np.inf
        return best(scores, K)

    return recommend


def knn_recommender(similarity: Any, popularity: np.ndarray) -> Recommender:
    def recommend(query: int) -> np.ndarray:
        scores = popularity * 1e-9  # ties and short rows: the more popular first
        cols, values = similarity.row(query)
        scores[cols] += values
        scores[[0, query]] = -np.inf
        return best(scores, K)

    return recommend


def popularity_recommender(popularity: np.ndarray) -> Recommender:
    def recommend(query: int) -> np.ndarray:
        scores = popularity.astype(np.float64).copy()
        scores[[0, query]] = -np.inf
        return best(scores, K)

    return recommend


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 0.0


def per_query(
    recommend: Recommender, queries: Sequence[int], held_out: HeldOut, genres: Sequence[set[str]]
) -> dict[str, np.ndarray]:
    base = held_out.base_rate
    co, lift, overlap = [], [], []
    for query in queries:
        recs = recommend(query)
        rate = held_out.co_rate(query, recs)
        co.append(rate.mean())
        lift.append(rate.mean() / max(base[recs].mean(), 1e-12))
        overlap.append(np.mean([jaccard(genres[query], genres[r]) for r in recs]))
    return {"co_rating": np.array(co), "lift": np.array(lift), "genre_jaccard": np.array(overlap)}


def bootstrap(values: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(values), size=(BOOTSTRAP_DRAWS, len(values)))
    means = values[draws].mean(axis=1)
    return float(values.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def quality(epochs: int | None = None) -> dict[str, Any]:
    from bench.quality_model import item_token_lists
    from nextpick_training.baselines import ItemKNN
    from nextpick_training.datasets import attribute_values, load_movielens
    from nextpick_training.export import ExportedModel, export_tflite
    from nextpick_training.model import Hyperparameters, train

    data = load_movielens()
    num_items = data.num_items
    held = user_split(len(data.users), HELD_OUT_SHARE, SPLIT_SEED)
    train_sequences = [list(events) for events, out in zip(data.events, held, strict=True) if not out]
    rated = np.zeros((int(held.sum()), num_items), dtype=np.float64)
    for row, events in enumerate(e for e, out in zip(data.events, held, strict=True) if out):
        rated[row, [event[0] for event in events]] = 1.0
    held_out = HeldOut(rated)
    popularity = np.bincount(
        [event[0] for events in train_sequences for event in events], minlength=num_items
    ).astype(np.float64)
    raters = rated.sum(axis=0)
    queries = [i for i in range(1, num_items) if raters[i] >= MIN_HELD_OUT_RATERS and popularity[i] > 0]
    genres = [set(attribute_values(data.item_attributes.get(i, {}), "genre")) for i in range(num_items)]

    # MovieLens users never rate a movie twice: seen items are masked in training, as bench.quality does.
    hp = Hyperparameters(exclude_seen=True, seed=0)
    if epochs is not None:  # a smoke run only; the figures use the default
        hp = dataclasses.replace(hp, epochs=epochs)
    started = time.perf_counter()
    model = train(
        train_sequences,
        num_items,
        hp,
        item_tokens=item_token_lists(data.item_attributes, num_items),
        log=lambda message: print(message, file=sys.stderr, flush=True),
    )
    training_seconds = time.perf_counter() - started
    served = ExportedModel(export_tflite(model))
    nothing_excluded = np.zeros(num_items, dtype=np.float32)

    def served_similar(query: int) -> np.ndarray:
        scores = served.similar(query, nothing_excluded)
        assert scores is not None
        return best(scores, K)

    tables = model.tables()
    contenders: dict[str, Recommender] = {
        "model `similar` (served: cosine of the item vectors)": served_similar,
        "model vectors + bias (cosine, numpy)": cosine_recommender(
            np.concatenate([tables["vectors"], tables["bias"][:, None]], axis=1)
        ),
        "item-kNN cosine on training co-ratings": knn_recommender(
            ItemKNN(train_sequences, num_items).similarity, popularity
        ),
        "popularity (10 most rated others)": popularity_recommender(popularity),
    }
    rows = {}
    for name, recommend in contenders.items():
        metrics = per_query(recommend, queries, held_out, genres)
        rows[name] = {metric: [round(x, 4) for x in bootstrap(values)] for metric, values in metrics.items()}
    return {
        "users": len(data.users),
        "held_out_users": int(held.sum()),
        "train_events": sum(len(s) for s in train_sequences),
        "held_out_events": int(rated.sum()),
        "query_items": len(queries),
        "training_seconds": round(training_seconds, 1),
        "epochs": hp.epochs,
        "rows": rows,
    }


def render_quality(result: dict[str, Any]) -> str:
    lines = [
        f"{result['users']} users ({result['held_out_users']} held out, {result['held_out_events']} "
        f"held-out ratings), {result['train_events']} training ratings, {result['query_items']} query "
        f"movies; model trained {result['epochs']} epochs in {result['training_seconds']} s.",
        "",
        "| contender | lift [95% CI] | co-rating rate [95% CI] | genre Jaccard [95% CI] |",
        "|---|---|---|---|",
    ]
    for name, row in result["rows"].items():
        cells = [
            f"{m:.3f} [{lo:.3f}, {hi:.3f}]"
            for m, lo, hi in (row[k] for k in ("lift", "co_rating", "genre_jaccard"))
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- latency ------------------------------------------------------------------------------------------

LATENCY_ITEMS, LATENCY_CALLS, BUCKET_ITEMS = 10_000, 50, 2_000
CALM_FILTER = "price >= 10 and price < 150"


SAMPLE = Path(__file__).resolve().parents[1] / "events" / "api_get_similar_items.json"


def sample_event(item_id: str, query: str) -> dict[str, Any]:
    """events/api_get_similar_items.json (the server scope) for another item and query string."""
    event: dict[str, Any] = json.loads(SAMPLE.read_text())
    params = parse_qs(query)
    event["path"] = f"/items/{item_id}/similar"
    event["pathParameters"] = {"item_id": item_id}
    event["queryStringParameters"] = {name: values[-1] for name, values in params.items()}
    event["multiValueQueryStringParameters"] = params
    return event


def latency() -> dict[str, Any]:
    """The whole API handler for GET /items/{item_id}/similar at 10,000 items, the template's stack in
    moto (in process): the benchmark model of that size (bench.models: the served architecture, random
    weights) published as a retrain would, 10,000 catalog items in 20 categories (every 50th out of
    stock), 24 full hour buckets of live trending (as bench.trending). Median and p90 of 50 calls per
    case, after one warm-up call; plus the model's `similar` alone (LiteRT) for the share it takes."""
    os.environ.update(
        AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench"
    )
    from bench import models

    models.ensure_models((LATENCY_ITEMS,))
    model_bytes, _ = models.load(LATENCY_ITEMS)
    from moto import mock_aws

    with mock_aws():
        import boto3

        from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
        from nextpick.adapters.dynamodb_trending import DynamoDbTrending
        from nextpick.domain.events import CatalogItem
        from nextpick.domain.trending import bucket_key
        from nextpick.handlers import api, wiring
        from nextpick_local.standin.aws_resources import create_stack
        from nextpick_training.publish import publish

        stack = create_stack("bench-similar")
        os.environ.update(stack.env("ApiFunction"))
        rng = random.Random(7)
        ids = [str(item) for item in models.item_ids(LATENCY_ITEMS)[1:]]
        items = [
            CatalogItem(
                item_id=i, category=f"c{n % 20}", price=float(1 + n % 200), stock=0 if n % 50 == 0 else 5
            )
            for n, i in enumerate(ids)
        ]
        # One item the model does not know yet: its answer is the trending fallback.
        items.append(CatalogItem(item_id="item-new", category="c3", price=20.0, stock=5))
        DynamoDbCatalog(stack.refs["ItemsTable"], 30).put_items(items)
        publish(
            boto3.client("s3"), None, stack.model_bucket, "models/", None, model_bytes,
            state_dim=models.hyperparameters().state_dim(), items=models.item_ids(LATENCY_ITEMS),
            training_window={}, hyperparameters=models.hyperparameters().as_dict(), metrics={},
        )  # fmt: skip
        trending = DynamoDbTrending(stack.refs["TrendingTable"], BUCKET_ITEMS)
        now = datetime.now(UTC)
        for age in range(24):
            counts = {i: rng.randint(1, 40) / 2 for i in rng.sample(ids, BUCKET_ITEMS)}
            trending.add(bucket_key("_all", now - timedelta(hours=age)), 0, counts)
        wiring.reset()
        context = BenchLambdaContext()

        def timed(item_id: str, query: str, source: str) -> dict[str, float]:
            event = sample_event(item_id, query)
            samples = []
            for call in range(LATENCY_CALLS + 1):
                started = time.perf_counter()
                response = api.lambda_handler(event, context)
                elapsed = (time.perf_counter() - started) * 1000
                assert response["statusCode"] == 200, response
                assert json.loads(response["body"])["source"] == source
                if call:  # the first call builds the masks, the runner and the clients
                    samples.append(elapsed)
            return median_p90(samples)

        model = wiring.model_source().current()
        assert model is not None
        exclude = np.zeros(LATENCY_ITEMS, dtype=np.float32)
        signature = []
        for _ in range(LATENCY_CALLS):
            started = time.perf_counter()
            model.similar(17, exclude)
            signature.append((time.perf_counter() - started) * 1000)
        return {
            "catalog_items": LATENCY_ITEMS,
            "model_bytes": len(model_bytes),
            "model_k10_ms": timed("item-17", "k=10", "model"),
            "model_k10_rules_ms": timed("item-17", f"k=10&max_per_category=2&filter={CALM_FILTER}", "model"),
            "fallback_k10_ms": timed("item-new", "k=10", "fallback"),
            "similar_signature_alone_ms": median_p90(signature),
        }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.similar")
    parser.add_argument("what", choices=("quality", "latency"))
    parser.add_argument("--epochs", type=int, default=None, help="smoke runs only (default: the model's)")
    args = parser.parse_args(argv)
    if args.what == "quality":
        result = quality(args.epochs)
        print(json.dumps(result))
        print(render_quality(result))
    else:
        print(json.dumps(latency()))


if __name__ == "__main__":
    main()
