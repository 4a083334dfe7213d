"""The shopper's privacy requests (issue 9): erase everything of a shopper, and export what is held.

Erasure here is the part that is immediate: the state item becomes a marker in one conditional write,
and that write's outbox carries the tombstone to the event log. What happens to the log afterwards
(the tombstone rule, compaction) is `domain/erasure.py` and `domain/compaction.py`; docs/privacy.md
lists every place a shopper's data lives and its bound.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nextpick.domain.erasure import Erasure, iso, log_erasure_bound
from nextpick.domain.history import HistoryEntry
from nextpick.domain.ports import ShopperDataStore
from nextpick.domain.service import jittered_backoff
from nextpick.domain.state import StoredState, UserState
from nextpick.errors import ConcurrentUpdate, VersionConflict

# What else holds a shopper's data beyond the state item, for the export's pointer (docs/privacy.md).
ELSEWHERE = {
    "event_log": (
        "the S3 event log (events/, events-errors/) keeps the shopper's accepted events until they are "
        "erased and the log compacted; an operator lists them with `nextpick export-user USER_ID` "
        "(add --aws for a deployed stack)"
    ),
    "documentation": "docs/privacy.md lists every place nextpick keeps shopper data and for how long",
}


@dataclass(frozen=True)
class ErasureReceipt:
    """The answer to an erasure: when it happened and by when the event log is rewritten without it."""

    erasure: Erasure
    log_erased_by: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "user_id": self.erasure.user_id,
            "status": "erased",
            "erased_at": iso(self.erasure.erased_at),
            "log_erased_by": iso(self.log_erased_by),
        }


@dataclass
class PrivacyRequests:
    states: ShopperDataStore
    # The compaction's EventBridge schedule (`rate(...)`): the bound an erasure's answer states.
    compaction_schedule: str = "rate(6 hours)"
    max_write_attempts: int = 5
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    backoff: Callable[[int], None] = jittered_backoff

    def erase(self, user_id: str, request_id: str | None = None) -> ErasureReceipt:
        """Replace the shopper's state by an erasure marker, at once, in one conditional write whose
        outbox carries the tombstone to the event log. A shopper without state gets a marker too, so
        every erasure request is on record in the log. Repeating it erases again (a new tombstone).

        The erasure time is read after the state, so an event write that won the race is stamped
        before it and one that lost re-reads the marker and is stamped after (domain/erasure.py)."""
        attempts = 0
        for attempt in range(self.max_write_attempts):
            if attempt:
                self.backoff(attempt)
            attempts += 1
            current = self.states.load(user_id)
            erasure = Erasure(user_id, self.clock(), request_id)
            try:
                self.states.erase(erasure, current.version)
            except VersionConflict:
                continue  # an event was written meanwhile: erase that state too
            return ErasureReceipt(erasure, erasure.erased_at + log_erasure_bound(self.compaction_schedule))
        raise ConcurrentUpdate(
            f"user {user_id}: state changed concurrently on every attempt ({attempts}); retry the call"
        )

    def export(self, user_id: str) -> dict[str, Any]:
        """Everything the state table holds about the shopper, decoded, plus where else data lives.
        `state` is null when nothing is held (never seen, or erased: then `erasure` says when)."""
        stored = self.states.read_stored(user_id)
        erased_at = stored.erased_at if stored is not None else None
        holds_state = stored is not None and erased_at is None
        return {
            "user_id": user_id,
            "state": export_state(stored) if holds_state and stored is not None else None,
            "erasure": {"erased_at": iso(erased_at)} if erased_at is not None else None,
            "elsewhere": ELSEWHERE,
        }


def _time(seconds: float) -> str | None:
    return iso(datetime.fromtimestamp(seconds, UTC)) if seconds > 0 else None


def _history_entry(item_id: str, entry: HistoryEntry) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "purchases": entry.purchases,
        "interactions": entry.interactions,
        "last_seen": _time(entry.last_seen),
        "first_purchase": _time(entry.first_purchase),
        "last_purchase": _time(entry.last_purchase),
        # Decayed sums as stored: intent as of `last_seen` (14-day half-life), purchases as of
        # `last_purchase` with 7-, 30- and 120-day half-lives (domain/history.py).
        "intent": round(float(entry.intent), 6),
        "purchases_decayed": dict(
            zip(("7d", "30d", "120d"), (round(float(b), 6) for b in entry.bought), strict=True)
        ),
    }


def export_state(stored: StoredState) -> dict[str, Any]:
    """Every field of a stored state, decoded. The processed event ids are kept only as 8-byte hashes
    (domain/state.py), so only their number can be given."""
    state: UserState = stored.state
    history = state.history
    return {
        "version": state.version,
        "updated_at": iso(stored.updated_at) if stored.updated_at else None,
        "model_version": state.model_version,
        "recent_events": [
            {"item_id": e.item_id, "event_type": e.event_type.value, "strength": e.strength}
            for e in state.recent
        ],
        "purchased": list(state.purchased),
        "history": {
            "orders": history.orders,
            "last_order": _time(history.last_order),
            "items": [_history_entry(item_id, entry) for item_id, entry in history.entries.items()],
        },
        "processed_event_ids": len(state.processed_keys),
        # The event-log records of the last write, as the item holds them until the next one: the
        # state's only copy of a search's query, a review's text and an event's context.
        "last_write_events": [json.loads(record) for record in stored.last_write_records],
        "state_vector": None if state.vector is None else [round(float(v), 7) for v in state.vector],
    }
