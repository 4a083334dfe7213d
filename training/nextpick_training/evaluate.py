"""Offline evaluation: full-catalog ranking metrics, single-item (leave-last-out) and next-basket.

Two scorer shapes, both called like serving calls the model, for the whole catalog, where ``exclude``
is the contract's float mask (1.0 = must not be recommended; index 0 always):

- :class:`Scorer` ``(history, exclude) -> scores``: untimed events, used by :func:`evaluate`
  (leave-last-out, one target item; the retrain gate and the v1 tests).
- :class:`TimedScorer` ``(history, now, exclude) -> scores``: timed events and the moment the list
  is shown, used by :func:`evaluate_baskets` (a whole target basket). :func:`timed` adapts a
  :class:`Scorer` (the v1 served model ignores time).

For the served model the scorer is `nextpick_training.scoring.ServedScorer`: the history folded
through the exported ``update`` from zeros, the item history built as serving builds it, and the
exported ``rank``, so there is no train/serve skew in what we measure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from nextpick.domain.state import Interaction, TimedInteraction

EXCLUDED_THRESHOLD = -1e9


class Scorer(Protocol):
    def __call__(self, history: Sequence[Interaction], exclude: np.ndarray) -> np.ndarray: ...


class TimedScorer(Protocol):
    def __call__(
        self, history: Sequence[TimedInteraction], now: float, exclude: np.ndarray
    ) -> np.ndarray: ...


def timed(scorer: Scorer) -> TimedScorer:
    """A time-agnostic scorer (the v1 served model, the untimed baselines) in the timed harness:
    timestamps and `now` are dropped, the rest is passed through unchanged."""

    def call(history: Sequence[TimedInteraction], now: float, exclude: np.ndarray) -> np.ndarray:
        return scorer([(e[0], e[1], e[2]) for e in history], exclude)

    return call


@dataclass(frozen=True)
class Metrics:
    k: int
    users: int
    hit_rate: float  # HR@k: share of users whose held-out item is in their top k
    ndcg: float  # NDCG@k with one relevant item: 1/log2(rank+1) if rank <= k
    mrr: float  # MRR@k: 1/rank if rank <= k
    coverage: float  # share of recommendable catalog items appearing in any top-k list
    # Each evaluated user's NDCG@k, in input order: what a paired comparison of two models needs.
    ndcg_per_user: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items() if k != "ndcg_per_user"}


def leave_last_out(
    sequences: Sequence[Sequence[Interaction]],
) -> tuple[list[list[Interaction]], list[Interaction | None]]:
    """Split each time-ordered sequence into (everything but the last event, the last event).

    Sequences with fewer than two events keep everything for training and hold nothing out (None).
    """
    train: list[list[Interaction]] = []
    held_out: list[Interaction | None] = []
    for seq in sequences:
        if len(seq) >= 2:
            train.append(list(seq[:-1]))
            held_out.append(seq[-1])
        else:
            train.append(list(seq))
            held_out.append(None)
    return train, held_out


def validation_test_split(
    sequences: Sequence[Sequence[Interaction]],
) -> tuple[
    list[list[Interaction]], list[Interaction | None], list[list[Interaction]], list[Interaction | None]
]:
    """(train for validation, validation item, train for test, test item).

    Test = last event, validation = last-but-one; the test model may train on everything before the
    test event (that is, train-for-validation plus the validation event).
    """
    train_test, test = leave_last_out(sequences)
    train_valid, valid = leave_last_out(train_test)
    return train_valid, valid, train_test, test


def _expected_hit_ndcg_mrr(greater: int, ties: int, k: int) -> tuple[float, float, float]:
    """Metrics of one user, averaged over random tie-breaking.

    With ``greater`` items scoring strictly higher and ``ties`` other items scoring the same, the
    target's position is uniform on greater+1 .. greater+ties+1. Averaging makes a constant scorer
    score like random guessing instead of "first index wins".
    """
    first, last = greater + 1, greater + ties + 1
    count = last - first + 1
    hit = ndcg = mrr = 0.0
    for position in range(first, min(last, k) + 1):
        hit += 1.0
        ndcg += 1.0 / math.log2(position + 1)
        mrr += 1.0 / position
    return hit / count, ndcg / count, mrr / count


def evaluate(
    scorer: Scorer,
    histories: Sequence[Sequence[Interaction]],
    targets: Sequence[Interaction | int | None],
    num_items: int,
    k: int = 10,
    exclude_seen: bool = True,
) -> Metrics:
    """Full-catalog ranking metrics of ``scorer`` on (history -> next item) cases.

    ``targets[u]`` is the held-out item (an index or an Interaction; None = skip the user). Index 0
    is always excluded; with ``exclude_seen`` so is every item in the user's history. Items scoring
    ``<= -1e9`` count as excluded, as in serving.
    """
    hits = ndcgs = mrrs = 0.0
    users = 0
    per_user: list[float] = []
    recommended = np.zeros(num_items, dtype=bool)
    for history, target in zip(histories, targets, strict=True):
        if target is None:
            continue
        target_item = int(target[0]) if isinstance(target, tuple) else int(target)
        exclude = np.zeros(num_items, dtype=np.float32)
        exclude[0] = 1.0
        if exclude_seen:
            seen = [item for item, _e, _s in history if 0 < item < num_items]
            exclude[seen] = 1.0
        scores = np.asarray(scorer(history, exclude), dtype=np.float64)
        allowed = (exclude < 0.5) & (scores > EXCLUDED_THRESHOLD)
        users += 1
        ndcg = 0.0
        if allowed[target_item]:
            target_score = scores[target_item]
            greater = int(np.count_nonzero(allowed & (scores > target_score)))
            ties = int(np.count_nonzero(allowed & (scores == target_score))) - 1
            hit, ndcg, mrr = _expected_hit_ndcg_mrr(greater, ties, k)
            hits, ndcgs, mrrs = hits + hit, ndcgs + ndcg, mrrs + mrr
        per_user.append(ndcg)
        # Coverage uses the list serving would show: top k, ties broken by lower index (stable sort).
        candidates = np.flatnonzero(allowed)
        order = np.argsort(-scores[candidates], kind="stable")[:k]
        recommended[candidates[order]] = True
    n = max(users, 1)
    return Metrics(
        k=k,
        users=users,
        hit_rate=hits / n,
        ndcg=ndcgs / n,
        mrr=mrrs / n,
        coverage=float(recommended[1:].sum()) / max(num_items - 1, 1),
        ndcg_per_user=tuple(per_user),
    )


# --- Next-basket (multi-target) metrics ----------------------------------------------------------


@dataclass(frozen=True)
class BasketMetrics:
    """Means over evaluated users, and each user's value in input order (for paired comparisons and
    bootstrap intervals). Every value is an expectation over random tie-breaking."""

    k: int
    users: int
    ndcg: float  # binary gains over the target basket's distinct items, IDCG over min(|basket|, k)
    recall: float  # share of the target basket's distinct items in the top k
    hit_rate: float  # at least one target item in the top k
    ndcg_per_user: np.ndarray = field(repr=False, compare=False)
    recall_per_user: np.ndarray = field(repr=False, compare=False)
    hit_per_user: np.ndarray = field(repr=False, compare=False)

    def per_user(self, metric: str) -> np.ndarray:
        return {"ndcg": self.ndcg_per_user, "recall": self.recall_per_user, "hr": self.hit_per_user}[metric]


def _discount_prefix(n: int) -> np.ndarray:
    """prefix[p] = sum of 1/log2(q + 1) for q = 1..p."""
    return np.concatenate([[0.0], np.cumsum(1.0 / np.log2(np.arange(2, n + 2)))])


def basket_metrics_of_scores(
    scores: np.ndarray, allowed: np.ndarray, targets: np.ndarray, k: int
) -> tuple[float, float, float]:
    """(NDCG@k, Recall@k, HR@k) of one user, expected over random tie-breaking.

    A target tied with t - 1 other allowed items, below `greater` strictly better ones, sits
    uniformly at greater+1 .. greater+t whatever the other targets do, so its expected gain and
    hit are exact and add up over targets (linearity). HR is not additive: with no target surely in
    the top k, the tie group straddling the cut-off (g items, s of them inside the top k, j targets)
    misses all targets with probability C(g - j, s) / C(g, s).
    """
    targets = np.unique(np.asarray(targets, dtype=np.int64))
    if targets.size == 0:
        return 0.0, 0.0, 0.0
    ranked = np.sort(scores[allowed])[::-1]  # descending
    n = ranked.size
    ascending = ranked[::-1]
    prefix = _discount_prefix(k)
    gain = hits = 0.0
    target_scores = [float(scores[t]) for t in targets if allowed[t]]
    for score in target_scores:
        greater = n - int(np.searchsorted(ascending, score, side="right"))
        ties = n - int(np.searchsorted(ascending, score, side="left")) - greater  # includes itself
        first, last = greater + 1, greater + ties
        inside = max(0, min(last, k) - first + 1)
        if inside:
            gain += (prefix[first + inside - 1] - prefix[first - 1]) / ties
            hits += inside / ties
    ideal = prefix[min(targets.size, k)]
    ndcg, recall = gain / ideal, hits / targets.size
    if n <= k:
        hit = 1.0 if target_scores else 0.0
        return ndcg, recall, hit
    cut = ranked[k - 1]
    if any(s > cut for s in target_scores):
        return ndcg, recall, 1.0
    on_cut = sum(1 for s in target_scores if s == cut)
    above = int(np.count_nonzero(ranked > cut))
    group = int(np.count_nonzero(ranked == cut))
    slots = k - above
    miss = 1.0
    for i in range(slots):
        miss *= max(group - on_cut - i, 0) / (group - i)
    return ndcg, recall, 1.0 - miss


def evaluate_baskets(
    scorer: TimedScorer,
    histories: Sequence[Sequence[TimedInteraction]],
    nows: Sequence[float],
    targets: Sequence[np.ndarray | Sequence[int]],
    num_items: int,
    k: int = 10,
    exclude_seen: bool = False,
    exclude: Sequence[np.ndarray] | None = None,
) -> BasketMetrics:
    """Full-catalog next-basket metrics of `scorer` on (history, now) -> target basket cases.

    Index 0 is always excluded; with `exclude_seen` so is every item in the history (MovieLens:
    nobody rates a movie twice); `exclude[u]`, if given, is extra item indices excluded for user u
    (e.g. every item that is not a candidate). Items scored `<= -1e9` count as excluded, as in
    serving. A target that is excluded can only miss.
    """
    ndcgs, recalls, hits = [], [], []
    for u, (history, now, target) in enumerate(zip(histories, nows, targets, strict=True)):
        mask = np.zeros(num_items, dtype=np.float32)
        mask[0] = 1.0
        if exclude_seen:
            seen = np.fromiter((e[0] for e in history), dtype=np.int64, count=len(history))
            mask[seen[(seen > 0) & (seen < num_items)]] = 1.0
        if exclude is not None:
            mask[np.asarray(exclude[u], dtype=np.int64)] = 1.0
        scores = np.asarray(scorer(history, now, mask), dtype=np.float64)
        allowed = (mask < 0.5) & (scores > EXCLUDED_THRESHOLD)
        ndcg, recall, hit = basket_metrics_of_scores(scores, allowed, np.asarray(target), k)
        ndcgs.append(ndcg)
        recalls.append(recall)
        hits.append(hit)
    arrays = [np.asarray(v, dtype=np.float64) for v in (ndcgs, recalls, hits)]
    means = [float(a.mean()) if a.size else 0.0 for a in arrays]
    return BasketMetrics(k, len(ndcgs), means[0], means[1], means[2], *arrays)


def bootstrap_ci(
    per_user: Sequence[float] | np.ndarray, n: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over users (resampling users with replacement).

    For a paired comparison of two scorers on the same users pass the per-user differences."""
    values = np.asarray(per_user, dtype=np.float64)
    if values.size == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(n, dtype=np.float64)
    chunk = max(1, 1_000_000 // values.size)  # resample in blocks of ~1M draws (8 MB)
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        means[start : start + rows] = values[rng.integers(0, values.size, (rows, values.size))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def next_basket(
    scorer: TimedScorer,
    events: Sequence[Sequence[TimedInteraction]],
    num_items: int,
    basket_ends: Sequence[Sequence[int]] | None = None,
    k: int = 10,
    exclude_seen: bool = False,
) -> BasketMetrics:
    """The next-basket protocol on per-user timed events, for a caller that has already trained on
    everything before each user's last basket (the retrain gate): each user with at least two
    baskets is scored on their last one, given everything before it. `basket_ends=None` groups
    each user's events into baskets by timestamp (`datasets.group_baskets`)."""
    from .datasets import group_baskets

    histories: list[list[TimedInteraction]] = []
    nows: list[float] = []
    targets: list[np.ndarray] = []
    for u, seq in enumerate(events):
        ends = list(basket_ends[u]) if basket_ends is not None else group_baskets(seq)
        if len(ends) < 2:
            continue
        start = ends[-2]
        histories.append(list(seq[:start]))
        nows.append(float(seq[start][3]))
        targets.append(np.unique(np.fromiter((e[0] for e in seq[start:]), dtype=np.int64)))
    return evaluate_baskets(scorer, histories, nows, targets, num_items, k=k, exclude_seen=exclude_seen)
