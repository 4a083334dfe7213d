"""User state in DynamoDB: one strongly consistent `GetItem` per load, one conditional `PutItem` per save.

One item per user. Every accepted event rewrites the whole item and writes are billed per KB, so the
layout is compact and built by hand with the low-level client (no TypeSerializer round trip):

| attribute       | type    | content                                                                 |
|-----------------|---------|-------------------------------------------------------------------------|
| `user_id`       | S       | partition key                                                           |
| `vector`        | B       | the state vector, float32 little-endian (`state_dim` x 4 bytes); absent |
|                 |         | until a model has folded this user's events                             |
| `model_version` | S       | version of the model that computed `vector`; absent when it is None     |
| `recent`        | S       | compact JSON list of `RecentEvent.to_compact()` (`[item_id, type,       |
|                 |         | strength]`), oldest first: what a newer model re-folds after a retrain  |
|                 |         | (one per fold step: a search's matched and clicked items, a review's rate)|
| `purchased`     | L of S  | purchased item ids, most recent last, no repeats                        |
| `processed`     | B       | `event_key`s (8 bytes each, concatenated) of the events already applied, |
|                 |         | oldest first: a redelivered event changes nothing; absent when none     |
| `history`       | B       | the shopper's item map (`domain/history.py`), `HISTORY_ENTRY` per item: |
|                 |         | id length (1 byte), id (UTF-8), purchases and interactions (uint16,     |
|                 |         | saturating), last seen and last purchase (uint32 unix seconds), decayed |
|                 |         | intent (float32), first purchase (uint32), purchases decayed with 7-,  |
|                 |         | 30- and 120-day half-lives (3 x float32); after an 8-byte header (order |
|                 |         | count, last order time); ~49 bytes for a 16-character id; absent if empty|
| `outbox`        | L of S  | JSON log records of the events *this write* accepted; the table's       |
|                 |         | stream carries them to the event log (handlers/log_shipper.py)          |
| `version`       | N       | optimistic lock: 1 after the first write, +1 on every write             |
| `updated_at`    | S       | ISO-8601 UTC time of the write                                          |
| `erased_at`     | S       | only on an erasure marker (issue 9): when the shopper was erased        |
| `expires_at`    | N       | only on an erasure marker: unix seconds for DynamoDB's TTL              |

An **erasure marker** (`DynamoDbStateRepository.erase`) replaces the whole item: `user_id`, `version`,
`updated_at`, `erased_at`, `expires_at` and an outbox with the one tombstone record, nothing else. It
loads as an empty state carrying its version, so a returning shopper starts from nothing and their
first write (a whole-item PutItem) overwrites the marker, `expires_at` included.

The outbox belongs to the write that produced it: a loaded state has an empty outbox, so saving a
state that was only read can never ship the same log records twice."""

from __future__ import annotations

import json
import struct
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from nextpick.adapters import LazyClient, raise_translated
from nextpick.domain.erasure import Erasure, iso, parse_time
from nextpick.domain.history import HistoryEntry, ItemHistory
from nextpick.domain.state import EVENT_KEY_BYTES, RecentEvent, StateLimits, StoredState, UserState

# Explicit byte order: the bytes must mean the same thing on every machine that ever reads them.
VECTOR_DTYPE = np.dtype("<f4")
HISTORY_ENTRY = struct.Struct("<HHIIfIfff")
# Before the entries: the shopper's order count and the last order's time.
HISTORY_HEADER = struct.Struct("<II")
_UINT16_MAX = 0xFFFF


def encode_history(history: ItemHistory[str]) -> bytes:
    parts = [HISTORY_HEADER.pack(history.orders, int(history.last_order))]
    for item_id, e in history.entries.items():
        raw = item_id.encode()
        parts.append(bytes([len(raw)]) + raw)
        parts.append(
            HISTORY_ENTRY.pack(
                min(e.purchases, _UINT16_MAX),
                min(e.interactions, _UINT16_MAX),
                int(e.last_seen),
                int(e.last_purchase),
                e.intent,
                int(e.first_purchase),
                *e.bought,
            )
        )
    return b"".join(parts)


def decode_history(blob: bytes, capacity: int) -> ItemHistory[str]:
    entries: dict[str, HistoryEntry] = {}
    if not blob:
        return ItemHistory(entries, capacity)
    orders, last_order = HISTORY_HEADER.unpack_from(blob, 0)
    position = HISTORY_HEADER.size
    while position < len(blob):
        length = blob[position]
        item_id = blob[position + 1 : position + 1 + length].decode()
        position += 1 + length
        purchases, interactions, seen, last, intent, first, b7, b30, b120 = HISTORY_ENTRY.unpack_from(
            blob, position
        )
        position += HISTORY_ENTRY.size
        entries[item_id] = HistoryEntry(
            purchases, interactions, float(seen), float(last), intent, float(first), (b7, b30, b120)
        )
    return ItemHistory(entries, capacity, orders, float(last_order))


def encode_state(state: UserState, *, updated_at: datetime | None = None) -> dict[str, Any]:
    """The DynamoDB item (low-level attribute values) for `state`, with `state.version` as is."""
    item: dict[str, Any] = {
        "user_id": {"S": state.user_id},
        "recent": {"S": json.dumps([event.to_compact() for event in state.recent], separators=(",", ":"))},
        "purchased": {"L": [{"S": item_id} for item_id in state.purchased]},
        "outbox": {"L": [{"S": record} for record in state.outbox]},
        "version": {"N": str(state.version)},
        "updated_at": {"S": (updated_at or datetime.now(UTC)).astimezone(UTC).isoformat()},
    }
    if state.processed_keys:
        item["processed"] = {"B": b"".join(state.processed_keys)}
    if state.history.entries:
        item["history"] = {"B": encode_history(state.history)}
    if state.vector is not None:
        item["vector"] = {"B": np.ascontiguousarray(state.vector, dtype=VECTOR_DTYPE).tobytes()}
    if state.model_version is not None:
        item["model_version"] = {"S": state.model_version}
    return item


