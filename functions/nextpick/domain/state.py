"""A user's state and how events are folded into it (pure: the model is passed in)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

import numpy as np

from nextpick.domain.events import AnyEvent, EventType, Step
from nextpick.domain.history import HISTORY_CAPACITY, ItemHistory

if TYPE_CHECKING:
    from nextpick.domain.ports import RankingModel


# Bytes of an event key. 8 bytes of BLAKE2b keep a user's window of processed events 5x smaller than
# the ids themselves (the state item is rewritten, and billed per KB, on every event); a collision
# within one user's window of a few hundred keys has odds around 1e-15.
EVENT_KEY_BYTES = 8


def event_key(event_id: str) -> bytes:
    """What the state remembers of a processed event id, to recognise its redelivery."""
    return hashlib.blake2b(event_id.encode(), digest_size=EVENT_KEY_BYTES).digest()


class EventStatus(StrEnum):
    ACCEPTED = "accepted"
    # Same event_id seen before: nothing changes, the answer is what the first delivery got.
    DUPLICATE = "duplicate"


@dataclass(frozen=True)
class RecentEvent:
    """What is kept of an event to rebuild the state through a newer model: one fold step
    (`nextpick.domain.events.Step`); a search keeps one per matched and clicked item."""

    item_id: str
    event_type: EventType
    strength: float

    def to_compact(self) -> list[object]:
        return [self.item_id, self.event_type.value, self.strength]

    @classmethod
    def from_compact(cls, raw: list[object]) -> RecentEvent:
        item_id, event_type, strength = raw
        return cls(str(item_id), EventType(str(event_type)), float(str(strength)))


@dataclass(frozen=True)
class StateLimits:
    recent_events: int = 50
    processed_ids: int = 200
    purchased_items: int = 200
    history_items: int = HISTORY_CAPACITY


@dataclass(frozen=True)
class UserState:
    user_id: str
    # None until a model has folded this user's events (no model was live yet).
    vector: np.ndarray | None = None
    model_version: str | None = None
    recent: tuple[RecentEvent, ...] = ()
    # Most recent last, no repeats.
    purchased: tuple[str, ...] = ()
    # `event_key`s of the last processed events, oldest first.
    processed_keys: tuple[bytes, ...] = ()
    # The shopper's own items (contract v2's history input), by item id: model-independent, so it
    # survives retrains and catalog refreshes as it is.
    history: ItemHistory[str] = field(default_factory=ItemHistory, repr=False, compare=False)
    # Optimistic lock: the version stored in DynamoDB; 0 means "not stored yet".
    version: int = 0
    # Log records of the events accepted by the write that produced this state; the DynamoDB
    # stream carries them to the event log, so an accepted event cannot miss the log.
    outbox: tuple[str, ...] = field(default=(), repr=False)

    @classmethod
    def new(cls, user_id: str) -> UserState:
        return cls(user_id=user_id)

    @property
    def is_new(self) -> bool:
        """No event of this shopper is held: never seen, or erased (an erasure marker loads as a state
        with a version and nothing else). Nothing personal to rank from. Every accepted event's fold
        steps are kept in `recent`, so a stored state with events that moved it always has some (a
        search that matched nothing and had no clicks moves nothing, so leaves a shopper new)."""
        return not self.recent

    def is_current_for(self, model: RankingModel) -> bool:
        return (
            self.vector is not None
            and self.model_version == model.version
            and self.vector.shape == (model.state_dim,)
        )


Interaction = tuple[int, int, float]
"""(vocabulary index, event-type code, strength): one event as the model contract's `update` takes it."""

TimedInteraction = tuple[int, int, float, float]
"""An Interaction plus its timestamp (unix seconds): what the v2 history input is built from."""


class StateUpdater(Protocol):
    """Anything with the contract's `update` signature: serving's LiteRT model, training's numpy
    reference, the exported bytes under evaluation."""

    @property
    def state_dim(self) -> int: ...
    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray: ...


