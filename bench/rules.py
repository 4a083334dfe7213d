"""`python -m bench.rules`: what the business rules add to a request (docs/rules.md, "Cost").

The model is replaced by fixed random scores (its `rank` costs the same with and without rules, and is
measured in docs/benchmarks.md §2), so the difference between the contenders is the rules' own work:
planning the rule set against the cached columns, the eligibility mask, promotions, the diversity cap and
the merge, against the plain top-K. Contenders are timed call by call in turn (`bench.common.interleaved`),
so the noise of a shared machine hits them alike. Also measured: the once-per-(model, snapshot) costs
(columns and a filter's first compilation) and the snapshot's memory with price and attributes."""

from __future__ import annotations

import argparse
import itertools
import random
import statistics
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bench.common import Latency, fmt, interleaved, items_label, table
from bench.workload import CATEGORIES, is_in_stock
from nextpick.domain.catalog import CatalogSnapshot, SnapshotBuilder
from nextpick.domain.ports import WithoutOptionalParts
from nextpick.domain.ranking import CandidateMasks, plain_top_k, top_k
from nextpick.domain.rules import Promotion, RuleSet, apply_rules, plan_rules

K = 10
BRANDS = 50
COLORS = ("red", "blue", "green", "black", "white")
TYPICAL_FILTER = 'price >= 10 and price < 150 and brand not in ("brand-3", "brand-7")'


class FixedScoresModel(WithoutOptionalParts):
    """Random scores in place of the model: `rank` costs one pass over the vector, as a copy would."""

    def __init__(self, num_items: int, seed: int = 0) -> None:
        self.items: tuple[str | None, ...] = (None, *(f"item-{i}" for i in range(1, num_items)))
        self._index = {item: index for index, item in enumerate(self.items) if item is not None}
        self._scores = np.random.default_rng(seed).normal(size=num_items).astype(np.float32)
        self.version, self.trending, self.history_slots, self.state_dim = "bench", (), 0, 2

    def item_index(self, item_id: str) -> int:
        return self._index.get(item_id, 0)

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray:
        return state

    def rank(self, state: np.ndarray, exclude: np.ndarray, *history: Any) -> np.ndarray:
        return np.where(exclude > 0.5, np.float32(-1e10), self._scores)


def snapshot(num_items: int, for_rules: bool = True, seed: int = 0) -> CatalogSnapshot:
    """The workload's catalog (20 categories, 5 % out of stock, prices 1-200) plus a brand and a color;
    without `for_rules`, only what the snapshot held before the rules (stock and category)."""
    rng = random.Random(seed)
    builder = SnapshotBuilder()
    for index in range(1, num_items):
        builder.add(
            f"item-{index}",
            f"category-{index % CATEGORIES}",
            round(rng.uniform(1, 200), 2) if for_rules else None,
            rng.randint(1, 100) if is_in_stock(index) else 0,
            {"brand": f"brand-{rng.randrange(BRANDS)}", "color": rng.choice(COLORS)} if for_rules else None,
        )
    return builder.build(1)


def typical_rules(num_items: int, rng: random.Random) -> RuleSet:
    """Filter + diversity + a promotion of 50 items for 2 slots + a 3-item cart."""
    promoted = tuple(f"item-{rng.randrange(1, num_items)}" for _ in range(50))
    return RuleSet(
        filter=TYPICAL_FILTER,
        max_per_category=3,
        promotions=(Promotion(name="spring", slots=2, items=promoted),),
        exclude_items=tuple(f"item-{rng.randrange(1, num_items)}" for _ in range(3)),
    )


