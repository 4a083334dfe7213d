"""Hand-checked ranking metrics and splits."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from nextpick.domain.state import Interaction, TimedInteraction
from nextpick_training.evaluate import (
    BasketMetrics,
    Scorer,
    TimedScorer,
    bootstrap_ci,
    evaluate,
    evaluate_baskets,
    leave_last_out,
    next_basket,
    timed,
    validation_test_split,
)
from nextpick_training.scoring import ServedScorer


def fixed(scores: Sequence[float]) -> Scorer:
    def scorer(history: Sequence[Interaction], exclude: np.ndarray) -> np.ndarray:
        return np.where(exclude > 0.5, -1e10, np.asarray(scores, dtype=np.float64))

    return scorer


def ev(item: int) -> Interaction:
    return (item, 4, 1.0)


def test_leave_last_out_and_validation_split() -> None:
    sequences = [[ev(1), ev(2), ev(3)], [ev(4)], [ev(5), ev(6)]]
    train, held = leave_last_out(sequences)
    assert train == [[ev(1), ev(2)], [ev(4)], [ev(5)]]
    assert held == [ev(3), None, ev(6)]
    train_v, valid, train_t, test = validation_test_split(sequences)
    assert test == [ev(3), None, ev(6)]
    assert valid == [ev(2), None, None]
    assert train_v == [[ev(1)], [ev(4)], [ev(5)]]
    assert train_t == train


@pytest.mark.parametrize(
    ("target", "hr", "ndcg", "mrr"),
    [
        (5, 1.0, 1.0, 1.0),  # best score -> rank 1
        (4, 1.0, 1.0 / math.log2(3), 0.5),  # rank 2
        (3, 1.0, 1.0 / math.log2(4), 1.0 / 3),  # rank 3
        (1, 0.0, 0.0, 0.0),  # rank 5 > k=3
    ],
)
def test_metrics_at_known_ranks(target: int, hr: float, ndcg: float, mrr: float) -> None:
    scores = [99.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # index 0 scores highest but is always excluded
    m = evaluate(fixed(scores), [[]], [target], num_items=6, k=3, exclude_seen=False)
    assert m.users == 1
    assert m.hit_rate == pytest.approx(hr)
    assert m.ndcg == pytest.approx(ndcg)
    assert m.mrr == pytest.approx(mrr)


def test_seen_items_are_excluded_when_asked() -> None:
    scores = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    # Item 5 outranks the target 4, but the user has seen 5.
    with_seen = evaluate(fixed(scores), [[ev(5)]], [4], num_items=6, k=3, exclude_seen=True)
    without = evaluate(fixed(scores), [[ev(5)]], [4], num_items=6, k=3, exclude_seen=False)
    assert with_seen.ndcg == pytest.approx(1.0)
    assert without.ndcg == pytest.approx(1.0 / math.log2(3))


def test_ties_are_averaged_over_random_tie_breaking() -> None:
    # Target tied with two others at the top: positions 1, 2, 3 equally likely.
    scores = [0.0, 1.0, 1.0, 1.0, 0.5]
    m = evaluate(fixed(scores), [[]], [2], num_items=5, k=2, exclude_seen=False)
    assert m.hit_rate == pytest.approx(2 / 3)
    assert m.ndcg == pytest.approx((1.0 + 1.0 / math.log2(3)) / 3)
    assert m.mrr == pytest.approx((1.0 + 0.5) / 3)


def test_metrics_average_over_users_and_skip_missing_targets() -> None:
    scores = [0.0, 1.0, 2.0, 3.0]
    m = evaluate(fixed(scores), [[], [], []], [3, 2, None], num_items=4, k=1, exclude_seen=False)
    assert m.users == 2
    assert m.hit_rate == pytest.approx(0.5)
    assert m.ndcg == pytest.approx(0.5)


def test_coverage_counts_distinct_items_in_any_top_k() -> None:
    scores = [0.0, 1.0, 2.0, 3.0, 4.0]
    # Two users, k=2: the first sees {4, 3}; the second has seen 4 and 3 -> {2, 1}: all 4 items.
    m = evaluate(fixed(scores), [[], [ev(4), ev(3)]], [1, 1], num_items=5, k=2, exclude_seen=True)
    assert m.coverage == pytest.approx(1.0)
    m = evaluate(fixed(scores), [[], []], [1, 1], num_items=5, k=2, exclude_seen=True)
    assert m.coverage == pytest.approx(0.5)


def test_items_scored_at_or_below_minus_1e9_count_as_excluded() -> None:
    def scorer(history: Sequence[Interaction], exclude: np.ndarray) -> np.ndarray:
        return np.array([0.0, -1e9, 1.0, 0.5])  # item 1 excluded by the model itself

    m = evaluate(scorer, [[]], [1], num_items=4, k=3, exclude_seen=False)
    assert m.hit_rate == 0.0


class RecordingModel:
    state_dim = 3
    history_slots = 0  # a state-only (v1) model: no history input

    def __init__(self) -> None:
        self.calls: list[tuple[float, int, int, float]] = []

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray:
        self.calls.append((float(state.sum()), item, event_type, strength))
        return state + 1.0

    def rank(
        self,
        state: np.ndarray,
        exclude: np.ndarray,
        history_items: np.ndarray | None = None,
        history_features: np.ndarray | None = None,
    ) -> np.ndarray:
        assert state.tolist() == [2.0, 2.0, 2.0]
        return np.where(exclude > 0.5, -1e10, 0.0)


def test_served_model_scorer_folds_from_zeros_one_event_at_a_time() -> None:
    model = RecordingModel()
    scorer = ServedScorer(model)
    scorer([(2, 0, 1.0, 10.0), (3, 5, 0.8, 20.0)], 30.0, np.zeros(4, dtype=np.float32))
    assert model.calls == [(0.0, 2, 0, 1.0), (3.0, 3, 5, 0.8)]


# --- Next-basket metrics -------------------------------------------------------------------------


def timed_fixed(scores: Sequence[float] | np.ndarray) -> TimedScorer:
    def scorer(history: Sequence[TimedInteraction], now: float, exclude: np.ndarray) -> np.ndarray:
        return np.where(exclude > 0.5, -1e10, np.asarray(scores, dtype=np.float64))

    return scorer


def one_user(scores: Sequence[float], target: Sequence[int], k: int, **kwargs: Any) -> BasketMetrics:
    return evaluate_baskets(
        timed_fixed(scores), [[]], [0.0], [np.asarray(target)], len(scores), k=k, **kwargs
    )


def test_basket_metrics_at_known_ranks() -> None:
    scores = [99.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]  # ranks: item 1 -> 1, item 2 -> 2, ...
    m = one_user(scores, [1, 3, 6], k=4)  # hits at ranks 1 and 3; item 6 at rank 6 misses
    ideal = 1.0 + 1.0 / math.log2(3) + 1.0 / math.log2(4)
    assert m.ndcg == pytest.approx((1.0 + 1.0 / math.log2(4)) / ideal)
    assert m.recall == pytest.approx(2 / 3)
    assert m.hit_rate == 1.0
    # IDCG counts at most k items: a 3-item basket at k=2 can reach NDCG 1.
    assert one_user(scores, [1, 2, 3], k=2).ndcg == pytest.approx(1.0)
    assert one_user(scores, [5, 6], k=4).hit_rate == 0.0
    # Repeated items in the basket count once.
    assert one_user(scores, [1, 1, 6], k=1).recall == pytest.approx(0.5)


def test_basket_metrics_average_over_random_tie_breaking() -> None:
    # Item 1 first; items 2, 3, 4 tied behind it with targets 2 and 3; one slot left in the top 2.
    m = one_user([0.0, 5.0, 1.0, 1.0, 1.0], [2, 3], k=2)
    assert m.hit_rate == pytest.approx(2 / 3)  # misses both only if item 4 takes the slot
    assert m.recall == pytest.approx(1 / 3)  # each target in the slot with probability 1/3
    assert m.ndcg == pytest.approx((2 / 3) / math.log2(3) / (1.0 + 1.0 / math.log2(3)))


@pytest.mark.parametrize("seed", range(8))
def test_basket_metrics_equal_brute_force_over_every_tie_breaking(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 7, 3
    scores = rng.integers(0, 3, n).astype(np.float64)  # many ties
    targets = rng.choice(np.arange(1, n), size=int(rng.integers(1, 4)), replace=False)
    candidates = list(range(1, n))
    ideal = sum(1.0 / math.log2(p + 1) for p in range(1, min(len(targets), k) + 1))
    totals = np.zeros(3)
    orders = 0
    for order in itertools.permutations(candidates):
        if any(scores[a] < scores[b] for a, b in itertools.pairwise(order)):
            continue  # not a tie-breaking of this ranking
        top = order[:k]
        dcg = sum(1.0 / math.log2(p + 2) for p, item in enumerate(top) if item in targets)
        found = len(set(top) & set(targets.tolist()))
        totals += [dcg / ideal, found / len(targets), float(found > 0)]
        orders += 1
    m = evaluate_baskets(timed_fixed(scores), [[]], [0.0], [targets], n, k=k)
    np.testing.assert_allclose([m.ndcg, m.recall, m.hit_rate], totals / orders, atol=1e-12)


def test_basket_exclusions_seen_explicit_and_by_score() -> None:
    scores = [0.0, 5.0, 4.0, 3.0, 2.0]
    history: list[TimedInteraction] = [(1, 4, 1.0, 10.0)]
    seen = evaluate_baskets(
        timed_fixed(scores), [history], [20.0], [np.array([2])], 5, k=1, exclude_seen=True
    )
    assert seen.hit_rate == 1.0  # item 1 is excluded, so item 2 is first
    kept = evaluate_baskets(timed_fixed(scores), [history], [20.0], [np.array([2])], 5, k=1)
    assert kept.hit_rate == 0.0
    extra = evaluate_baskets(
        timed_fixed(scores), [[]], [0.0], [np.array([3])], 5, k=1, exclude=[np.array([1, 2])]
    )
    assert extra.hit_rate == 1.0
    # An excluded target can only miss, but still counts in recall's denominator.
    missed = evaluate_baskets(
        timed_fixed(scores), [[]], [0.0], [np.array([1, 2])], 5, k=2, exclude=[np.array([1])]
    )
    assert missed.recall == pytest.approx(0.5)


def test_per_user_values_are_kept_in_order() -> None:
    scores = [0.0, 3.0, 2.0, 1.0]
    m = evaluate_baskets(timed_fixed(scores), [[], []], [0.0, 0.0], [np.array([1]), np.array([3])], 4, k=1)
    assert m.hit_per_user.tolist() == [1.0, 0.0]
    assert m.ndcg_per_user.tolist() == [1.0, 0.0]
    assert m.users == 2 and m.hit_rate == 0.5


def test_timed_adapter_drops_timestamps_and_now() -> None:
    seen: list[Sequence[Interaction]] = []

    def untimed(history: Sequence[Interaction], exclude: np.ndarray) -> np.ndarray:
        seen.append(history)
        return np.zeros(len(exclude))

    timed(untimed)([(3, 4, 1.0, 123.0)], 456.0, np.zeros(4, dtype=np.float32))
    assert seen == [[(3, 4, 1.0)]]


def test_bootstrap_ci_brackets_the_mean_and_is_seeded() -> None:
    assert bootstrap_ci(np.full(50, 0.3), n=200, seed=1) == pytest.approx((0.3, 0.3))
    values = np.random.default_rng(0).random(400)
    low, high = bootstrap_ci(values, n=500, seed=7)
    assert low < values.mean() < high
    # About 2 standard errors either side (0.29 / sqrt(400) = 0.0144).
    assert 0.04 < high - low < 0.08
    assert bootstrap_ci(values, n=500, seed=7) == (low, high)


def test_next_basket_groups_by_timestamp_and_scores_the_last_basket() -> None:
    events: list[TimedInteraction] = [
        (1, 4, 1.0, 10.0),
        (2, 4, 1.0, 10.0),
        (3, 4, 1.0, 20.0),
        (4, 4, 1.0, 20.0),
    ]
    single: list[TimedInteraction] = [(1, 4, 1.0, 5.0), (2, 4, 1.0, 5.0)]  # one basket: not scored
    histories: list[Sequence[TimedInteraction]] = []

    def scorer(history: Sequence[TimedInteraction], now: float, exclude: np.ndarray) -> np.ndarray:
        histories.append(history)
        assert now == 20.0
        return np.array([0.0, 0.0, 0.0, 2.0, 1.0])

    m = next_basket(scorer, [events, single], 5, k=2)
    assert histories == [events[:2]]
    assert m.users == 1 and m.recall == 1.0 and m.ndcg == pytest.approx(1.0)
