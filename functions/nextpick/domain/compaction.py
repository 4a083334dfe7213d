"""Event-log compaction (issue 9): rewrite the S3 event log without the lines erasures erase.

A run (the scheduled `EventLogCompactionFunction`, `handlers/log_compactor.py`):

1. reads its checkpoint (`runs/compaction/checkpoint.json`): the tombstones already applied to the
   whole log, and since when objects have been read;
2. lists the log (`events/`, `events-errors/`: every current object and its older versions) and reads
   the objects modified since the last run (less `OVERLAP`), collecting their tombstones;
3. if that found an erasure the checkpoint does not cover (or a pass was cut short), it makes a **full
   pass**: every object is read and filtered by `erasure.erase_lines`; otherwise only the new objects
   are filtered (a line of an erased shopper that Firehose delivered late is caught there);
4. an object that loses lines is rewritten (PutObject: a new current version) and then **every older
   version of it is deleted** by version id: the bucket is versioned, so an overwrite alone would keep
   the erased lines in the previous version. An object left with no line is deleted, all versions.
   An object whose current version is clean but which still has older versions (a run that crashed
   between the two steps) has them deleted;
5. writes the checkpoint.

Idempotent and safe to re-run after a crash at any point: filtering a filtered object changes nothing,
leftover old versions are found by the listing, and a pass cut short resumes after the last object it
finished (checkpointed when less than `reserve_ms` of the invocation is left). Tombstones stay in the
log: they are the record of the erasure, and later runs and retrains keep honouring them.

Cost model: a run without new tombstones lists the log (one LIST per 1,000 versions) and reads only
the objects written since the previous run; a run with new tombstones reads the whole log once
(all new tombstones of that interval share the pass). Pure: the S3 side is `adapters/s3_event_log.py`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from nextpick.domain.erasure import (
    ErasedLines,
    Erasure,
    Tombstones,
    erase_lines,
    iso,
    parse_time,
    tombstones_in,
)

CHECKPOINT_FORMAT = "nextpick-log-compaction-1"
# Objects last modified up to this long before the previous run started are read again: S3 stamps an
# object when its upload starts, so one whose upload straddled the previous listing is not missed.
# Firehose uploads of <= 64 MiB take seconds; an hour is far beyond that and costs a few extra GETs.
OVERLAP = timedelta(hours=1)
# A tombstone older than the log's retention plus this can match no line still in the log (S3
# lifecycle expires objects within about a day of their due date), so the checkpoint forgets it.
RETENTION_MARGIN = timedelta(days=2)
# With less than this left in the invocation, the run checkpoints and stops (the next one resumes).
RESERVE_MS = 60_000
# New objects read for their tombstones are kept for the filtering step up to this many bytes, so a
# run without new tombstones reads each new object once (6 hours of a busy log: tens of MB).
KEEP_READ_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class LogObject:
    """One current object of the log and the ids of its older (noncurrent) versions."""

    key: str
    version_id: str
    last_modified: datetime
    size: int = 0
    older_versions: tuple[str, ...] = ()


class EventLogObjects(Protocol):
    """The event log's objects, versioned (adapters/s3_event_log.py)."""

    def list_objects(self) -> list[LogObject]:
        """Every object whose latest version is current (not a delete marker), in key order."""
        ...

    def read(self, obj: LogObject) -> bytes | None:
        """The body of exactly the listed version; None if it is gone since (expired by the lifecycle)."""
        ...

    def replace(self, obj: LogObject, body: bytes) -> None:
        """Write `body` as the new current version, then delete the listed version and every older one."""
        ...

    def remove(self, obj: LogObject) -> None:
        """Delete every listed version of the object: it is gone."""
        ...

    def delete_older_versions(self, obj: LogObject) -> None: ...
    def read_checkpoint(self) -> Mapping[str, Any] | None: ...
    def write_checkpoint(self, checkpoint: Mapping[str, Any]) -> None: ...


class LogCodec(Protocol):
    """How one log object's records are read and filtered: JSON lines here (`JsonLinesCodec`), Parquet
    in the compaction's image (`nextpick_training.parquet_log.ParquetLogCodec`, issue 14)."""

    def tombstones_in(self, body: bytes) -> Iterator[Erasure]: ...

    def erase(self, body: bytes, tombstones: Tombstones) -> ErasedLines:
        """The object without the records `tombstones` erase (`body` None: nothing changed)."""
        ...


class JsonLinesCodec:
    """The JSON-lines log (before issue 14) and Firehose's error records (`events-errors/`)."""

    def tombstones_in(self, body: bytes) -> Iterator[Erasure]:
        return tombstones_in(body)

    def erase(self, body: bytes, tombstones: Tombstones) -> ErasedLines:
        return erase_lines(body, tombstones)


@dataclass
class Checkpoint:
    # Applied to every object that was in the log when the run that set `read_since` listed it.
    tombstones: Tombstones = field(default_factory=Tombstones)
    read_since: datetime | None = None
    # A full pass cut short: the tombstones it applies and the last key it finished.
    pending: Tombstones | None = None
    pending_after: str | None = None

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "updated_at": iso(now),
            "read_since": iso(self.read_since) if self.read_since else None,
            "tombstones": self.tombstones.to_json(),
            "pending": None
            if self.pending is None
            else {"tombstones": self.pending.to_json(), "after": self.pending_after},
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any] | None) -> Checkpoint:
        if not raw:
            return cls()
        if raw.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"compaction checkpoint: unknown format {raw.get('format')!r}")
        pending = raw.get("pending")
        return cls(
            tombstones=Tombstones.from_json(raw.get("tombstones") or {}),
            read_since=parse_time(raw["read_since"]) if raw.get("read_since") else None,
            pending=Tombstones.from_json(pending["tombstones"]) if pending else None,
            pending_after=pending.get("after") if pending else None,
        )


