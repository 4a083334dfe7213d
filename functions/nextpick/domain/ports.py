"""The interfaces the domain needs from the outside world; adapters implement them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.events import CatalogItem
from nextpick.domain.state import UserState


class RankingModel(Protocol):
    """A loaded model honouring docs/model-contract.md."""

    @property
    def version(self) -> str: ...
    @property
    def state_dim(self) -> int: ...
    @property
    def items(self) -> Sequence[str | None]: ...
    def item_index(self, item_id: str) -> int: ...
    @property
    def history_slots(self) -> int:
        """Size of the v2 history input; 0 for a v1 model (state only)."""
        ...

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray: ...
    def rank(
        self,
        state: np.ndarray,
        exclude: np.ndarray,
        history_items: np.ndarray | None = None,
        history_features: np.ndarray | None = None,
    ) -> np.ndarray: ...


class ModelSource(Protocol):
    def current(self) -> RankingModel | None:
        """The live model (refreshed at most every MODEL_REFRESH_SECONDS), or None before the first."""
        ...


class StateRepository(Protocol):
    def load(self, user_id: str) -> UserState:
        """Strongly consistent read; a user never seen before comes back as `UserState.new(user_id)`."""
        ...

    def save(self, state: UserState) -> UserState:
        """Conditional write: succeeds only if the stored version is still `state.version`.

        Returns the state as stored (version + 1); raises VersionConflict if someone else won."""
        ...


class CatalogSource(Protocol):
    def snapshot(self) -> CatalogSnapshot:
        """Stock and categories, at most CATALOG_REFRESH_SECONDS old."""
        ...


class CatalogWriter(Protocol):
    def put_items(self, items: Sequence[CatalogItem]) -> None: ...
