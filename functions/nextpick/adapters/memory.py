"""In-memory adapters: the same ports without AWS, for unit tests and per-event benchmarks."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from nextpick.domain.catalog import CatalogSnapshot, snapshot_of
from nextpick.domain.erasure import Erasure
from nextpick.domain.events import CatalogItem
from nextpick.domain.impressions import Impression
from nextpick.domain.ports import ModelStatus, RankingModel
from nextpick.domain.rules import RuleSet
from nextpick.domain.state import StoredState, UserState
from nextpick.errors import VersionConflict


class InMemoryStateRepository:
    """Same optimistic-locking semantics as the DynamoDB repository, behind one lock."""

    def __init__(self) -> None:
        self._states: dict[str, UserState] = {}
        self._lock = threading.Lock()
        self.reads = 0
        self.writes = 0
        self._updated_at: dict[str, datetime] = {}
        self._erased_at: dict[str, datetime] = {}
        # The tombstone records erasures wrote (the DynamoDB marker's outbox).
        self.outbox: list[str] = []

    def load(self, user_id: str) -> UserState:
        with self._lock:
            self.reads += 1
            return self._states.get(user_id) or UserState.new(user_id)

    def save(self, state: UserState) -> UserState:
        with self._lock:
            self.writes += 1
            stored = self._states.get(state.user_id)
            if (stored.version if stored else 0) != state.version:
                raise VersionConflict(state.user_id)
            saved = replace(state, version=state.version + 1)
            self._states[state.user_id] = saved
            self._erased_at.pop(state.user_id, None)
            self._updated_at[state.user_id] = datetime.now(UTC)
            return saved

    def erase(self, erasure: Erasure, expected_version: int) -> None:
        """The DynamoDB marker's semantics: an empty state with the next version (issue 9)."""
        with self._lock:
            self.writes += 1
            stored = self._states.get(erasure.user_id)
            if (stored.version if stored else 0) != expected_version:
                raise VersionConflict(erasure.user_id)
            self._states[erasure.user_id] = UserState(erasure.user_id, version=expected_version + 1)
            self._erased_at[erasure.user_id] = self._updated_at[erasure.user_id] = erasure.erased_at
            self.outbox.append(erasure.log_record())

    def read_stored(self, user_id: str) -> StoredState | None:
        with self._lock:
            state = self._states.get(user_id)
            if state is None:
                return None
            # Like the DynamoDB item, the state keeps its last write's outbox until the next write.
            return StoredState(
                state, self._updated_at.get(user_id), self._erased_at.get(user_id), state.outbox
            )


class InMemoryCatalog:
    def __init__(self, items: Sequence[CatalogItem] = ()) -> None:
        self._items: dict[str, CatalogItem] = {}
        self._snapshot = CatalogSnapshot.empty()
        self.put_items(items)

    def put_items(self, items: Sequence[CatalogItem]) -> None:
        if not items:
            return
        self._items.update({item.item_id: item for item in items})
        self._snapshot = snapshot_of(self._snapshot.snapshot_id + 1, self._items.values())

    def snapshot(self) -> CatalogSnapshot:
        return self._snapshot


class StaticModelSource:
    def __init__(self, model: RankingModel | None = None) -> None:
        self.model = model

    def current(self) -> RankingModel | None:
        return self.model

    @property
    def status(self) -> ModelStatus:
        return ModelStatus.NONE if self.model is None else ModelStatus.LIVE


class InMemoryRuleSetStore:
    """Named rule sets in a dict: always current (no cache to age)."""

    def __init__(self) -> None:
        self.sets: dict[str, RuleSet] = {}

    def cached(self, name: str) -> RuleSet | None:
        return self.sets.get(name)

    def read(self, name: str) -> RuleSet | None:
        return self.sets.get(name)

    def put(self, name: str, rule_set: RuleSet) -> None:
        self.sets[name] = rule_set

    def delete(self, name: str) -> bool:
        return self.sets.pop(name, None) is not None


class InMemoryImpressionLog:
    """The impression log in a list; `failing` makes every record() a counted loss (never raised),
    as the Firehose adapter's failures are."""

    def __init__(self) -> None:
        self.impressions: list[Impression] = []
        self.lost = 0
        self.failing = False
        self._lock = threading.Lock()

    def record(self, impressions: Sequence[Impression]) -> None:
        with self._lock:
            if self.failing:
                self.lost += len(impressions)
            else:
                self.impressions.extend(impressions)
