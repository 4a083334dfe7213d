"""Bought together and cart completion on the Instacart sample (issue 12; docs/bought-together.md).

    .venv/bin/python -m bench.together [--quick]

Split: `next_basket_split` (each shopper's last basket is test, the one before validation). Orders
for the table are the training events' purchases grouped by the serving order rule
(`nextpick_training.together.split_orders`), as the retrain groups the event log.

1. Bought together: for every held-out basket of two or more products and every product q in it, the
   top 10 partners of q against the basket's other products: hit rate (any of them in the list) and
   recall@10 (share of them in the list), averaged over q, then over baskets. Every
   `PartnerScoring` of a small grid is scored on validation; the best (recall@10) and plain counts are
   then scored on test, with 95% bootstrap intervals over baskets (1,000 resamples) and the paired
   difference.
2. Cart completion: each held-out basket in add-to-cart order; the first half (rounded up) is the cart,
   folded as add_to_cart events at the basket's time after the shopper's history; the other products
   are the target. Scores: the served model alone (the exported TFLite through LiteRT, trained as in
   docs/quality.md: 7 epochs), bought together alone (`PartnerTable.distribution`), and
   `together.blend` with weights 0 .. 0.9, chosen on validation, for shoppers with their history and
   for anonymous carts (the cart alone) separately; cart items are excluded, nothing
   else (repeats allowed, as docs/quality.md's Instacart protocol). The trained models are cached in
   ~/.cache/nextpick/bench.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nextpick.domain.events import EventType
from nextpick.domain.state import TimedInteraction
from nextpick.domain.together import PartnerTable, blend
from nextpick_training.datasets import DEFAULT_CACHE_DIR, BasketData, load_instacart, next_basket_split
from nextpick_training.export import ExportedModel, export_tflite
from nextpick_training.model import Hyperparameters, train
from nextpick_training.scoring import ServedScorer
from nextpick_training.together import (
    COUNTS,
    PartnerScoring,
    co_purchases,
    order_counts,
    rank_partners,
    split_orders,
)

K = 10
PURCHASE, ADD_TO_CART = EventType.PURCHASE.code, EventType.ADD_TO_CART.code
GRID = [
    PartnerScoring(beta=beta, shrink=shrink, min_support=support, prior=prior)
    for beta in (0.0, 0.25, 0.5, 1.0)
    for shrink in (0.0, 20.0)
    for support in (1, 2)
    for prior in (0.0, 1.0, 10.0, 100.0)
]
WEIGHTS = [0.0, 0.02, 0.05, *(round(0.1 * w, 1) for w in range(1, 10))]
# The model of docs/quality.md's Instacart table (7 epochs chosen there on validation).
MODEL: dict[str, Any] = {"exclude_seen": False, "epochs": 7}
QUICK_MODEL: dict[str, Any] = {
    "exclude_seen": False,
    "epochs": 1,
    "embedding_dim": 32,
    "hidden_dim": 64,
    "negatives": 256,
}


def orders_of(sequences: Sequence[Sequence[TimedInteraction]]) -> list[list[int]]:
    orders: list[list[int]] = []
    for events in sequences:
        orders += split_orders((ts, item) for item, kind, _s, ts in events if kind == PURCHASE)
    return orders


def held_out_baskets(data: BasketData, position: int, users: Sequence[int]) -> list[tuple[int, list[int]]]:
    """(user, the basket's distinct products in add-to-cart order) of basket `position` (-2 valid)."""
    out = []
    for user in users:
        basket = data.baskets(user)[position]
        out.append((user, list(dict.fromkeys(e[0] for e in basket))))
    return out


def bootstrap(values: np.ndarray, seed: int = 0, resamples: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def with_ci(values: np.ndarray) -> str:
    low, high = bootstrap(values)
    return f"{values.mean():.4f} [{low:.4f}, {high:.4f}]"


# --- 1. bought together -----------------------------------------------------------------------------


def partner_metrics(
    table: PartnerTable, baskets: Sequence[tuple[int, list[int]]]
) -> tuple[np.ndarray, np.ndarray]:
    """Per basket (of 2+ products): mean over its products q of hit@10 and recall@10 of q's partners."""
    hits, recalls = [], []
    for _user, basket in baskets:
        if len(basket) < 2:
            continue
        h, r = [], []
        for q in basket:
            listed = set(table.of(q)[0][:K].tolist())
            rest = [i for i in basket if i != q]
            found = sum(1 for i in rest if i in listed)
            h.append(1.0 if found else 0.0)
            r.append(found / len(rest))
        hits.append(np.mean(h))
        recalls.append(np.mean(r))
    return np.array(hits), np.array(recalls)


def choose_scoring(
    train_orders: list[list[int]], num_items: int, valid: Sequence[tuple[int, list[int]]]
) -> tuple[PartnerScoring, list[tuple[PartnerScoring, float]]]:
    pairs, n = co_purchases(train_orders, num_items), order_counts(train_orders, num_items)
    scored = [(s, float(partner_metrics(rank_partners(pairs, n, s), valid)[1].mean())) for s in GRID]
    best = max(scored, key=lambda pair: pair[1])[0]
    return best, scored


# --- 2. cart completion ----------------------------------------------------------------------------


@dataclasses.dataclass
class CartCase:
    history: list[TimedInteraction]
    now: float
    cart: list[int]
    target: list[int]


def cart_cases(
    data: BasketData, baskets: Sequence[tuple[int, list[int]]], position: int, anonymous: bool = False
) -> list[CartCase]:
    cases = []
    for user, basket in baskets:
        if len(basket) < 2:
            continue
        half = math.ceil(len(basket) / 2)
        start = data.basket_ends[user][position - 1]
        now = float(data.baskets(user)[position][0][3])
        history = [] if anonymous else list(data.events[user][:start])
        cases.append(CartCase(history, now, basket[:half], basket[half:]))
    return cases


def fit_model(
    sequences: Sequence[Sequence[TimedInteraction]], num_items: int, quick: bool, tag: str
) -> ExportedModel:
    hp_values = QUICK_MODEL if quick else MODEL
    key = hashlib.sha256(json.dumps(hp_values, sort_keys=True).encode()).hexdigest()[:10]
    cache = Path(DEFAULT_CACHE_DIR).expanduser() / "bench" / f"together-{tag}-{key}.tflite"
    if cache.exists() and not quick:
        return ExportedModel(cache.read_bytes())
    hp = dataclasses.replace(Hyperparameters(), **hp_values, seed=0)
    blob = export_tflite(train(sequences, num_items, hp))
    if not quick:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(blob)
    return ExportedModel(blob)


def cart_scores(
    model: ExportedModel, table: PartnerTable, cases: Sequence[CartCase]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per case: (model scores, exclude, partner distribution)."""
    scorer = ServedScorer(model)
    out = []
    for case in cases:
        exclude = np.zeros(model.num_items, np.float32)
        exclude[0] = 1.0
        exclude[case.cart] = 1.0
        history = [*case.history, *((i, ADD_TO_CART, 1.0, case.now) for i in case.cart)]
        scores = np.asarray(scorer(history, case.now, exclude), np.float32)
        out.append((scores, exclude, table.distribution(case.cart, model.num_items)))
    return out


def ranked_metrics(
    cases: Sequence[CartCase],
    scored: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    combine: Callable[..., np.ndarray],
) -> dict[str, np.ndarray]:
    hits, recalls, ndcgs = [], [], []
    for case, (scores, exclude, partners) in zip(cases, scored, strict=True):
        final = combine(scores, exclude, partners).astype(np.float64)
        final[exclude > 0] = -np.inf
        # ties (bought together alone: most items have no mass) broken by the model's scores
        top = np.lexsort((-scores, -final))[:K]
        target = set(case.target)
        gains = [1.0 if int(i) in target else 0.0 for i in top]
        ideal = sum(1.0 / math.log2(r + 2) for r in range(min(K, len(target))))
        hits.append(1.0 if any(gains) else 0.0)
        recalls.append(sum(gains) / len(target))
        ndcgs.append(sum(g / math.log2(r + 2) for r, g in enumerate(gains)) / ideal)
    return {"hr": np.array(hits), "recall": np.array(recalls), "ndcg": np.array(ndcgs)}


def cart_report(valid: tuple[list[CartCase], Any], test: tuple[list[CartCase], Any]) -> dict[str, Any]:
    by_weight = {w: float(ranked_metrics(*valid, _blended(w))["ndcg"].mean()) for w in WEIGHTS}
    weight = max(by_weight, key=lambda w: (by_weight[w], -w))
    blended = f"blend w={weight}"
    rows = {
        "model alone": ranked_metrics(*test, _model_alone),
        "bought together alone": ranked_metrics(*test, _together_alone),
        blended: ranked_metrics(*test, _blended(weight)),
    }
    return {
        "valid_ndcg_by_weight": {str(w): round(v, 4) for w, v in by_weight.items()},
        "chosen_weight": weight,
        "test_cases": len(test[0]),
        "test": {name: {m: with_ci(v) for m, v in metrics.items()} for name, metrics in rows.items()},
        "blend_minus_model_ndcg": with_ci(rows[blended]["ndcg"] - rows["model alone"]["ndcg"]),
        "blend_minus_together_ndcg": with_ci(rows[blended]["ndcg"] - rows["bought together alone"]["ndcg"]),
    }


def _model_alone(scores: np.ndarray, exclude: np.ndarray, partners: np.ndarray) -> np.ndarray:
    return scores


def _together_alone(scores: np.ndarray, exclude: np.ndarray, partners: np.ndarray) -> np.ndarray:
    return partners


def _blended(weight: float) -> Callable[..., np.ndarray]:
    return lambda scores, exclude, partners: blend(scores, exclude, partners, weight)


# --- the run ------------------------------------------------------------------------------------------


def run(quick: bool) -> dict[str, Any]:
    started = time.perf_counter()
    data = load_instacart()
    if quick:
        data = data.sliced(100)
    split = next_basket_split(data)
    valid = held_out_baskets(data, -2, split.valid.users)
    test = held_out_baskets(data, -1, split.test.users)
    valid_orders, test_orders = orders_of(split.train_valid), orders_of(split.train_test)
    best, grid = choose_scoring(valid_orders, data.num_items, valid)
    pairs, n = co_purchases(test_orders, data.num_items), order_counts(test_orders, data.num_items)
    tables = {"counts": rank_partners(pairs, n, COUNTS), "chosen": rank_partners(pairs, n, best)}
    partner_rows = {name: partner_metrics(table, test) for name, table in tables.items()}
    paired = partner_rows["chosen"][1] - partner_rows["counts"][1]
    report: dict[str, Any] = {
        "users": len(data.users),
        "items": data.num_items - 1,
        "valid_baskets": sum(1 for _, b in valid if len(b) >= 2),
        "test_baskets": sum(1 for _, b in test if len(b) >= 2),
        "train_orders": len(test_orders),
        "chosen": best.as_dict(),
        "grid_top5": sorted(((s.as_dict(), round(v, 4)) for s, v in grid), key=lambda p: -p[1])[:5],
        "counts_valid_recall": round(dict(grid)[COUNTS], 4),
        "bought_together": {
            name: {"hr@10": with_ci(h), "recall@10": with_ci(r)} for name, (h, r) in partner_rows.items()
        },
        "chosen_minus_counts_recall": with_ci(paired),
    }
    # 2. cart completion: the blend weight on validation, then test; for shoppers with their history
    # and for anonymous carts (the cart alone), each its own weight
    valid_model = fit_model(split.train_valid, data.num_items, quick, "valid")
    test_model = fit_model(split.train_test, data.num_items, quick, "test")
    valid_table = rank_partners(
        co_purchases(valid_orders, data.num_items), order_counts(valid_orders, data.num_items), best
    )
    report["cart"] = {}
    for kind in ("shopper", "anonymous"):
        valid_cases = cart_cases(data, valid, -2, anonymous=kind == "anonymous")
        test_cases = cart_cases(data, test, -1, anonymous=kind == "anonymous")
        report["cart"][kind] = cart_report(
            (valid_cases, cart_scores(valid_model, valid_table, valid_cases)),
            (test_cases, cart_scores(test_model, tables["chosen"], test_cases)),
        )
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 shoppers, a one-epoch model: plumbing only")
    args = parser.parse_args()
    print(json.dumps(run(args.quick), indent=2))


if __name__ == "__main__":
    main()
