"""`python -m bench.new_shopper`: what serving live trending first costs a new shopper's answer
(docs/trending.md, "A new shopper's answer").

In process, no AWS: `bench.rules`' fixed-score model and catalog at 10,000 and 100,000 items, the model's
`trending` list of 500, and 24 full hour buckets of 2,000 random ids held in memory (the table's read
itself is measured by `bench.trending`). For each contender, a shopper without events asks for k=10 with
no rules and with `typical_rules`: the first call (the buckets' merge and their layout in the model's
vocabulary, paid once per read, i.e. per container and minute) and the median and p90 of 200 calls
after it. Nothing here is a timed assert."""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from bench.rules import FixedScoresModel, snapshot, typical_rules
from nextpick.adapters.memory import InMemoryStateRepository, StaticModelSource
from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.ranking import RecommendOptions
from nextpick.domain.service import Recommender
from nextpick.domain.trending import LiveTrending, TrendingWindow, bucket_key

SIZES = (10_000, 100_000)
BUCKET_ITEMS, CALLS, MODEL_TRENDING = 2_000, 200, 500
NOW = datetime(2026, 11, 30, 8, tzinfo=UTC)


class FixedCatalog:
    def __init__(self, snapshot: CatalogSnapshot) -> None:
        self._snapshot = snapshot

    def snapshot(self) -> CatalogSnapshot:
        return self._snapshot


class Buckets:
    def __init__(self, stored: dict[str, dict[str, float]]) -> None:
        self._stored = stored

    def read(self, buckets: Sequence[str]) -> dict[str, dict[str, float]]:
        return {key: self._stored[key] for key in buckets if key in self._stored}


def measure(recommender: Recommender, options: RecommendOptions) -> dict[str, float]:
    started = time.perf_counter()
    recommender.recommendations("newcomer", options)
    first = (time.perf_counter() - started) * 1000
    samples = []
    for _ in range(CALLS):
        started = time.perf_counter()
        recommender.recommendations("newcomer", options)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "first_ms": round(first, 3),
        "median_ms": round(statistics.median(samples), 4),
        "p90_ms": round(samples[int(0.9 * CALLS)], 4),
    }


def main() -> None:
    rng = random.Random(1)
    window = TrendingWindow(24, 6.0)
    for size in SIZES:
        model = FixedScoresModel(size)
        model.trending = tuple(  # type: ignore[assignment]
            (index, float(MODEL_TRENDING + 1 - index)) for index in range(1, MODEL_TRENDING + 1)
        )
        catalog = FixedCatalog(snapshot(size))
        stored = {
            bucket_key("_all", hour): {
                f"item-{rng.randrange(1, size)}": float(rng.randint(1, 40)) for _ in range(BUCKET_ITEMS)
            }
            for hour in window.hours(NOW)
        }
        for contender in ("model list only (before)", "live trending first"):
            live = LiveTrending(Buckets(stored), catalog, window, clock=lambda: NOW)
            recommender = Recommender(
                InMemoryStateRepository(),
                StaticModelSource(model),
                catalog,
                trending=live if contender == "live trending first" else None,
            )
            for label, rules in (("no rules", None), ("typical rules", typical_rules(size, rng))):
                result = measure(recommender, RecommendOptions(k=10, rules=rules))
                print(json.dumps({"items": size, "contender": contender, "rules": label, **result}))


if __name__ == "__main__":
    main()
