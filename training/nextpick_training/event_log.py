"""The retrain job's reading of the event log: S3 objects in, the distinct events a retrain may use out.

The log is what the Firehose stream writes under `events/year=YYYY/month=MM/day=DD/...`: newline
terminated JSON lines, each either an event record, exactly the event's `log_record(received_at)` (a
search with the `matched_items` it was resolved to at ingest),
or a tombstone, `Erasure.log_record()` (`{"type": "erasure", "user_id", "erased_at"}`: issue 9).
Reading applies, in this order:

1. **erasure**: every event of an erased shopper received at or before their (latest) erasure is
   dropped, by the one rule `nextpick.domain.erasure.Tombstones.erases`; their events received after
   it are a returning shopper's new life and stay;
2. **de-duplication** by `(user_id, event_id)` (per fold step), as serving keys its duplicates per shopper: delivery
   is at-least-once, so the same event can appear in several objects and is counted once, while two
   shoppers whose events share an id are two events;
3. the **window**, by the events' own `timestamp`.

Everything here is pure except `read_event_log`, which takes an injected S3 client.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from nextpick.domain.erasure import Erasure, Tombstones, is_tombstone_shaped, parse_time, tombstone_of
from nextpick.domain.events import AnyEvent, EventType, stored_event
from nextpick.domain.impressions import is_impression_record

_PARTITION = re.compile(r"year=(\d{4})/month=(\d{1,2})/day=(\d{1,2})/")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One fold step of an event-log line, validated as a shopper event, reduced to what training needs.

    Most events are one step; a search is one per matched and clicked item, as its record's stored
    resolution says (`nextpick.domain.events.SearchEvent.steps`, the helper serving folds with), and
    none if it matched nothing and has no clicks. `step` numbers an event's steps from 0.

    (A full pydantic event per record would cost several times the memory; a 90-day window can hold
    millions of events.)"""

    event_id: str
    user_id: str
    item_id: str
    event_type: EventType
    strength: float
    timestamp: datetime
    received_at: datetime
    step: int = 0
    # False for a search's matched items (the query's reading, not an action on the item).
    observed: bool = True

    @classmethod
    def of(cls, event: AnyEvent, received_at: datetime) -> tuple[LogRecord, ...]:
        return tuple(
            cls(
                event_id=event.event_id,
                user_id=event.user_id,
                item_id=step.item_id,
                event_type=step.event_type,
                strength=step.strength,
                timestamp=event.timestamp,
                received_at=received_at,
                step=position,
                observed=step.observed,
            )
            for position, step in enumerate(event.steps())
        )

    @property
    def order_key(self) -> tuple[datetime, datetime, str, int]:
        """Per-user order: event time, then arrival time, then id, then step (total and deterministic)."""
        return (self.timestamp, self.received_at, self.event_id, self.step)

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
    # Tombstone lines read, and event records they erased (issue 9).
    tombstones: int = 0
    erased: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def parse_line(line: str | bytes) -> tuple[LogRecord, ...] | Erasure | None:
    """One log line -> its event's fold steps or a tombstone; None if it is blank or an impression
    (the answers `nextpick report` reads, domain/impressions.py). Raises ValueError
    if it is malformed (not JSON, not an object, neither a valid event nor a valid tombstone)."""
    text = line.decode("utf-8") if isinstance(line, bytes) else line
    text = text.strip()
    if not text:
        return None
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("a log record must be a JSON object")
        if is_tombstone_shaped(raw):
            return tombstone_of(raw)
        if is_impression_record(raw):
            return None  # what was served, not what a shopper did (docs/attribution.md)
        fields = dict(raw)
        received_at = parse_time(fields.pop("received_at", None))
        event = stored_event(fields)
    except (ValidationError, json.JSONDecodeError, UnicodeDecodeError, TypeError) as exc:
        raise ValueError(str(exc)) from exc
    return LogRecord.of(event, received_at)


def parse_lines(
    lines: Iterable[str | bytes], stats: LogStats | None = None, tombstones: Tombstones | None = None
) -> list[LogRecord]:
    """The event records among many lines. Malformed lines are dropped (and counted in
    `stats.malformed`); tombstones are counted and added to `tombstones`, not returned."""
    stats = stats if stats is not None else LogStats()
    records: list[LogRecord] = []
    for line in lines:
        if not line.strip():
            continue
        stats.lines += 1
        try:
            parsed = parse_line(line)
        except ValueError:
            stats.malformed += 1
            continue
        if isinstance(parsed, Erasure):
            stats.tombstones += 1
            if tombstones is not None:
                tombstones.add(parsed)
        elif parsed is not None:
            records.extend(parsed)
    return records


def object_lines(body: bytes) -> list[bytes]:
    """The lines of one log object (gzip-compressed objects are accepted too)."""
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    return body.splitlines()


def without_erased(
    records: Sequence[LogRecord], tombstones: Tombstones, stats: LogStats | None = None
) -> list[LogRecord]:
    """The records the tombstones do not erase (`nextpick.domain.erasure`'s rule), counted in
    `stats.erased`. Applied before de-duplication: a copy of an erased event is erased as well."""
    stats = stats if stats is not None else LogStats()
    kept = [r for r in records if not tombstones.erases(r.user_id, r.received_at)]
    stats.erased += len(records) - len(kept)
    return kept


def deduplicate(records: Iterable[LogRecord], stats: LogStats | None = None) -> list[LogRecord]:
    """One record per `(user_id, event_id, step)`: the earliest `received_at` wins (the first seen on a
    tie). Every copy of an event carries the same steps (a search its stored resolution)."""
    stats = stats if stats is not None else LogStats()
    kept: dict[tuple[str, str, int], LogRecord] = {}
    for record in records:
        key = (record.user_id, record.event_id, record.step)
        seen = kept.get(key)
        if seen is None:
            kept[key] = record
            continue
        stats.duplicates += 1
        if record.received_at < seen.received_at:
            kept[key] = record
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
    """Every distinct, not erased event of the log whose `timestamp` lies in [start, end].

    Objects are read in key order. An object in a partition more than one day before `start` is
    skipped without being downloaded: Firehose partitions by arrival time and an accepted event is
    never stamped more than a few minutes after it arrived, so such an object cannot hold an event
    of the window. A tombstone in such an object is skipped too, safely: its erasure is older than
    `start` - 1 day, so every event it erases was stamped before `start`. Keys without a partition
    are always read.
    """
    stats = stats if stats is not None else LogStats()
    oldest_day = (start - timedelta(days=1)).date()
    records: list[LogRecord] = []
    tombstones = Tombstones()
    for key in list_log_keys(s3, bucket, prefix):
        day = partition_day(key)
        if day is not None and day < oldest_day:
            stats.objects_skipped += 1
            continue
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        stats.objects += 1
        stats.bytes += len(body)
        records.extend(parse_lines(object_lines(body), stats, tombstones))
    unique = deduplicate(without_erased(records, tombstones, stats), stats)
    windowed = in_window(unique, start, end)
    stats.outside_window += len(unique) - len(windowed)
    return windowed
