"""Recommendation quality: the served model against baselines on three tables.

    .venv/bin/python -m bench.quality                    # full run, writes docs/quality.md
    .venv/bin/python -m bench.quality --baselines-only   # no model training ("pending" rows)
    .venv/bin/python -m bench.quality --quick            # smoke run on a slice, writes nothing
                                                         # unless --out is given
    .venv/bin/python -m bench.quality --seeds 2          # + the served model's seed spread

Tables (docs/quality.md repeats the protocol next to the numbers):

1. MovieLens-100K, leave-last-out (next basket with baskets of one, seen items excluded).
2. Instacart sample, next basket: the whole last order is the target, repeats allowed, nothing
   excluded.
3. Item cold start on MovieLens-100K: 20% of the movies never appear in training, only their
   attributes; users whose target is one of them rank the held-out movies.

Every scorer's hyperparameters are chosen on validation (trained on everything before each user's
validation basket); the choice is refitted on everything before the test basket and scored once on
test. The served model goes through one hook, `bench.quality_model.fit_served_model`, and is scored
through its exported `.tflite` behind LiteRT.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.quality_report import render, summary
from nextpick.domain.state import TimedInteraction
from nextpick_training.baselines import (
    AttributePopularity,
    BuyAgain,
    ItemKNN,
    Popularity,
    RandomOrder,
    Transitions,
)
from nextpick_training.datasets import (
    DEFAULT_CACHE_DIR,
    BasketData,
    BasketTargets,
    held_out_items,
    load_instacart,
    load_movielens,
    next_basket_split,
    without_items,
)
from nextpick_training.evaluate import BasketMetrics, TimedScorer, evaluate_baskets, timed

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "quality.md"
K = 10
COLD_SHARE = 0.2
COLD_SEED = 0
QUICK_USERS = {"MovieLens-100K": 200, "Instacart sample": 100}

Train = list[list[TimedInteraction]]
# A baseline factory: (training sequences, parameters) -> a timed scorer.
Factory = Callable[[Train, dict[str, Any]], TimedScorer]


@dataclass
class Case:
    """One table's evaluation: training data and evaluated users for validation and for test."""

    title: str
    num_items: int
    item_attributes: dict[int, dict[str, str]]
    train_valid: Train
    valid: BasketTargets
    train_test: Train
    test: BasketTargets
    exclude_seen: bool
    # Extra item indices excluded per evaluated user (cold start: everything but the candidates).
    valid_exclude: list[np.ndarray] | None = None
    test_exclude: list[np.ndarray] | None = None

    def evaluate(self, scorer: TimedScorer, split: str) -> BasketMetrics:
        targets, extra = (
            (self.valid, self.valid_exclude) if split == "valid" else (self.test, self.test_exclude)
        )
        return evaluate_baskets(
            scorer,
            targets.histories,
            targets.nows,
            targets.targets,
            self.num_items,
            K,
            self.exclude_seen,
            extra,
        )


@dataclass
class Row:
    name: str
    params: dict[str, Any]
    valid: BasketMetrics | None = None
    test: BasketMetrics | None = None
    seconds: float = 0.0
    seed_runs: list[tuple[int, BasketMetrics]] = field(default_factory=list)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def tune(name: str, factory: Factory, grid: Sequence[dict[str, Any]], case: Case) -> Row:
    """Choose on validation NDCG@K (first best wins), refit on the test-time data, score test once."""
    best: Row | None = None
    for params in grid:
        metrics = case.evaluate(factory(case.train_valid, params), "valid")
        if best is None or best.valid is None or metrics.ndcg > best.valid.ndcg:
            best = Row(name, params, metrics)
    assert best is not None and best.valid is not None
    started = time.perf_counter()
    scorer = factory(case.train_test, best.params)
    best.seconds = time.perf_counter() - started
    best.test = test = case.evaluate(scorer, "test")
    log(f"{case.title} / {name} {best.params}: valid NDCG@{K} {best.valid.ndcg:.4f}, test {test.ndcg:.4f}")
    return best