def fold_interactions(
    model: StateUpdater, interactions: Iterable[Interaction], state: np.ndarray | None = None
) -> np.ndarray:
    """Fold events through `update`, from `state` or from zeros (a new user). The one fold that serving,
    training, evaluation and the benchmarks share, so a history folds the same way everywhere."""
    if state is None:
        state = np.zeros(model.state_dim, dtype=np.float32)
    for item, event_type, strength in interactions:
        state = model.update(state, item, event_type, strength)
    return state


def fold(model: RankingModel, state: np.ndarray | None, events: Iterable[RecentEvent]) -> np.ndarray:
    """Fold stored events (item ids) through `model`, mapping ids to its vocabulary."""
    interactions = ((model.item_index(e.item_id), e.event_type.code, e.strength) for e in events)
    return fold_interactions(model, interactions, state)


def vector_for(state: UserState, model: RankingModel) -> np.ndarray:
    """The user's state vector under `model`, rebuilt from the recent events if it was computed by
    another version (after a retrain), so nobody falls back to a cold-start list."""
    if state.is_current_for(model):
        assert state.vector is not None
        return state.vector
    return fold(model, None, state.recent)


def apply_events(
    state: UserState,
    events: Sequence[AnyEvent],
    model: RankingModel | None,
    limits: StateLimits,
    received_at: datetime,
) -> tuple[UserState, list[EventStatus]]:
    """Fold this user's new events into their state, in order, each as its steps (`steps()`: a search
    must be resolved first, domain/search.py). Duplicates change nothing. An accepted event with no
    steps (a search that matched nothing, without clicks) is remembered and logged, and moves nothing."""
    seen = set(state.processed_keys)
    vector = vector_for(state, model) if model is not None else None
    recent, purchased, processed = list(state.recent), list(state.purchased), list(state.processed_keys)
    history = state.history.copy()
    history.capacity = limits.history_items
    outbox: list[str] = []
    statuses: list[EventStatus] = []
    for event in events:
        key = event_key(event.event_id)
        if key in seen:
            statuses.append(EventStatus.DUPLICATE)
            continue
        seen.add(key)
        statuses.append(EventStatus.ACCEPTED)
        for step in event.steps():
            _apply_step(step, event.timestamp, recent, history, purchased)
            if model is not None and vector is not None:
                vector = fold(model, vector, recent[-1:])
        processed.append(key)
        outbox.append(json.dumps(event.log_record(received_at), separators=(",", ":")))
    if not outbox:
        return state, statuses
    new_state = replace(
        state,
        vector=vector,
        model_version=model.version if model is not None else None,
        recent=tuple(recent[-limits.recent_events :]),
        purchased=tuple(purchased[-limits.purchased_items :]),
        processed_keys=tuple(processed[-limits.processed_ids :]),
        history=history,
        outbox=tuple(outbox),
    )
    return new_state, statuses


def _apply_step(
    step: Step,
    timestamp: datetime,
    recent: list[RecentEvent],
    history: ItemHistory[str],
    purchased: list[str],
) -> None:
    recent.append(RecentEvent(step.item_id, step.event_type, step.strength))
    history.observe(step.item_id, step.event_type.code, step.strength, timestamp.timestamp())
    if step.event_type is EventType.PURCHASE:
        if step.item_id in purchased:
            purchased.remove(step.item_id)
        purchased.append(step.item_id)


@dataclass(frozen=True)
class StoredState:
    """A state item as stored, for the shopper's data export: the state, when it was last written, and
    when the shopper was erased if the item is an erasure marker (then the state is empty)."""

    state: UserState
    updated_at: datetime | None = None
    erased_at: datetime | None = None
    # The log records of the last write, kept on the item until the next write replaces them (they
    # carry what the state proper does not: a search's query, a review's text, an event's context).
    last_write_records: tuple[str, ...] = ()
