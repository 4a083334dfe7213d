"""Hand-checked ranking metrics and splits."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from nextpick_training.evaluate import (
    Scorer,
    ServedModelScorer,
    evaluate,
    leave_last_out,
    validation_test_split,
)
from nextpick_training.model import Interaction


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

    def __init__(self) -> None:
        self.calls: list[tuple[float, int, int, float]] = []

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray:
        self.calls.append((float(state.sum()), item, event_type, strength))
        return state + 1.0

    def rank(self, state: np.ndarray, exclude: np.ndarray) -> np.ndarray:
        assert state.tolist() == [2.0, 2.0, 2.0]
        return np.where(exclude > 0.5, -1e10, 0.0)


def test_served_model_scorer_folds_from_zeros_one_event_at_a_time() -> None:
    model = RecordingModel()
    scorer = ServedModelScorer(model, state_dim=3)
    scorer([(2, 0, 1.0), (3, 5, 0.8)], np.zeros(4, dtype=np.float32))
    assert model.calls == [(0.0, 2, 0, 1.0), (3.0, 3, 5, 0.8)]
