"""Non-neural baselines, each a scorer with the same interface as the served model.

All three are fitted on the training sequences of a split and scored with
:func:`nextpick_training.evaluate.evaluate` in the same run as the model, so the comparison is
like for like (same users, same held-out items, same exclusion, full ranking).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .model import Interaction

# Added to every baseline score so that, where the evidence ties (e.g. no co-occurrence at all),
# more popular items come first instead of arbitrary ones.
POPULARITY_TIEBREAK = 1e-6


def _item_counts(sequences: Sequence[Sequence[Interaction]], num_items: int) -> np.ndarray:
    counts = np.zeros(num_items, dtype=np.float64)
    for seq in sequences:
        for item, _e, _s in seq:
            if 0 < item < num_items:
                counts[item] += 1.0
    return counts


def _masked(scores: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(exclude) > 0.5, -1e10, scores).astype(np.float64)


def _recent_items(history: Sequence[Interaction], num_items: int, window: int) -> list[int]:
    """The last ``window`` known items, most recent first."""
    items = [item for item, _e, _s in history if 0 < item < num_items]
    return items[::-1][:window]


class Popularity:
    """Most interacted-with items overall."""

    def __init__(self, sequences: Sequence[Sequence[Interaction]], num_items: int) -> None:
        self.num_items = num_items
        self.counts = _item_counts(sequences, num_items)

    def __call__(self, history: Sequence[Interaction], exclude: np.ndarray) -> np.ndarray:
        return _masked(self.counts.copy(), exclude)


class ItemKNN:
    """Item-to-item cosine similarity of co-occurrence in users' histories.

    ``sim[i, j] = co(i, j) / (sqrt(n_i * n_j) + shrink)`` over distinct items per user; a user's
    score is ``sum_r decay^r * sim[h_r]`` over their ``window`` most recent items h_0 (newest), ...
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[Interaction]],
        num_items: int,
        window: int = 50,
        decay: float = 0.9,
        shrink: float = 0.0,
    ) -> None:
        self.num_items, self.window, self.decay = num_items, window, decay
        users = np.zeros((len(sequences), num_items), dtype=np.float32)
        for u, seq in enumerate(sequences):
            for item, _e, _s in seq:
                if 0 < item < num_items:
                    users[u, item] = 1.0
        co = (users.T @ users).astype(np.float64)
        n = np.diag(co).copy()
        np.fill_diagonal(co, 0.0)
        self.similarity = co / (np.sqrt(np.outer(n, n)) + shrink + 1e-12)
        self.popularity = n / max(n.max(), 1.0)

    def __call__(self, history: Sequence[Interaction], exclude: np.ndarray) -> np.ndarray:
        scores = POPULARITY_TIEBREAK * self.popularity
        for r, item in enumerate(_recent_items(history, self.num_items, self.window)):
            scores = scores + (self.decay**r) * self.similarity[item]
        return _masked(scores, exclude)


class Transitions:
    """First-order "what came right after" model, smoothed toward popularity.

    ``P(j | i) = (T[i, j] + alpha * pop(j)) / (n_i + alpha)``, with ``T`` counting j directly after
    i (plus, with weight ``skip_weight``, j two steps after i). A user's score mixes the rows of their
    ``window`` most recent items with weights ``decay^r`` (newest first): the last item dominates,
    older ones back it off, and items never seen in transitions fall back to popularity.
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[Interaction]],
        num_items: int,
        window: int = 5,
        decay: float = 0.6,
        alpha: float = 5.0,
        skip_weight: float = 0.5,
    ) -> None:
        self.num_items, self.window, self.decay = num_items, window, decay
        counts = np.zeros((num_items, num_items), dtype=np.float64)
        for seq in sequences:
            items = [item for item, _e, _s in seq if 0 < item < num_items]
            for gap, weight in ((1, 1.0), (2, skip_weight)):
                if weight <= 0 or len(items) <= gap:
                    continue
                np.add.at(counts, (np.asarray(items[:-gap]), np.asarray(items[gap:])), weight)
        pop = _item_counts(sequences, num_items)
        pop_dist = pop / max(pop.sum(), 1.0)
        row_total = counts.sum(axis=1, keepdims=True)
        self.transition = (counts + alpha * pop_dist[None, :]) / (row_total + alpha)
        self.popularity = pop_dist

    def __call__(self, history: Sequence[Interaction], exclude: np.ndarray) -> np.ndarray:
        recent = _recent_items(history, self.num_items, self.window)
        if not recent:
            return _masked(self.popularity.copy(), exclude)
        scores = POPULARITY_TIEBREAK * self.popularity
        for r, item in enumerate(recent):
            scores = scores + (self.decay**r) * self.transition[item]
        return _masked(scores, exclude)


class UserFrequency:
    """Each user's own most frequent items (a repurchase reference, not an ML-100K baseline)."""

    def __init__(self, sequences: Sequence[Sequence[Interaction]], num_items: int) -> None:
        self.num_items = num_items
        pop = _item_counts(sequences, num_items)
        self.popularity = pop / max(pop.max(), 1.0)

    def __call__(self, history: Sequence[Interaction], exclude: np.ndarray) -> np.ndarray:
        scores = POPULARITY_TIEBREAK * self.popularity
        for item, _e, _s in history:
            if 0 < item < self.num_items:
                scores[item] += 1.0
        return _masked(scores, exclude)
