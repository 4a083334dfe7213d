"""Bought together, computed at retrain from the co-purchases in the event log (issue 12).

An order is one shopper's purchases grouped by the one order rule (`history.starts_new_order`: a
purchase more than 10 minutes after the last starts a new order). For every pair of items bought in
one order, c(i, j) counts the orders holding both; n(j) counts the orders holding j. Item i's partner j
scores

    score(i -> j) = (c(i, j) + prior * n(j) / N) / (n(j) + shrink) ** beta      (N = the sum of all n)

over the pairs with c(i, j) >= min_support, plus, for every item bought at least once, the most bought
items as candidates with c(i, j) = 0. With beta = 0 and prior = 0 this is plain co-occurrence counting
(the baseline); beta = 1 is lift (rare items win on one lucky co-purchase), `shrink` and `min_support`
hold the rare ones back; `prior` shrinks c(i, j) towards what popularity alone predicts (a Bayesian
estimate of P(j | i) with `prior` pseudo-orders): it breaks the many ties between pairs seen once and
fills the list of an item bought in few orders. The parameters were chosen on Instacart validation
baskets (bench/together.py, docs/bought-together.md); each item keeps its `TOP_PARTNERS` best.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from nextpick.domain.events import EventType
from nextpick.domain.history import starts_new_order
from nextpick.domain.together import TOP_PARTNERS, PartnerTable
from nextpick_training.event_log import LogRecord

# An order with more distinct items than this is left out: it costs its size squared in pairs and says
# little about what goes together (a restocking order, a test account). Instacart's largest order holds
# 89 distinct products, 99.9% of its orders hold at most 50.
MAX_ORDER_ITEMS = 100


@dataclass(frozen=True)
class PartnerScoring:
    """How partners are scored (module docstring). Defaults: the best of 64 on Instacart validation
    baskets (recall@10 0.1356 against 0.1292 for plain counts; docs/bought-together.md): counts with
    one pseudo-order of popularity. Lift-like scores (beta > 0) lost: the products bought with a
    product are mostly staples, which beta > 0 pushes down."""

    beta: float = 0.0
    shrink: float = 0.0
    min_support: int = 1
    prior: float = 1.0
    top_n: int = TOP_PARTNERS

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


# Plain co-occurrence counts: the baseline the chosen scoring is measured against.
COUNTS = PartnerScoring(beta=0.0, shrink=0.0, min_support=1, prior=0.0)


def split_orders(purchases: Iterable[tuple[float, int]]) -> list[list[int]]:
    """One shopper's time-ordered purchases (timestamp, item) as orders of distinct items, in order."""
    orders: list[list[int]] = []
    count, last = 0, 0.0
    for timestamp, item in purchases:
        if starts_new_order(count, last, timestamp):
            count += 1
            orders.append([])
        last = max(last, timestamp)
        if item not in orders[-1]:
            orders[-1].append(item)
    return orders


def purchase_orders(records: Iterable[LogRecord], index: dict[str, int]) -> list[list[int]]:
    """Every shopper's orders in the log, as vocabulary indices (items outside `index` are dropped)."""
    by_user: dict[str, list[LogRecord]] = {}
    for record in records:
        if record.event_type is EventType.PURCHASE and record.item_id in index:
            by_user.setdefault(record.user_id, []).append(record)
    orders: list[list[int]] = []
    for user_records in by_user.values():
        user_records.sort(key=lambda r: r.order_key)
        orders += split_orders((r.timestamp.timestamp(), index[r.item_id]) for r in user_records)
    return orders


def co_purchases(
    orders: Sequence[Sequence[int]], num_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pairs i, pairs j, c(i, j)) over both directions of every co-purchased pair, and n per item is
    `order_counts`. Orders of one item or more than MAX_ORDER_ITEMS give no pairs."""
    chunks: list[np.ndarray] = []
    for order in orders:
        m = len(order)
        if m < 2 or m > MAX_ORDER_ITEMS:
            continue
        items = np.asarray(order, dtype=np.int64)
        a, b = np.triu_indices(m, 1)
        chunks.append(items[a] * num_items + items[b])
        chunks.append(items[b] * num_items + items[a])
    if not chunks:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    codes, counts = np.unique(np.concatenate(chunks), return_counts=True)
    return codes // num_items, codes % num_items, counts


def order_counts(orders: Sequence[Sequence[int]], num_items: int) -> np.ndarray:
    counts = np.zeros(num_items, np.int64)
    for order in orders:
        counts[np.asarray(order, dtype=np.int64)] += 1
    return counts


def partner_table(orders: Sequence[Sequence[int]], num_items: int, scoring: PartnerScoring) -> PartnerTable:
    """Each item's `scoring.top_n` best partners (module docstring), ties by vocabulary index."""
    return rank_partners(co_purchases(orders, num_items), order_counts(orders, num_items), scoring)


def rank_partners(
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray], n: np.ndarray, scoring: PartnerScoring
) -> PartnerTable:
    """`partner_table` from counted pairs (`co_purchases`) and order counts (`order_counts`): the
    benchmark scores many `scoring`s on one count."""
    num_items = len(n)
    first, second, together = pairs
    keep = together >= scoring.min_support
    first, second, together = first[keep], second[keep], together[keep]
    if scoring.prior > 0:
        first, second, together = _with_popular(first, second, together, n, scoring.top_n)
    slots = max(int(n.sum()), 1)
    scores = (together + scoring.prior * n[second] / slots) / (n[second] + scoring.shrink) ** scoring.beta
    # Best first within each item: by item, then score descending, then partner index.
    order = np.lexsort((second, -scores, first))
    first, second, scores = first[order], second[order], scores[order]
    starts = np.searchsorted(first, first, side="left")
    rank = np.arange(len(first)) - starts
    top = rank < scoring.top_n
    partners = np.zeros((num_items, scoring.top_n), np.int32)
    values = np.zeros((num_items, scoring.top_n), np.float32)
    partners[first[top], rank[top]] = second[top]
    values[first[top], rank[top]] = scores[top]
    return PartnerTable(partners, values)


def _with_popular(
    first: np.ndarray, second: np.ndarray, together: np.ndarray, n: np.ndarray, top_n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pairs plus (i, j, 0) for every bought item i and the `top_n + 1` most bought j != i that are
    not a pair of i yet: the candidates `prior` can rank when i has few partners."""
    num_items = len(n)
    bought = np.flatnonzero(n > 0)
    popular = bought[np.lexsort((bought, -n[bought]))][: top_n + 1]
    i = np.repeat(bought, len(popular))
    j = np.tile(popular, len(bought))
    fresh = (i != j) & ~np.isin(i * num_items + j, first * num_items + second)
    return (
        np.concatenate([first, i[fresh]]),
        np.concatenate([second, j[fresh]]),
        np.concatenate([together, np.zeros(int(fresh.sum()), together.dtype)]),
    )
