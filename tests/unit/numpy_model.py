"""A hand-checkable numpy model honouring the model contract (domain unit tests need no TFLite)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nextpick.domain.candidates import ExploreIndex, ExploreQuery
from nextpick.domain.explore_scan import ExploreScan
from nextpick.domain.together import PartnerTable


class NumpyModel:
    """state' = decay * state + weight[event_type] * strength * E[item]; scores = E @ state.

    Small enough to check by hand, and it follows docs/model-contract.md exactly (index 0 is the
    unknown item, excluded items score -1e9)."""

    def __init__(
        self,
        items: Sequence[str],
        dim: int = 4,
        version: str = "v1",
        seed: int = 0,
        history_slots: int = 0,
        trending: Sequence[tuple[int, float]] = (),
        has_similar: bool = True,
    ) -> None:
        self._items: tuple[str | None, ...] = (None, *items)
        rng = np.random.default_rng(seed)
        self.embeddings = rng.normal(size=(len(self._items), dim)).astype(np.float32)
        self.embeddings[0] = 0.0
        self.decay = np.float32(0.5)
        self.weights = np.array([1, 1, 2, -1, 3, 2], dtype=np.float32)
        self._version = version
        self.update_calls = 0
        # history_slots > 0 makes it a contract-v2 model: each history item gets +10 per unit of its
        # first feature (log(1 + purchases)), so "buy again" is visible in the order of the scores.
        self._history_slots = history_slots
        self._trending = tuple(trending)
        self.last_history: tuple[np.ndarray, np.ndarray] | None = None
        # False: a model published before the optional `similar` signature existed.
        self._has_similar = has_similar
        self.similar_calls = 0
        # The version's bought-together partners (a nextpick.domain.together.PartnerTable), if any.
        self.partner_table: PartnerTable | None = None
        # No large-catalog parts (docs/ranking-1m.md): every ranking is the exact `rank`.
        self.explore_index: ExploreIndex | None = None
        self.explore_scan: ExploreScan | None = None
        self.has_score_items = False

    def score_items(self, query: np.ndarray, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError("no score_items: has_score_items is False")

    def explore_query(
        self, state: np.ndarray, history_items: np.ndarray | None, history_features: np.ndarray | None
    ) -> ExploreQuery | None:
        return None

    @property
    def trending(self) -> tuple[tuple[int, float], ...]:
        return self._trending

    @property
    def history_slots(self) -> int:
        return self._history_slots

    @property
    def version(self) -> str:
        return self._version

    @property
    def state_dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def items(self) -> Sequence[str | None]:
        return self._items

    def item_index(self, item_id: str) -> int:
        try:
            return self._items.index(item_id)
        except ValueError:
            return 0

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray:
        self.update_calls += 1
        return self.decay * state + self.weights[event_type] * np.float32(strength) * self.embeddings[item]

    def rank(
        self,
        state: np.ndarray,
        exclude: np.ndarray,
        history_items: np.ndarray | None = None,
        history_features: np.ndarray | None = None,
    ) -> np.ndarray:
        scores = self.embeddings @ state
        if self._history_slots and history_items is not None and history_features is not None:
            self.last_history = (history_items, history_features)
            np.add.at(scores, history_items, 10.0 * history_features[:, 0] * history_features[:, -1])
        return scores - exclude * np.float32(1e9)

    def explain(
        self,
        state: np.ndarray,
        history: tuple[np.ndarray, np.ndarray],
        recent: Sequence[tuple[int, int, float]],
        picks: Sequence[int],
    ) -> np.ndarray | None:
        """No `explain` signature: what every model exported before it answers."""
        return None

    def similar(self, item: int, exclude: np.ndarray) -> np.ndarray | None:
        """Cosine of the embeddings, as the exported `similar` signature computes it."""
        if not self._has_similar:
            return None
        self.similar_calls += 1
        norms = np.maximum(np.linalg.norm(self.embeddings, axis=1), 1e-12)
        scores = (self.embeddings @ self.embeddings[item]) / (norms * norms[item])
        dropped = (exclude > 0.5) | (np.arange(len(scores)) == item)
        dropped[0] = True
        return np.where(dropped, np.float32(-1e10), scores).astype(np.float32)
