"""Scoring a model exactly as serving does, for the retrain gate and the benchmarks.

Serving folds a shopper's events into the state through the model's `update` (from zeros after a
model switch), builds the v2 history input with `ItemHistory` at the moment the list is shown, and
calls `rank`. `ServedScorer` does the same on held-out histories, so an offline figure measures what
is served: same signatures, same bytes (LiteRT), same history code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from nextpick.domain.history import ItemHistory
from nextpick.domain.state import TimedInteraction, fold_interactions


class ContractModel(Protocol):
    @property
    def state_dim(self) -> int: ...

    @property
    def history_slots(self) -> int: ...

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray: ...

    def rank(
        self,
        state: np.ndarray,
        exclude: np.ndarray,
        history_items: np.ndarray | None = None,
        history_features: np.ndarray | None = None,
    ) -> np.ndarray: ...


class ServedScorer:
    """`scorer(history, now, exclude) -> scores` through the model's own signatures."""

    def __init__(self, model: ContractModel) -> None:
        self.model = model

    def __call__(self, history: Sequence[TimedInteraction], now: float, exclude: np.ndarray) -> np.ndarray:
        model = self.model
        state = fold_interactions(
            model, ((i, t, s) for i, t, s, _ in history), np.zeros(model.state_dim, np.float32)
        )
        if not model.history_slots:
            return model.rank(state, exclude)
        items = ItemHistory[int]().observe_all(history)
        inputs = items.model_input(_known, now, model.history_slots)
        return model.rank(state, exclude, *inputs)


def _known(index: int) -> int:
    return index