def served_row(case: Case, args: argparse.Namespace) -> Row:
    """The served model through the hook: validation fit (may choose), test fit, seed spread."""
    from bench.quality_model import Validation, fit_served_model

    valid_cases = Validation(
        case.valid.histories,
        case.valid.nows,
        case.valid.targets,
        case.num_items,
        case.exclude_seen,
        case.valid_exclude,
        K,
    )
    fitted = fit_served_model(
        case.train_valid, case.num_items, case.item_attributes, valid_cases, args.seed, args.quick
    )
    valid = case.evaluate(fitted, "valid")
    # bench/training.py reads this line's format.
    log(
        f"served valid NDCG@{K} {valid.ndcg:.4f} HR@{K} {valid.hit_rate:.4f} ({fitted.training_seconds:.1f} s)"
    )
    row = Row("nextpick model (served TFLite)", fitted.hyperparameters, valid)
    for seed in range(args.seed, args.seed + 1 + args.seeds):
        final = fit_served_model(
            case.train_test,
            case.num_items,
            case.item_attributes,
            None,
            seed,
            args.quick,
            fitted.hyperparameters,
        )
        metrics = case.evaluate(final, "test")
        log(
            f"{case.title} / served seed {seed}: test NDCG@{K} {metrics.ndcg:.4f} HR@{K} {metrics.hit_rate:.4f}"
        )
        row.seed_runs.append((seed, metrics))
        if seed == args.seed:
            row.test, row.seconds = metrics, final.training_seconds
    return row


def _grid(full: list[dict[str, Any]], quick: bool) -> list[dict[str, Any]]:
    return full[:2] if quick else full


def _product(**axes: Sequence[Any]) -> list[dict[str, Any]]:
    grid: list[dict[str, Any]] = [{}]
    for name, values in axes.items():
        grid = [{**g, name: v} for g in grid for v in values]
    return grid


def common_baselines(
    case: Case, quick: bool, windows: Sequence[int], self_weights: Sequence[float]
) -> list[Row]:
    """Popularity (optionally time-decayed), item-kNN and transitions, each tuned on validation."""
    n = case.num_items
    neighbourhoods: dict[tuple[int, int | None], ItemKNN] = {}

    def knn(train: Train, p: dict[str, Any]) -> TimedScorer:
        # The similarity depends on the training data and `neighbours` only: build it once per split.
        key = (0 if train is case.train_valid else 1, p["neighbours"])
        if key not in neighbourhoods:
            pairs = next((m.pairs for (split, _n), m in neighbourhoods.items() if split == key[0]), None)
            neighbourhoods[key] = ItemKNN(train, n, neighbours=p["neighbours"], pairs=pairs)
        scoring = {name: value for name, value in p.items() if name != "neighbours"}
        return timed(neighbourhoods[key].rescored(**scoring))

    half_lives = [None, 7.0, 30.0, 90.0, 365.0]
    return [
        tune(
            "popularity",
            lambda t, p: timed(Popularity(t, n, **p)),
            _grid(_product(half_life_days=half_lives), quick),
            case,
        ),
        tune(
            "item-kNN",
            knn,
            _grid(
                _product(
                    window=windows,
                    decay=[0.5, 0.7, 0.9, 1.0],
                    neighbours=[100, None],
                    self_weight=self_weights,
                ),
                quick,
            ),
            case,
        ),
        tune(
            "transitions",
            lambda t, p: timed(Transitions(t, n, **p)),
            _grid(
                _product(
                    window=[1, 3, 5, 10, 20],
                    decay=[0.5, 0.7, 0.9],
                    alpha=[1.0, 5.0, 20.0],
                    skip_weight=[0.0, 0.5],
                ),
                quick,
            ),
            case,
        ),
    ]


def basket_case(data: BasketData, exclude_seen: bool) -> Case:
    split = next_basket_split(data)
    return Case(
        data.name,
        data.num_items,
        data.item_attributes,
        split.train_valid,
        split.valid,
        split.train_test,
        split.test,
        exclude_seen,
    )


def cold_start_case(data: BasketData) -> tuple[Case, int]:
    """Hold out COLD_SHARE of the items (seeded hash) from training entirely; evaluate the users whose
    target is a held-out item, ranking only held-out items (everything else is excluded), with their
    histories stripped of held-out items. Their already-rated items stay excluded."""
    held = held_out_items(data.num_items, data.items, COLD_SHARE, COLD_SEED)
    split = next_basket_split(data)
    not_candidates = np.flatnonzero(~held)

    def restrict(targets: BasketTargets) -> tuple[BasketTargets, list[np.ndarray]]:
        keep = [j for j, t in enumerate(targets.targets) if held[t].any()]
        histories = [targets.histories[j] for j in keep]
        exclude = [np.union1d(not_candidates, [e[0] for e in h]).astype(np.int64) for h in histories]
        cold = BasketTargets(
            [targets.users[j] for j in keep],
            without_items(histories, held),
            [targets.nows[j] for j in keep],
            [targets.targets[j][held[targets.targets[j]]] for j in keep],
        )
        return cold, exclude

    valid, valid_exclude = restrict(split.valid)
    test, test_exclude = restrict(split.test)
    case = Case(
        "MovieLens-100K item cold start",
        data.num_items,
        data.item_attributes,
        without_items(split.train_valid, held),
        valid,
        without_items(split.train_test, held),
        test,
        False,
        valid_exclude,
        test_exclude,
    )
    return case, int(held.sum())


