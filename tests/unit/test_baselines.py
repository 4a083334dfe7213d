"""Baselines hand-checked on tiny data, and the sparse ones against dense brute-force references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nextpick.domain.state import Interaction, TimedInteraction
from nextpick_training import baselines
from nextpick_training.baselines import (
    AttributePopularity,
    BuyAgain,
    ItemKNN,
    Popularity,
    RandomOrder,
    Transitions,
    UserFrequency,
)

DAY = 86_400.0


def seq(*items: int) -> list[Interaction]:
    return [(i, 4, 1.0) for i in items]


NO_EXCLUDE = np.zeros(5, dtype=np.float32)


def random_sequences(seed: int, users: int, num_items: int) -> list[list[Interaction]]:
    rng = np.random.default_rng(seed)
    return [seq(*rng.integers(1, num_items, rng.integers(1, 12)).tolist()) for _ in range(users)]


def test_popularity_counts_and_excludes() -> None:
    pop = Popularity([seq(1, 2, 2), seq(2, 3)], num_items=5)
    assert pop([], NO_EXCLUDE)[1:].tolist() == [1.0, 3.0, 1.0, 0.0]
    exclude = np.array([1, 0, 1, 0, 0], dtype=np.float32)
    scores = pop([], exclude)
    assert scores[0] <= -1e9 and scores[2] <= -1e9
    assert int(np.argmax(scores)) in (1, 3)


def test_time_decayed_popularity_halves_per_half_life_before_the_latest_event() -> None:
    t = 1_000 * DAY
    events: list[TimedInteraction] = [(1, 4, 1.0, t), (2, 4, 1.0, t - 10 * DAY), (2, 4, 1.0, t - 20 * DAY)]
    pop = Popularity([events], num_items=4, half_life_days=10.0)
    assert pop.counts[1] == pytest.approx(1.0)
    assert pop.counts[2] == pytest.approx(0.5 + 0.25)


def test_item_knn_is_cosine_of_co_occurrence() -> None:
    # Users: {1,2}, {1,2,3}, {3,4}. n1=2, n2=2, n3=2, co(1,2)=2, co(2,3)=1, co(3,4)=1.
    knn = ItemKNN([seq(1, 2), seq(1, 2, 3), seq(3, 4)], num_items=5, window=1, decay=1.0)
    assert knn.similarity.get(1, 2) == pytest.approx(1.0)
    assert knn.similarity.get(2, 3) == pytest.approx(0.5)
    assert knn.similarity.get(1, 4) == 0.0
    assert knn.similarity.get(2, 2) == 0.0
    scores = knn(seq(2), NO_EXCLUDE)
    assert scores[1] > scores[3] > scores[4]
    assert scores[1] == pytest.approx(1.0, abs=1e-5)


def test_item_knn_weights_recent_items_more() -> None:
    knn = ItemKNN([seq(1, 2), seq(3, 4)], num_items=5, window=2, decay=0.5)
    scores = knn(seq(1, 3), NO_EXCLUDE)  # 3 is the most recent item
    assert scores[4] == pytest.approx(1.0, abs=1e-5)
    assert scores[2] == pytest.approx(0.5, abs=1e-5)


def test_item_knn_self_weight_recommends_the_recent_items_back() -> None:
    knn = ItemKNN([seq(1, 2), seq(3, 4)], num_items=5, window=2, decay=0.5, self_weight=1.0)
    scores = knn(seq(1, 3), NO_EXCLUDE)
    assert scores[3] == pytest.approx(1.0, abs=1e-5)
    assert scores[1] == pytest.approx(0.5 + 0.0, abs=1e-5)


def dense_cosine(sequences: list[list[Interaction]], num_items: int) -> np.ndarray:
    users = np.zeros((len(sequences), num_items))
    for u, s in enumerate(sequences):
        users[u, [i for i, _e, _s in s]] = 1.0
    co = users.T @ users
    n = np.diag(co).copy()
    np.fill_diagonal(co, 0.0)
    return co / (np.sqrt(np.outer(n, n)) + 1e-12)


def test_sparse_item_knn_equals_a_dense_brute_force_reference() -> None:
    num_items = 40
    sequences = random_sequences(1, 30, num_items)
    dense = dense_cosine(sequences, num_items)
    knn = ItemKNN(sequences, num_items, window=4, decay=0.7)
    exclude = np.zeros(num_items, dtype=np.float32)
    for history in random_sequences(2, 10, num_items):
        recent = [i for i, _e, _s in history][::-1][:4]
        expected = sum(0.7**r * dense[i] for r, i in enumerate(recent))
        got = knn(history, exclude)
        np.testing.assert_allclose(got, expected + 1e-6 * knn.popularity, atol=1e-12)


@pytest.mark.parametrize("sort_block", [4_000_000, 7])  # one block; many blocks of rows
def test_item_knn_keeps_the_top_neighbours_of_each_item(
    sort_block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(baselines, "SORT_BLOCK", sort_block)
    num_items = 40
    sequences = random_sequences(3, 30, num_items)
    dense = dense_cosine(sequences, num_items)
    knn = ItemKNN(sequences, num_items, neighbours=3)
    assert knn.similarity.indptr[-1] == sum(min(3, int((dense[i] > 0).sum())) for i in range(num_items))
    for i in range(1, num_items):
        cols, values = knn.similarity.row(i)
        expected = np.sort(dense[i][dense[i] > 0])[::-1][:3]
        np.testing.assert_allclose(np.sort(values)[::-1], expected)
        np.testing.assert_allclose(values, dense[i, cols])


def test_transitions_are_smoothed_next_item_probabilities() -> None:
    # 1 -> 2 twice, 1 -> 3 once; popularity of items: 1:3, 2:2, 3:1 (total 6).
    model = Transitions([seq(1, 2), seq(1, 2), seq(1, 3)], num_items=5, window=1, alpha=1.0, skip_weight=0.0)
    p2 = (2 + 1.0 * 2 / 6) / (3 + 1.0)
    p3 = (1 + 1.0 * 1 / 6) / (3 + 1.0)
    assert model.probability(1, 2) == pytest.approx(p2)
    assert model.probability(1, 3) == pytest.approx(p3)
    # An item never followed by anything backs off to popularity.
    assert model.probability(4, 1) == pytest.approx(3 / 6)
    scores = model(seq(1), NO_EXCLUDE)
    assert scores[2] > scores[3] > scores[4]
    assert scores[2] == pytest.approx(p2 + 1e-6 * 2 / 6)


def test_sparse_transitions_equal_a_dense_brute_force_reference() -> None:
    num_items, alpha, skip = 30, 2.0, 0.5
    sequences = random_sequences(4, 25, num_items)
    counts = np.zeros((num_items, num_items))
    pop = np.zeros(num_items)
    for s in sequences:
        items = [i for i, _e, _s in s]
        for i in items:
            pop[i] += 1
        for a, b in itertools.pairwise(items):
            counts[a, b] += 1.0
        for a, b in zip(items, items[2:], strict=False):
            counts[a, b] += skip
    pop /= pop.sum()
    dense = (counts + alpha * pop) / (counts.sum(axis=1, keepdims=True) + alpha)
    model = Transitions(sequences, num_items, window=3, decay=0.6, alpha=alpha, skip_weight=skip)
    exclude = np.zeros(num_items, dtype=np.float32)
    for history in random_sequences(5, 10, num_items):
        recent = [i for i, _e, _s in history][::-1][:3]
        expected = 1e-6 * pop + sum(0.6**r * dense[i] for r, i in enumerate(recent))
        np.testing.assert_allclose(model(history, exclude), expected, atol=1e-12)


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


def shopper(now: float) -> list[TimedInteraction]:
    # Item 1 once, today; item 2 twice, 10 and 20 days ago.
    return [(2, 4, 1.0, now - 20 * DAY), (2, 4, 1.0, now - 10 * DAY), (1, 4, 1.0, now)]


def test_buy_again_sums_half_life_decayed_events() -> None:
    now = 2_000 * DAY
    training = [seq(4, 4, 4, 3)]  # popularity: 4 (3 events) > 3 (1) > 1, 2 (0)
    plain = BuyAgain(training, num_items=5, half_life_days=None)(shopper(now), now, NO_EXCLUDE)
    assert plain[2] > plain[1]  # 2 events beat 1 without decay
    decayed = BuyAgain(training, num_items=5, half_life_days=10.0)(shopper(now), now, NO_EXCLUDE)
    # Item 1: 0.5^0 = 1; item 2: 0.5^2 + 0.5^1 = 0.75.
    assert decayed[1] > decayed[2]
    assert (decayed[2] - 1.0) / (decayed[1] - 1.0) == pytest.approx(0.75, rel=1e-4)
    # Own items above every unseen item, however popular; popularity orders the unseen ones.
    assert min(decayed[1], decayed[2]) > max(decayed[3], decayed[4])
    assert decayed[4] > decayed[3]


def test_buy_again_ranking_does_not_depend_on_when_it_is_asked_and_survives_underflow() -> None:
    now = 2_000 * DAY
    model = BuyAgain([seq(3)], num_items=5, half_life_days=0.01)
    scores = model(shopper(now), now + 900 * DAY, NO_EXCLUDE)  # 2^-90000: underflows unless rescaled
    assert scores[1] > scores[2] > scores[3] > scores[4]
    assert scores[2] >= 1.0


ATTRIBUTES = {1: {"genre": "A"}, 2: {"genre": "A|B"}, 3: {"genre": "B"}, 4: {"genre": "C"}}


def test_attribute_popularity_scores_items_without_events() -> None:
    # Events: item 1 x3, item 2 x1, item 3 x1; item 4 (genre C) has none.
    training = [seq(1, 1, 1, 2), seq(3)]
    events = AttributePopularity(training, 6, ATTRIBUTES, normalise="events")
    # Events per genre: A = 3 + 1 = 4, B = 1 + 1 = 2, C = 0 -> scaled by 4: A 1, B 0.5, C 0.
    scores = events([], np.zeros(6, dtype=np.float32))
    assert scores[1] == pytest.approx(1.0 + 1e-6)
    assert scores[2] == pytest.approx(0.75 + 1e-6 / 3)  # mean over A and B
    assert scores[4] == pytest.approx(0.0)
    per_item = AttributePopularity(training, 6, ATTRIBUTES, normalise="per_item", aggregate="max")
    # Per trained item: A = 4 / 2 items, B = 2 / 2 items -> A 1, B 0.5; max over a movie's genres.
    scores = per_item([], np.zeros(6, dtype=np.float32))
    assert scores[2] == pytest.approx(1.0 + 1e-6 / 3)
    assert scores[3] == pytest.approx(0.5 + 1e-6 / 3)


def test_attribute_affinity_follows_the_users_own_genres() -> None:
    training = [seq(1, 1, 1, 2), seq(3)]
    personal = AttributePopularity(training, 6, ATTRIBUTES, normalise="events", personal=1.0)
    scores = personal(seq(3, 3), np.zeros(6, dtype=np.float32))  # this user only watches B
    assert scores[3] > scores[1]


def test_random_order_ties_every_allowed_item() -> None:
    scores = RandomOrder(5)([], np.array([1, 0, 0, 1, 0], dtype=np.float32))
    assert scores[[1, 2, 4]].tolist() == [0.0, 0.0, 0.0]
    assert scores[0] <= -1e9 and scores[3] <= -1e9
