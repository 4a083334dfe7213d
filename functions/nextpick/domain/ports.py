"""The interfaces the domain needs from the outside world; adapters implement them."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

import numpy as np

from nextpick.domain.candidates import ExploreIndex, ExploreQuery
from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.erasure import Erasure
from nextpick.domain.events import CatalogItem
from nextpick.domain.explore_scan import ExploreScan
from nextpick.domain.impressions import Impression
from nextpick.domain.rules import RuleSet
from nextpick.domain.state import StoredState, UserState
from nextpick.domain.together import PartnerTable


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
    def trending(self) -> Sequence[tuple[int, float]]:
        """(vocabulary index, score) of what was trending when the model was published, best first;
        what a shopper with no events yet sees. Empty for v1 models."""
        ...

    @property
    def history_slots(self) -> int:
        """Size of the v2 history input; 0 for a v1 model (state only)."""
        ...

    @property
    def partner_table(self) -> PartnerTable | None:
        """The version's bought-together partners (docs/model-contract.md); None: it has none."""
        ...

    @property
    def explore_index(self) -> ExploreIndex | None:
        """The version's large-catalog index (docs/ranking-1m.md); None: it has none (exact `rank`)."""
        ...

    def explore_query(
        self, state: np.ndarray, history_items: np.ndarray | None, history_features: np.ndarray | None
    ) -> ExploreQuery | None:
        """`rank`'s per-shopper parts (the optional `rank_query` signature); None: the model has none."""
        ...

    @property
    def explore_scan(self) -> ExploreScan | None:
        """The version's int8 explore scan (docs/ranking-1m.md); None: it has none."""
        ...

    @property
    def has_score_items(self) -> bool:
        """Whether the model has the optional `score_items` signature."""
        ...

    def score_items(self, query: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The exact explore logits of vocabulary indices `items` (`score_items`; see `has_score_items`)."""
        ...

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray: ...
    def rank(
        self,
        state: np.ndarray,
        exclude: np.ndarray,
        history_items: np.ndarray | None = None,
        history_features: np.ndarray | None = None,
    ) -> np.ndarray: ...
    def similar(self, item: int, exclude: np.ndarray) -> np.ndarray | None:
        """Cosine similarity of every item to vocabulary index `item` (excluded items, index 0 and
        `item` itself score <= -1e9); None: the model has no `similar` signature (docs/similar.md)."""
        ...

    def explain(
        self,
        state: np.ndarray,
        history: tuple[np.ndarray, np.ndarray],
        recent: Sequence[tuple[int, int, float]],
        picks: Sequence[int],
    ) -> np.ndarray | None:
        """[len(picks), history_slots]: each pick's score minus its score without that history slot
        (docs/explanations.md); None: the model has no `explain` signature."""
        ...


class WithoutOptionalParts:
    """What a model without the contract's optional parts answers (docs/model-contract.md): no
    `similar`, `rank_query` or `score_items` signature, no bought-together table, no explore index or scan.
    Models and test doubles that have them override."""

    partner_table: PartnerTable | None = None
    explore_index: ExploreIndex | None = None
    explore_scan: ExploreScan | None = None
    has_score_items = False

    def similar(self, item: int, exclude: np.ndarray) -> np.ndarray | None:
        return None

    def explain(
        self,
        state: np.ndarray,
        history: tuple[np.ndarray, np.ndarray],
        recent: Sequence[tuple[int, int, float]],
        picks: Sequence[int],
    ) -> np.ndarray | None:
        return None

    def explore_query(
        self, state: np.ndarray, history_items: np.ndarray | None, history_features: np.ndarray | None
    ) -> ExploreQuery | None:
        return None

    def score_items(self, query: np.ndarray, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError("no score_items signature (has_score_items is False)")


class ModelStatus(StrEnum):
    """What the model behind an answer is, so a caller can tell a fallback from "no model yet"."""

    LIVE = "live"  # the version the pointer names
    FALLBACK = "fallback"  # an earlier good version: the pointer's version could not be loaded
    NONE = "none"  # nothing published yet: answers carry no recommendations
    UNAVAILABLE = "unavailable"  # published, but no version could be loaded: no recommendations


class ModelSource(Protocol):
    def current(self) -> RankingModel | None:
        """The live model (refreshed at most every MODEL_REFRESH_SECONDS), or None before the first."""
        ...

    @property
    def status(self) -> ModelStatus:
        """What `current()` last returned: live, a fallback, nothing published, or nothing loadable."""
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


class TrendingCounts(Protocol):
    """Live trending's hour buckets (docs/trending.md)."""

    def read(self, buckets: Sequence[str]) -> dict[str, dict[str, float]]:
        """Bucket key -> item id -> weighted count, for the buckets that exist."""
        ...


class CatalogWriter(Protocol):
    def put_items(self, items: Sequence[CatalogItem]) -> None: ...


class ShopperDataStore(StateRepository, Protocol):
    """The state store as the privacy requests need it (issue 9): erasure and the full stored item."""

    def erase(self, erasure: Erasure, expected_version: int) -> None:
        """Replace the shopper's item by an erasure marker (version `expected_version` + 1) whose
        outbox carries the tombstone; conditional like `save`: raises VersionConflict if the stored
        version is no longer `expected_version` (0: no item)."""
        ...

    def read_stored(self, user_id: str) -> StoredState | None:
        """The shopper's item with its write time, or None if there is none (strongly consistent)."""
        ...


class RuleSetStore(Protocol):
    """Named rule sets (docs/rules.md, "Named rule sets")."""

    def cached(self, name: str) -> RuleSet | None:
        """The set for serving: may be up to the store's refresh interval old; None: no such set."""
        ...

    def read(self, name: str) -> RuleSet | None:
        """The set as stored now (the admin's reads)."""
        ...

    def put(self, name: str, rule_set: RuleSet) -> None: ...

    def delete(self, name: str) -> bool:
        """Remove the set; False: there was none."""
        ...


class ImpressionLog(Protocol):
    """Where served (and shadow-scored) answers are recorded (docs/attribution.md)."""

    def record(self, impressions: Sequence[Impression]) -> None:
        """Hand the impressions to the event log. Best-effort on the request path: a failure is
        counted and logged by the adapter, never raised into an answer."""
        ...