@dataclass
class CompactionResult:
    status: str = "complete"  # or "partial": out of time, the next run resumes
    full_pass: bool = False
    objects_listed: int = 0
    objects_read: int = 0
    bytes_read: int = 0
    objects_rewritten: int = 0
    objects_removed: int = 0
    versions_deleted: int = 0
    lines_erased: int = 0
    new_tombstones: int = 0
    tombstones: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LogCompaction:
    log: EventLogObjects
    # How long the log keeps objects (EventLogRetentionDays): bounds the checkpoint's tombstones.
    retention: timedelta = timedelta(days=395)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    reserve_ms: int = RESERVE_MS
    codec: LogCodec = field(default_factory=JsonLinesCodec)

    def run(self, time_left_ms: Callable[[], int] | None = None) -> CompactionResult:
        started, started_clock = self.clock(), time.perf_counter()
        result = CompactionResult()
        checkpoint = Checkpoint.from_json(self.log.read_checkpoint())
        objects = self.log.list_objects()
        result.objects_listed = len(objects)
        fresh = [o for o in objects if _modified_since(o, checkpoint.read_since)]
        found, kept = self._tombstones_of(fresh, result)
        known = checkpoint.tombstones
        wanted = known.merged(checkpoint.pending or Tombstones()).merged(found)
        wanted = wanted.erased_since(started - self.retention - RETENTION_MARGIN)
        result.new_tombstones = len(found.beyond(known))
        result.tombstones = len(wanted)
        result.full_pass = not known.covers(wanted)
        todo, done_key = self._todo(objects, fresh, checkpoint, wanted, result.full_pass)
        for obj in todo:
            if time_left_ms is not None and time_left_ms() < self.reserve_ms:
                result.status = "partial"
                pending = (wanted, done_key) if result.full_pass else (None, None)
                self._save(Checkpoint(known, checkpoint.read_since, *pending), result, started_clock)
                return result
            self._compact(
                obj, kept.pop(obj.key) if obj.key in kept else self._read(obj, result), wanted, result
            )
            done_key = obj.key
        self._save(Checkpoint(wanted, started), result, started_clock)
        return result

    def _tombstones_of(
        self, fresh: Sequence[LogObject], result: CompactionResult
    ) -> tuple[Tombstones, dict[str, bytes | None]]:
        """The tombstones in the new objects, and their bodies (up to KEEP_READ_BYTES) for the filter."""
        found = Tombstones()
        kept: dict[str, bytes | None] = {}
        kept_bytes = 0
        for obj in fresh:
            body = self._read(obj, result)
            for erasure in self.codec.tombstones_in(body or b""):
                found.add(erasure)
            if kept_bytes + len(body or b"") <= KEEP_READ_BYTES:
                kept[obj.key] = body
                kept_bytes += len(body or b"")
        return found, kept

    def _todo(
        self,
        objects: Sequence[LogObject],
        fresh: Sequence[LogObject],
        checkpoint: Checkpoint,
        wanted: Tombstones,
        full_pass: bool,
    ) -> tuple[list[LogObject], str | None]:
        """The objects to filter, in key order, and the key a full pass resumes after (None: start)."""
        if full_pass:
            # A pass cut short resumes where it stopped unless more erasures arrived meanwhile: the
            # objects it finished have not seen those, so it starts over with all of them.
            resume = checkpoint.pending is not None and checkpoint.pending.covers(wanted)
            after = checkpoint.pending_after if resume else None
            return [o for o in objects if after is None or o.key > after], after
        # Only new objects (late lines of erased shoppers), and any left with old versions by a crash.
        keys = {o.key for o in fresh} | {o.key for o in objects if o.older_versions}
        return [o for o in objects if o.key in keys], None

    def _read(self, obj: LogObject, result: CompactionResult) -> bytes | None:
        body = self.log.read(obj)
        if body is not None:
            result.objects_read += 1
            result.bytes_read += len(body)
        return body

    def _compact(
        self, obj: LogObject, body: bytes | None, tombstones: Tombstones, result: CompactionResult
    ) -> None:
        if body is None:
            return  # expired since it was listed: nothing left to erase
        erased = self.codec.erase(body, tombstones)
        if erased.body is None:
            if obj.older_versions:
                self.log.delete_older_versions(obj)
                result.versions_deleted += len(obj.older_versions)
            return
        if erased.body.strip():
            self.log.replace(obj, erased.body)
            result.objects_rewritten += 1
        else:
            self.log.remove(obj)
            result.objects_removed += 1
        result.versions_deleted += 1 + len(obj.older_versions)
        result.lines_erased += erased.erased

    def _save(self, checkpoint: Checkpoint, result: CompactionResult, started: float) -> None:
        self.log.write_checkpoint(checkpoint.to_json(self.clock()))
        result.seconds = round(time.perf_counter() - started, 3)


def _modified_since(obj: LogObject, read_since: datetime | None) -> bool:
    return read_since is None or obj.last_modified >= read_since - OVERLAP
