"""Baselines hand-checked on tiny data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nextpick_training.baselines import ItemKNN, Popularity, Transitions, UserFrequency
from nextpick_training.model import Interaction


def seq(*items: int) -> list[Interaction]:
    return [(i, 4, 1.0) for i in items]


NO_EXCLUDE = np.zeros(5, dtype=np.float32)


def test_popularity_counts_and_excludes() -> None:
    pop = Popularity([seq(1, 2, 2), seq(2, 3)], num_items=5)
    assert pop([], NO_EXCLUDE)[1:].tolist() == [1.0, 3.0, 1.0, 0.0]
    exclude = np.array([1, 0, 1, 0, 0], dtype=np.float32)
    scores = pop([], exclude)
    assert scores[0] <= -1e9 and scores[2] <= -1e9
    assert int(np.argmax(scores)) in (1, 3)


def test_item_knn_is_cosine_of_co_occurrence() -> None:
    # Users: {1,2}, {1,2,3}, {3,4}. n1=2, n2=2, n3=2, co(1,2)=2, co(2,3)=1, co(3,4)=1.
    knn = ItemKNN([seq(1, 2), seq(1, 2, 3), seq(3, 4)], num_items=5, window=1, decay=1.0)
    assert knn.similarity[1, 2] == pytest.approx(1.0)
    assert knn.similarity[2, 3] == pytest.approx(0.5)
    assert knn.similarity[1, 4] == 0.0
    scores = knn(seq(2), NO_EXCLUDE)
    assert scores[1] > scores[3] > scores[4]
    assert scores[1] == pytest.approx(1.0, abs=1e-5)


def test_item_knn_weights_recent_items_more() -> None:
    knn = ItemKNN([seq(1, 2), seq(3, 4)], num_items=5, window=2, decay=0.5)
    scores = knn(seq(1, 3), NO_EXCLUDE)  # 3 is the most recent item
    assert scores[4] == pytest.approx(1.0, abs=1e-5)
    assert scores[2] == pytest.approx(0.5, abs=1e-5)


def test_transitions_are_smoothed_next_item_probabilities() -> None:
    # 1 -> 2 twice, 1 -> 3 once; popularity of items: 1:3, 2:2, 3:1 (total 6).
    model = Transitions([seq(1, 2), seq(1, 2), seq(1, 3)], num_items=5, window=1, alpha=1.0, skip_weight=0.0)
    p2 = (2 + 1.0 * 2 / 6) / (3 + 1.0)
    p3 = (1 + 1.0 * 1 / 6) / (3 + 1.0)
    assert model.transition[1, 2] == pytest.approx(p2)
    assert model.transition[1, 3] == pytest.approx(p3)
    # An item never followed by anything backs off to popularity.
    assert model.transition[4, 1] == pytest.approx(3 / 6)
    scores = model(seq(1), NO_EXCLUDE)
    assert scores[2] > scores[3] > scores[4]


def test_transitions_mix_recent_items_with_decay() -> None:
    model = Transitions([seq(1, 2), seq(3, 4)], num_items=5, window=2, decay=0.5, alpha=1e-9, skip_weight=0.0)
    scores = model(seq(1, 3), NO_EXCLUDE)  # last item 3 -> 4 (weight 1), before it 1 -> 2 (weight 0.5)
    assert scores[4] == pytest.approx(1.0, abs=1e-5)
    assert scores[2] == pytest.approx(0.5, abs=1e-5)


def test_transitions_cold_user_gets_popularity() -> None:
    model = Transitions([seq(1, 2, 2)], num_items=5)
    scores = model([], NO_EXCLUDE)
    assert int(np.argmax(scores)) == 2


def test_user_frequency_prefers_own_most_bought() -> None:
    model = UserFrequency([seq(3, 3, 3)], num_items=5)
    scores = model(seq(1, 2, 2), NO_EXCLUDE)
    assert scores[2] > scores[1] > scores[3] > scores[4]
    assert math.isclose(scores[2], 2.0, abs_tol=1e-5)