def cold_start_baselines(case: Case, quick: bool) -> list[Row]:
    n, attrs = case.num_items, case.item_attributes
    attribute_grid = _product(
        attributes=[("genre",), ("decade",), ("genre", "decade")],
        aggregate=["mean", "max"],
        normalise=["events", "per_item"],
    )

    def attribute_popularity(train: Train, p: dict[str, Any]) -> TimedScorer:
        return timed(AttributePopularity(train, n, attrs, **p))

    return [
        tune("attribute popularity", attribute_popularity, _grid(attribute_grid, quick), case),
        tune(
            "attribute affinity (the user's own genres/decades, mixed with popularity)",
            attribute_popularity,
            _grid([{**g, "personal": w} for g in attribute_grid for w in (0.25, 0.5, 0.75, 1.0)], quick),
            case,
        ),
        tune("random", lambda t, p: timed(RandomOrder(n)), [{}], case),
    ]


def run_tables(args: argparse.Namespace) -> list[tuple[Case, list[Row], Mapping[str, Any]]]:
    tables: list[tuple[Case, list[Row], Mapping[str, Any]]] = []
    wanted = set(args.tables)
    movielens = load_movielens(args.cache_dir) if wanted & {"movielens", "coldstart"} else None
    if movielens is not None and args.quick:
        movielens = movielens.sliced(QUICK_USERS[movielens.name])
    if movielens is not None and "movielens" in wanted:
        case = basket_case(movielens, exclude_seen=True)
        rows = common_baselines(case, args.quick, windows=[3, 5, 10, 20, 50], self_weights=[0.0])
        tables.append((case, rows, {"kind": "movielens", "data": movielens}))
    if "instacart" in wanted:
        instacart = load_instacart(args.cache_dir)
        if args.quick:
            instacart = instacart.sliced(QUICK_USERS[instacart.name])
        case = basket_case(instacart, exclude_seen=False)
        rows = common_baselines(
            case, args.quick, windows=[10, 20, 50, 100, 250], self_weights=[0.0, 1.0, 3.0]
        )
        buy_again = _grid(
            _product(half_life_days=[None, 3.0, 7.0, 14.0, 30.0, 60.0, 90.0, 180.0, 365.0]), args.quick
        )
        n = case.num_items
        rows.insert(1, tune("buy again", lambda t, p: BuyAgain(t, n, **p), buy_again, case))
        tables.append((case, rows, {"kind": "instacart", "data": instacart}))
    if movielens is not None and "coldstart" in wanted:
        case, held = cold_start_case(movielens)
        tables.append(
            (
                case,
                cold_start_baselines(case, args.quick),
                {"kind": "coldstart", "data": movielens, "held_out": held},
            )
        )
    if not args.baselines_only:
        for case, rows, _info in tables:
            log(f"{case.title}: training the served model")
            rows.insert(0, served_row(case, args))
    return tables


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run on a slice of users, tiny grids and model"
    )
    parser.add_argument(
        "--baselines-only", action="store_true", help="skip the served model (rows say pending)"
    )
    parser.add_argument(
        "--tables",
        nargs="+",
        choices=["movielens", "instacart", "coldstart"],
        default=["movielens", "instacart", "coldstart"],
    )
    parser.add_argument("--seed", type=int, default=0, help="the served model's seed")
    parser.add_argument(
        "--seeds", type=int, default=0, help="retrain the served model's test fit with this many more seeds"
    )
    parser.add_argument("--out", type=Path, default=None, help=f"report path (default {DEFAULT_OUT})")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    tables = run_tables(args)
    print(summary(tables, K))
    out = args.out or (None if args.quick else DEFAULT_OUT)
    if out is not None:
        out.write_text(render(tables, args, time.perf_counter() - started, K))
        log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