def _once(build: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        build()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def _snapshot_mib(num_items: int, for_rules: bool) -> float:
    tracemalloc.start()
    built = snapshot(num_items, for_rules)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del built
    return size / 2**20


def first_use(model: FixedScoresModel, catalog: CatalogSnapshot, repeats: int) -> dict[str, float]:
    """What the first request after a model or catalog change pays (ms, median of the repeats)."""
    first, compile_only = [], []
    for repeat in range(repeats):
        cold = CandidateMasks.build(model, catalog).columns
        started = time.perf_counter()
        cold.price  # noqa: B018 - the filter's columns, built on first use
        cold.attribute("brand")
        cold.category  # noqa: B018 - the diversity cap's column
        compiling = time.perf_counter()
        cold.filter_mask(f"{TYPICAL_FILTER} and price != {repeat + 0.25}")  # a text never seen before
        done = time.perf_counter()
        first.append((done - started) * 1000)
        compile_only.append((done - compiling) * 1000)
    return {
        "masks_ms": _once(lambda: CandidateMasks.build(model, catalog), repeats),
        "first_use_ms": statistics.median(first),
        "compile_ms": statistics.median(compile_only),
    }


def measure(num_items: int, calls: int, repeats: int) -> dict[str, Any]:
    model = FixedScoresModel(num_items)
    catalog = snapshot(num_items)
    rng = random.Random(1)
    rules = typical_rules(num_items, rng)
    category_page = RuleSet(max_per_category=2, filter="price < 100")
    purchased = tuple(f"item-{rng.randrange(1, num_items)}" for _ in range(5))
    vector = np.zeros(2, np.float32)
    masks = CandidateMasks.build(model, catalog)
    fresh = itertools.count()

    def run(rule_set: RuleSet | None, category: str | None = None) -> Callable[[], None]:
        def once() -> None:
            top_k(model, vector, masks, purchased, K, True, category, None, rule_set)

        return once

    typical_json = rules.model_dump_json()

    def from_json_each_call() -> None:
        # Rules sent with the request: validated from the body's JSON (the filter parse is cached).
        top_k(model, vector, masks, purchased, K, True, None, None, RuleSet.model_validate_json(typical_json))

    def new_filter_each_call() -> None:
        # A filter no cache has seen: validated (parsed) and compiled on the request path.
        text = f"{TYPICAL_FILTER} and price != {next(fresh) + 0.5}"
        rule_set = RuleSet.model_validate({**rules.model_dump(), "filter": text})
        top_k(model, vector, masks, purchased, K, True, None, None, rule_set)

    # The two ways from the model's scores to the answer, alone: what the rules replace, and the rules.
    exclude = masks.base.copy()
    exclude[[model.item_index(item) for item in purchased]] = 1.0
    scores = model.rank(vector, exclude)

    def plain_selection() -> None:
        plain_top_k(model, scores, exclude, K)

    def rules_selection() -> None:
        apply_rules(scores, exclude, plan_rules(rules, masks.columns), K)

    runs = {
        "plain_selection": plain_selection,
        "rules_selection": rules_selection,
        "plain": run(None),
        "typical": run(rules),
        "from_json": from_json_each_call,
        "new_filter": new_filter_each_call,
        "category_page": run(category_page, "category-4"),
        "category_page_plain": run(None, "category-4"),
    }
    for name in runs:  # warm-up: columns, the filter masks, first-call allocations
        runs[name]()
    latencies: dict[str, list[Latency]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, samples in interleaved(runs, calls).items():
            latencies[name].append(Latency.of_ns(samples))
    result: dict[str, Any] = {name: Latency.median_of(values) for name, values in latencies.items()}

    result.update(first_use(model, catalog, repeats))
    result["snapshot_mib"] = (_snapshot_mib(num_items, False), _snapshot_mib(num_items, True))
    return result


def report(sizes: Sequence[int], calls: int, repeats: int) -> str:
    rows, once = [], []
    for size in sizes:
        r = measure(size, calls, repeats)
        added = r["typical"].p50 - r["plain"].p50
        rows.append(
            [
                f"{items_label(size)} ({size:,})",
                f"{fmt(r['plain_selection'].p50)} / {fmt(r['plain_selection'].p95)}",
                f"{fmt(r['rules_selection'].p50)} / {fmt(r['rules_selection'].p95)}",
                f"{fmt(r['plain'].p50)} / {fmt(r['plain'].p95)}",
                f"{fmt(r['typical'].p50)} / {fmt(r['typical'].p95)}",
                f"**{fmt(added)}**",
                f"{fmt(r['from_json'].p50)} / {fmt(r['from_json'].p95)}",
                f"{fmt(r['new_filter'].p50)} / {fmt(r['new_filter'].p95)}",
                f"{fmt(r['category_page_plain'].p50)} → {fmt(r['category_page'].p50)}",
            ]
        )
        without, with_attributes = r["snapshot_mib"]
        once.append(
            [
                items_label(size),
                fmt(r["masks_ms"]),
                fmt(r["first_use_ms"]),
                fmt(r["compile_ms"]),
                f"{without:.1f} → {with_attributes:.1f}",
            ]
        )
    return "\n\n".join(
        [
            f"Per request, k = {K}, {calls} calls per contender in each of {repeats} repeat(s); cells are the "
            "medians over the repeats of p50 / p95, in ms (`top_k` from the model's scores to the answer's "
            "list, the model's `rank` replaced by fixed scores).",
            table(
                [
                    "items",
                    "selection alone: plain top-K",
                    "selection alone: plan + apply_rules",
                    "whole `top_k`: no rules",
                    "whole `top_k`: typical rule set",
                    "added by the rules (p50)",
                    "typical, validated from JSON every call",
                    "typical, a new filter every call",
                    "one category, cap 2 + filter: no rules → rules (p50)",
                ],
                rows,
            ),
            "Once per (model version, catalog snapshot), in ms (median of the repeats), and the snapshot's "
            "memory (tracemalloc):",
            table(
                [
                    "items",
                    "exclusion masks (as before)",
                    "columns + first filter (first request)",
                    "of which the filter's compilation",
                    "snapshot MiB: stock + category (before) → + price, brand, color",
                ],
                once,
            ),
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(report(args.sizes, args.calls, args.repeats))


if __name__ == "__main__":
    main()
