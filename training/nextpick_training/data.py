"""The retrain job's view of the event log: S3 objects in, model-ready sequences out.

The log is what the Firehose stream writes under `events/year=YYYY/month=MM/day=DD/...`: newline
terminated JSON records, each exactly `TrackedEvent.log_record(received_at)`. Delivery is
at-least-once, so the same `event_id` can appear in several objects; it is counted once.

Everything here is pure except `read_event_log`, which takes an injected S3 client.

The item vocabulary and the held-out split are built together (`build_dataset`): the last basket of
every user with two or more baskets (`model.batches.basket_starts`: one order, or one event) is held
out for the gate, and the vocabulary is the catalog plus the items of the remaining (training)
events. A held-out item neither mentions maps to index 0 (unknown), exactly as serving does.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from pydantic import ValidationError

from nextpick.domain.events import CatalogItem, EventType, TrackedEvent
from nextpick.domain.history import EVENT_INTENT
from nextpick.domain.item_attributes import item_tokens
from nextpick.domain.state import TimedInteraction
from nextpick_training.model.batches import basket_starts

UNKNOWN_ITEM = 0

_PARTITION = re.compile(r"year=(\d{4})/month=(\d{1,2})/day=(\d{1,2})/")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One event-log line, validated as a `TrackedEvent`, reduced to what training needs.

    (A full pydantic event per record would cost several times the memory; a 90-day window can hold
    millions of events.)"""

    event_id: str
    user_id: str
    item_id: str
    event_type: EventType
    strength: float
    timestamp: datetime
    received_at: datetime

    @classmethod
    def of(cls, event: TrackedEvent, received_at: datetime) -> LogRecord:
        return cls(
            event_id=event.event_id,
            user_id=event.user_id,
            item_id=event.item_id,
            event_type=event.event_type,
            strength=event.strength,
            timestamp=event.timestamp,
            received_at=received_at,
        )

    @property
    def order_key(self) -> tuple[datetime, datetime, str]:
        """Per-user order: event time, then arrival time, then id (total and deterministic)."""
        return (self.timestamp, self.received_at, self.event_id)

    @property
    def interaction_fields(self) -> tuple[int, float]:
        """(event type code, strength) exactly as serving feeds them to the model's `update`."""
        return (self.event_type.code, self.strength)