def decode_state(item: dict[str, Any], history_capacity: int = StateLimits.history_items) -> UserState:
    """The `UserState` stored in `item` (as returned by the low-level client); its outbox is empty."""
    vector = None
    if "vector" in item:
        # astype copies: the result is writable and in native byte order, like any other state vector.
        vector = np.frombuffer(item["vector"]["B"], dtype=VECTOR_DTYPE).astype(np.float32)
    recent = item.get("recent", {}).get("S")
    return UserState(
        user_id=item["user_id"]["S"],
        vector=vector,
        model_version=item["model_version"]["S"] if "model_version" in item else None,
        recent=tuple(RecentEvent.from_compact(raw) for raw in json.loads(recent)) if recent else (),
        purchased=_strings(item, "purchased"),
        processed_keys=_keys(item.get("processed", {}).get("B", b"")),
        history=decode_history(item.get("history", {}).get("B", b""), history_capacity),
        version=int(item["version"]["N"]),
    )


def _keys(blob: bytes) -> tuple[bytes, ...]:
    return tuple(blob[i : i + EVENT_KEY_BYTES] for i in range(0, len(blob), EVENT_KEY_BYTES))


def _strings(item: dict[str, Any], name: str) -> tuple[str, ...]:
    return tuple(value["S"] for value in item.get(name, {}).get("L", ()))


class DynamoDbStateRepository:
    """`StateRepository` on the state table (partition key `user_id`, stream NEW_IMAGE)."""

    def __init__(self, table_name: str, limits: StateLimits | None = None, client: Any = None) -> None:
        self._table_name = table_name
        self._limits = limits or StateLimits()
        self._client = LazyClient("dynamodb", client)

    def load(self, user_id: str) -> UserState:
        item = self._get(user_id)
        return decode_state(item, self._limits.history_items) if item else UserState.new(user_id)

    def _get(self, user_id: str) -> dict[str, Any] | None:
        try:
            # Strongly consistent: the version read here is the one the conditional save compares with,
            # so a stale read would only buy a guaranteed VersionConflict.
            response = self._client.get().get_item(
                TableName=self._table_name, Key={"user_id": {"S": user_id}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as e:
            raise_translated(e, self._table_name)
        item: dict[str, Any] | None = response.get("Item")
        return item

    def save(self, state: UserState) -> UserState:
        stored = replace(self._within_limits(state), version=state.version + 1)
        self._put_if_version(encode_state(stored), state.version)
        return stored

    def _put_if_version(self, item: dict[str, Any], expected_version: int) -> None:
        """PutItem, conditional on the stored version still being `expected_version` (0: no item)."""
        condition: dict[str, Any]
        if expected_version == 0:
            condition = {"ConditionExpression": "attribute_not_exists(user_id)"}
        else:
            condition = {
                "ConditionExpression": "#v = :expected",
                # `version` is a DynamoDB reserved word.
                "ExpressionAttributeNames": {"#v": "version"},
                "ExpressionAttributeValues": {":expected": {"N": str(expected_version)}},
            }
        try:
            self._client.get().put_item(TableName=self._table_name, Item=item, **condition)
        except (ClientError, BotoCoreError) as e:
            raise_translated(e, self._table_name)

    def _within_limits(self, state: UserState) -> UserState:
        # The domain already trims; this keeps the item bounded (DynamoDB's 400 KB) whatever the caller.
        limits = self._limits
        return replace(
            state,
            recent=state.recent[-limits.recent_events :],
            purchased=state.purchased[-limits.purchased_items :],
            processed_keys=state.processed_keys[-limits.processed_ids :],
        )

    # ------------------------------------------------------------------ privacy requests (issue 9)

    def erase(self, erasure: Erasure, expected_version: int) -> None:
        """The shopper's item replaced by an erasure marker in one conditional PutItem (see the module
        docstring); raises VersionConflict if the item changed since `expected_version` was read."""
        self._put_if_version(encode_erasure_marker(erasure, expected_version + 1), expected_version)

    def read_stored(self, user_id: str) -> StoredState | None:
        item = self._get(user_id)
        if not item:
            return None
        return StoredState(
            state=decode_state(item, self._limits.history_items),
            updated_at=parse_time(item["updated_at"]["S"]) if "updated_at" in item else None,
            erased_at=parse_time(item["erased_at"]["S"]) if "erased_at" in item else None,
            last_write_records=tuple(value["S"] for value in item.get("outbox", {}).get("L", ())),
        )


def encode_erasure_marker(erasure: Erasure, version: int) -> dict[str, Any]:
    """The marker item that replaces an erased shopper's state: nothing of theirs but the id."""
    return {
        "user_id": {"S": erasure.user_id},
        "version": {"N": str(version)},
        "updated_at": {"S": erasure.erased_at.astimezone(UTC).isoformat()},
        "erased_at": {"S": iso(erasure.erased_at)},
        "expires_at": {"N": str(erasure.marker_expires_at)},
        "outbox": {"L": [{"S": erasure.log_record()}]},
    }


def stream_record_outbox(record: dict[str, Any]) -> list[str]:
    """The event-log records a state-table stream record carries (its new image's `outbox`); none for
    a REMOVE. Reads the one raw attribute: deserialising the whole image (vector, ids) would be waste."""
    if record.get("eventName") == "REMOVE":
        return []
    image = record.get("dynamodb", {}).get("NewImage", {})
    return [value["S"] for value in image.get("outbox", {}).get("L", ())]