@dataclass
class LogStats:
    """What reading the log found (all counts are lines/records, not distinct events)."""

    objects: int = 0
    objects_skipped: int = 0
    bytes: int = 0
    lines: int = 0
    malformed: int = 0
    duplicates: int = 0
    outside_window: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("received_at must be an ISO-8601 string")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def parse_line(line: str | bytes) -> LogRecord | None:
    """One log line -> record; None if it is blank. Raises ValueError if it is malformed."""
    text = line.decode("utf-8") if isinstance(line, bytes) else line
    text = text.strip()
    if not text:
        return None
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("a log record must be a JSON object")
        fields = dict(raw)
        received_at = _parse_time(fields.pop("received_at", None))
        event = TrackedEvent.model_validate(fields)
    except (ValidationError, json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise ValueError(str(exc)) from exc
    return LogRecord.of(event, received_at)


def parse_lines(lines: Iterable[str | bytes], stats: LogStats | None = None) -> list[LogRecord]:
    """Parse many lines, dropping (and counting in `stats.malformed`) the ones that are not records."""
    stats = stats if stats is not None else LogStats()
    records: list[LogRecord] = []
    for line in lines:
        if not line.strip():
            continue
        stats.lines += 1
        try:
            record = parse_line(line)
        except ValueError:
            stats.malformed += 1
            continue
        if record is not None:
            records.append(record)
    return records


def object_lines(body: bytes) -> list[bytes]:
    """The lines of one log object (gzip-compressed objects are accepted too)."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return body.splitlines()


def deduplicate(records: Iterable[LogRecord], stats: LogStats | None = None) -> list[LogRecord]:
    """One record per `event_id`: the earliest `received_at` wins (the first seen on a tie)."""
    stats = stats if stats is not None else LogStats()
    kept: dict[str, LogRecord] = {}
    for record in records:
        event_id = record.event_id
        seen = kept.get(event_id)
        if seen is None:
            kept[event_id] = record
            continue
        stats.duplicates += 1
        if record.received_at < seen.received_at:
            kept[event_id] = record
    return list(kept.values())


def in_window(records: Iterable[LogRecord], start: datetime, end: datetime) -> list[LogRecord]:
    """The records whose event `timestamp` lies in [start, end]."""
    return [r for r in records if start <= r.timestamp <= end]


def partition_day(key: str) -> date | None:
    """The day of a Firehose partition key (`.../year=2026/month=11/day=28/...`), if it has one."""
    match = _PARTITION.search(key)
    if match is None:
        return None
    try:
        return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def list_log_keys(s3: Any, bucket: str, prefix: str) -> Iterator[str]:
    """Every object key under the prefix (all pages), in S3's (lexicographic) order."""
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            key = entry["Key"]
            if not key.endswith("/"):
                yield key


def read_event_log(
    s3: Any,
    bucket: str,
    prefix: str,
    start: datetime,
    end: datetime,
    stats: LogStats | None = None,
) -> list[LogRecord]:
    """Every distinct event of the log whose `timestamp` lies in [start, end].

    Objects are read in key order. An object in a partition more than one day before `start` is
    skipped without being downloaded: Firehose partitions by arrival time and an accepted event is
    never stamped more than a few minutes after it arrived, so such an object cannot hold an event
    of the window. Keys without a partition are always read.
    """
    stats = stats if stats is not None else LogStats()
    oldest_day = (start - timedelta(days=1)).date()
    records: list[LogRecord] = []
    for key in list_log_keys(s3, bucket, prefix):
        day = partition_day(key)
        if day is not None and day < oldest_day:
            stats.objects_skipped += 1
            continue
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        stats.objects += 1
        stats.bytes += len(body)
        records.extend(parse_lines(object_lines(body), stats))
    unique = deduplicate(records, stats)
    windowed = in_window(unique, start, end)
    stats.outside_window += len(unique) - len(windowed)
    return windowed


def user_timelines(records: Iterable[LogRecord]) -> dict[str, list[LogRecord]]:
    """Each user's records in (timestamp, received_at, event_id) order; users sorted by id."""
    by_user: dict[str, list[LogRecord]] = defaultdict(list)
    for record in records:
        by_user[record.user_id].append(record)
    return {user: sorted(by_user[user], key=lambda r: r.order_key) for user in sorted(by_user)}


TRENDING_HALF_LIFE_DAYS = 7.0
TRENDING_SIZE = 500


def trending_items(
    records: Iterable[LogRecord], now: datetime, half_life_days: float = TRENDING_HALF_LIFE_DAYS
) -> list[list[Any]]:
    """`[[item_id, score], ...]`, best first: events weighted by their intent (`EVENT_INTENT`; only
    positive intent counts) and decayed with a 7-day half-life to `now`. What a shopper with no events
    sees (published in the manifest as `trending`)."""
    scores: dict[str, float] = defaultdict(float)
    for record in records:
        intent = EVENT_INTENT[record.event_type]
        if intent <= 0:
            continue
        age_days = max(0.0, (now - record.timestamp).total_seconds()) / 86_400
        scores[record.item_id] += intent * 0.5 ** (age_days / half_life_days)
    best = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:TRENDING_SIZE]
    return [[item_id, round(score, 6)] for item_id, score in best]


def build_vocabulary(item_ids: Iterable[str], catalog_ids: Iterable[str] = ()) -> list[str | None]:
    """`[None, most frequent item, ..., then catalog items without events, by id]`.

    The vocabulary is the catalog plus whatever the events mention: every catalog item is in the
    published model, including items that never had an event (their vectors come from attributes).
    Index 0 is the unknown item; ties are broken by item id."""
    counts = Counter(item_ids)
    ordered = sorted(counts, key=lambda item: (-counts[item], item))
    unseen = sorted(set(catalog_ids) - set(counts))
    return [None, *ordered, *unseen]


def vocabulary_index(items: Sequence[str | None]) -> dict[str, int]:
    return {item: index for index, item in enumerate(items) if item is not None}


def encode(timeline: Iterable[LogRecord], index: Mapping[str, int]) -> list[TimedInteraction]:
    """A user's records as timed model interactions; items outside the vocabulary become index 0."""
    out: list[TimedInteraction] = []
    for record in timeline:
        event_type, strength = record.interaction_fields
        out.append(
            (index.get(record.item_id, UNKNOWN_ITEM), event_type, strength, record.timestamp.timestamp())
        )
    return out


def catalog_tokens(items: Sequence[str | None], catalog: Iterable[CatalogItem]) -> list[list[str]]:
    """Each vocabulary item's attribute tokens (`nextpick.domain.item_attributes`); [] if not in the catalog."""
    by_id = {item.item_id: item for item in catalog}
    tokens: list[list[str]] = []
    for item_id in items:
        entry = by_id.get(item_id) if item_id is not None else None
        tokens.append(item_tokens(entry.category, entry.price, entry.attributes) if entry else [])
    return tokens


@dataclass
class Dataset:
    """Model-ready data of one training window.

    `train_sequences[u]` is user `users[u]`'s events minus the held-out last basket (all of them when
    the user has a single basket); it only contains vocabulary items (indices >= 1).
    The gate's held-out set is, for every user with two or more baskets, the history
    `train_sequences[u]`, the time `holdout_nows[j]` of the held-out basket and its distinct items
    `holdout_targets[j]` (0 where the training events and the catalog never mention the item).
    `holdout_item_ids[j]` are the target ids, so another model's vocabulary can map them.
    """

    items: list[str | None]
    users: list[str]
    train_sequences: list[list[TimedInteraction]]
    item_tokens: list[list[str]] = field(default_factory=list)
    holdout_users: list[int] = field(default_factory=list)
    holdout_targets: list[list[int]] = field(default_factory=list)
    holdout_item_ids: list[list[str]] = field(default_factory=list)
    holdout_nows: list[float] = field(default_factory=list)
    events: int = 0
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None

    @property
    def num_items(self) -> int:
        """Vocabulary size including index 0 (the contract's `num_items`)."""
        return len(self.items)

    @property
    def train_events(self) -> int:
        return sum(len(s) for s in self.train_sequences)

    @property
    def holdout_histories(self) -> list[list[TimedInteraction]]:
        return [self.train_sequences[u] for u in self.holdout_users]

    def holdout_history_ids(self) -> list[list[tuple[str, int, float, float]]]:
        """Held-out histories with item ids, for mapping into another vocabulary."""
        return [
            [(self._item_id(i), t, s, ts) for i, t, s, ts in self.train_sequences[u]]
            for u in self.holdout_users
        ]

    def with_holdout_sample(self, max_users: int) -> Dataset:
        """The same data with at most `max_users` held-out users, chosen by a hash of the user id
        (deterministic, unrelated to activity); training data is unchanged."""
        if len(self.holdout_users) <= max_users:
            return self

        def rank(j: int) -> str:
            return hashlib.sha256(self.users[self.holdout_users[j]].encode()).hexdigest()

        keep = sorted(sorted(range(len(self.holdout_users)), key=rank)[:max_users])
        return dataclasses.replace(
            self,
            holdout_users=[self.holdout_users[j] for j in keep],
            holdout_targets=[self.holdout_targets[j] for j in keep],
            holdout_item_ids=[self.holdout_item_ids[j] for j in keep],
            holdout_nows=[self.holdout_nows[j] for j in keep],
        )

    def _item_id(self, index: int) -> str:
        item = self.items[index]
        assert item is not None
        return item


def _last_basket_start(timeline: Sequence[LogRecord]) -> int:
    """Where the user's last basket starts (0 when the whole timeline is one basket)."""
    codes = np.fromiter((r.event_type.code for r in timeline), dtype=np.int32, count=len(timeline))
    times = np.fromiter((r.timestamp.timestamp() for r in timeline), dtype=np.float64, count=len(timeline))
    return int(basket_starts(codes, times)[-1])


def build_dataset(
    records: Iterable[LogRecord], catalog: Sequence[CatalogItem] = (), hold_out_last: bool = True
) -> Dataset:
    """Timelines -> held-out last basket -> vocabulary (catalog + training events) -> encoded sequences."""
    timelines = user_timelines(records)
    users = list(timelines)
    train_parts: list[list[LogRecord]] = []
    held: list[tuple[int, list[LogRecord]]] = []
    first: datetime | None = None
    last: datetime | None = None
    events = 0
    for u, user in enumerate(users):
        timeline = timelines[user]
        events += len(timeline)
        first = timeline[0].timestamp if first is None else min(first, timeline[0].timestamp)
        last = timeline[-1].timestamp if last is None else max(last, timeline[-1].timestamp)
        cut = _last_basket_start(timeline) if hold_out_last else 0
        if cut > 0:
            train_parts.append(timeline[:cut])
            held.append((u, timeline[cut:]))
        else:
            train_parts.append(timeline)
    items = build_vocabulary((r.item_id for part in train_parts for r in part), (c.item_id for c in catalog))
    index = vocabulary_index(items)
    return Dataset(
        items=items,
        users=users,
        train_sequences=[encode(part, index) for part in train_parts],
        item_tokens=catalog_tokens(items, catalog),
        holdout_users=[u for u, _ in held],
        holdout_targets=[sorted({index.get(r.item_id, UNKNOWN_ITEM) for r in basket}) for _, basket in held],
        holdout_item_ids=[sorted({r.item_id for r in basket}) for _, basket in held],
        holdout_nows=[basket[0].timestamp.timestamp() for _, basket in held],
        events=events,
        first_timestamp=first,
        last_timestamp=last,
    )
