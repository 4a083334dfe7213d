"""Erasure (issue 9): what a tombstone is, and the one rule every reader of the event log applies.

`DELETE /users/{user_id}` replaces the shopper's state item by a marker whose outbox holds one
tombstone record, so the tombstone reaches the S3 event log by the path every accepted event takes
(state stream -> log shipper -> Firehose). From then on:

* **the rule** (`Tombstones.erases`): a log line of user U received at or before U's latest erasure
  is erased. Lines received after it are a returning shopper's new life and stay. The training
  reader drops erased lines before anything else; the compaction rewrites the log without them.
* tombstones themselves stay in the log: they are the record of the erasure, and every later retrain
  and compaction keeps honouring them.

Why `received_at` and not the event's own `timestamp`: a shop may send an event stamped before the
erasure after it (a late batch); it belongs to the new life. Both sides take their clock *after*
reading the state item (`privacy.PrivacyRequests.erase`, `service.Recommender`), and the erasure and
any event write are serialised by the item's optimistic lock, so every event accepted before the
erasure has `received_at < erased_at` and every event accepted after it `received_at > erased_at`,
up to the skew between two Lambda clocks (Amazon Time Sync: well under a millisecond).

Pure: no AWS. The S3 side of compaction is `adapters/s3_event_log.py`, its plan `domain/compaction.py`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import gzip
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from nextpick.domain.events import Identifier

ERASURE_RECORD_TYPE = "erasure"
# The marker item keeps the erased shopper's id, version and erasure time for this long (DynamoDB TTL
# on `expires_at`; TTL deletes within about 48 h of expiry). Long enough for a writer that read the
# old state to lose its conditional write against the marker's version and re-read, and for
# `GET /users/{user_id}/data` to say when the shopper was erased; it holds nothing else.
MARKER_TTL = timedelta(days=1)

# The deployed bound on "gone from the log" (template.yaml; tests/integration/test_erasure_template.py
# checks these equal the template's values): the shipper's stream batching window, Firehose's buffer
# interval, then the next scheduled compaction run, which takes at most the function's timeout.
SHIPPER_BATCHING_SECONDS = 5
FIREHOSE_BUFFER_SECONDS = 300
COMPACTION_TIMEOUT_SECONDS = 900

_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86_400}
# How a log line names its user: log records are compact JSON (`separators=(",", ":")`).
_USER_FIELD = re.compile(rb'"user_id"\s*:\s*"([^"\\]*)"')
GZIP_MAGIC = b"\x1f\x8b"


def iso(moment: datetime) -> str:
    """UTC ISO-8601 with a `Z`, as every log record writes its times."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_time(value: Any) -> datetime:
    """A log record's time (ISO-8601; a zone-less one is UTC). Raises ValueError."""
    if not isinstance(value, str):
        raise ValueError("times in log records are ISO-8601 strings")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class Erasure:
    """One erasure of one shopper: the marker item and the tombstone line say the same."""

    user_id: str
    erased_at: datetime
    # The API request that asked for it (API Gateway's request id), for the audit trail.
    request_id: str | None = None

    @property
    def marker_expires_at(self) -> int:
        """Unix seconds after which DynamoDB's TTL may delete the marker item."""
        return int((self.erased_at + MARKER_TTL).timestamp())

    def log_record(self) -> str:
        """The tombstone: one line of the event log (compact JSON, as event records are)."""
        record = {"type": ERASURE_RECORD_TYPE, "user_id": self.user_id, "erased_at": iso(self.erased_at)}
        if self.request_id:
            record["request_id"] = self.request_id
        return json.dumps(record, separators=(",", ":"))


def is_tombstone_shaped(raw: Mapping[str, Any]) -> bool:
    """Whether a parsed log line claims to be a typed record (a tombstone) rather than an event.
    Event records never carry `type` (TrackedEvent forbids unknown fields)."""
    return "type" in raw


def tombstone_of(raw: Mapping[str, Any]) -> Erasure:
    """The erasure a typed log record states. Raises ValueError if it is not a well-formed tombstone."""
    if raw.get("type") != ERASURE_RECORD_TYPE:
        raise ValueError(f"unknown log record type {raw.get('type')!r}")
    try:
        user_id = _IDENTIFIER.validate_python(raw.get("user_id"))
    except ValidationError as error:
        raise ValueError(f"tombstone user_id: {error.errors()[0]['msg']}") from None
    request_id = raw.get("request_id")
    return Erasure(
        user_id, parse_time(raw.get("erased_at")), request_id if isinstance(request_id, str) else None
    )


class Tombstones:
    """Each erased shopper's latest erasure time. A later erasure covers every earlier one (their
    rule is "received at or before"), so one time per shopper is all a reader needs."""

    __slots__ = ("_latest",)

    def __init__(self, latest: Mapping[str, datetime] | None = None) -> None:
        self._latest: dict[str, datetime] = dict(latest or {})

    def add(self, erasure: Erasure) -> bool:
        """Record an erasure; True if it moved the shopper's bound (a new or later erasure)."""
        known = self._latest.get(erasure.user_id)
        if known is not None and known >= erasure.erased_at:
            return False
        self._latest[erasure.user_id] = erasure.erased_at
        return True

    def erases(self, user_id: str, received_at: datetime) -> bool:
        """THE rule: a line of `user_id` received at or before their latest erasure is erased."""
        erased_at = self._latest.get(user_id)
        return erased_at is not None and received_at <= erased_at

    def erased_at(self, user_id: str) -> datetime | None:
        return self._latest.get(user_id)

    def merged(self, other: Tombstones) -> Tombstones:
        merged = Tombstones(self._latest)
        for user_id, erased_at in other._latest.items():
            merged.add(Erasure(user_id, erased_at))
        return merged

    def beyond(self, known: Tombstones) -> Tombstones:
        """The erasures of these that `known` does not cover (a new shopper, or a later time)."""
        return Tombstones(
            {
                user_id: erased_at
                for user_id, erased_at in self._latest.items()
                if user_id not in known._latest or known._latest[user_id] < erased_at
            }
        )

    def covers(self, other: Tombstones) -> bool:
        """Whether every erasure of `other` is already (or later) in these."""
        return not other.beyond(self)

    def erased_since(self, moment: datetime) -> Tombstones:
        """Those with an erasure after `moment` (older ones can no longer match a line still kept)."""
        return Tombstones({user_id: at for user_id, at in self._latest.items() if at > moment})

    def to_json(self) -> dict[str, str]:
        return {user_id: iso(at) for user_id, at in sorted(self._latest.items())}

    @classmethod
    def from_json(cls, raw: Mapping[str, str]) -> Tombstones:
        return cls({user_id: parse_time(at) for user_id, at in raw.items()})

    def __len__(self) -> int:
        return len(self._latest)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._latest

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Tombstones) and self._latest == other._latest

    def __repr__(self) -> str:
        return f"Tombstones({self.to_json()})"


# ------------------------------------------------------------------------------ compaction's filter


def tombstones_in(body: bytes) -> Iterator[Erasure]:
    """The well-formed tombstones among one log object's lines."""
    for line in log_text(body).splitlines():
        if b'"type"' not in line:
            continue  # cheap pre-filter: event lines never carry the word
        try:
            raw = json.loads(line)
        except ValueError:
            continue
        if isinstance(raw, dict) and is_tombstone_shaped(raw):
            try:
                yield tombstone_of(raw)
            except ValueError:
                continue


@dataclass(frozen=True)
class ErasedLines:
    """One log object after the rule: `body` is None when nothing changed (leave it byte for byte)."""

    body: bytes | None
    kept: int
    erased: int


def log_text(body: bytes) -> bytes:
    """An object's lines as bytes (gzip-compressed objects are accepted, as the reader accepts them)."""
    return gzip.decompress(body) if body[:2] == GZIP_MAGIC else body


def erase_lines(body: bytes, tombstones: Tombstones) -> ErasedLines:
    """The object without the lines `tombstones` erase; every other line keeps its exact bytes.

    * an event record: erased by the rule (its `user_id` and `received_at`);
    * a Firehose error record (`rawData`, base64 of the lines it failed to deliver): the lines inside
      are filtered the same way and the record re-encoded, or dropped if none is left;
    * a line that is not JSON, or a record without a readable `received_at`, naming an erased
      shopper: erased (the reader skips such a line anyway, so nothing of value is lost);
    * blank lines, tombstones and anything else: kept."""
    if not tombstones:
        return ErasedLines(None, 0, 0)
    compressed = body[:2] == GZIP_MAGIC
    lines = log_text(body).splitlines(keepends=True)
    out: list[bytes] = []
    erased = 0
    for line in lines:
        result = _erase_line(line, tombstones)
        if result is None:
            out.append(line)
        elif result:
            out.append(result)
            erased += 1  # a re-encoded error record lost some of its lines
        else:
            erased += 1
    if not erased:
        return ErasedLines(None, len(lines), 0)
    text = b"".join(out)
    return ErasedLines(gzip.compress(text) if compressed and text else text, len(out), erased)


def _erase_line(line: bytes, tombstones: Tombstones) -> bytes | None:
    """None: keep the line as is; b"": erase it; other bytes: its replacement."""
    if not line.strip():
        return None
    try:
        raw = json.loads(line)
    except ValueError:
        return b"" if _names_erased_user(line, tombstones) else None
    if not isinstance(raw, dict) or is_tombstone_shaped(raw):
        return None
    if isinstance(raw.get("rawData"), str):
        return _erase_in_error_record(raw, line, tombstones)
    user_id = raw.get("user_id")
    if not isinstance(user_id, str) or user_id not in tombstones:
        return None
    try:
        received_at = parse_time(raw.get("received_at"))
    except ValueError:
        return b""  # an erased shopper's record no reader can place in time
    return b"" if tombstones.erases(user_id, received_at) else None


def _erase_in_error_record(raw: dict[str, Any], line: bytes, tombstones: Tombstones) -> bytes | None:
    try:
        inner = base64.b64decode(raw["rawData"], validate=True)
    except (binascii.Error, ValueError):
        return None
    result = erase_lines(inner, tombstones)
    if result.body is None:
        return None
    if not result.body.strip():
        return b""
    raw["rawData"] = base64.b64encode(result.body).decode()
    ending = line[len(line.rstrip(b"\r\n")) :]
    return json.dumps(raw, separators=(",", ":")).encode() + ending


def _names_erased_user(line: bytes, tombstones: Tombstones) -> bool:
    return any(match.decode(errors="replace") in tombstones for match in _USER_FIELD.findall(line))


def user_lines(body: bytes, user_id: str) -> list[bytes]:
    """The lines of one log object that name `user_id` (events, tombstones, lines inside Firehose error
    records, unreadable lines), for an access request: what the log holds about the shopper."""
    found: list[bytes] = []
    for line in log_text(body).splitlines():
        try:
            raw = json.loads(line)
        except ValueError:
            if any(match.decode(errors="replace") == user_id for match in _USER_FIELD.findall(line)):
                found.append(line)
            continue
        if not isinstance(raw, dict):
            continue
        if isinstance(raw.get("rawData"), str):
            with contextlib.suppress(binascii.Error, ValueError):
                found.extend(user_lines(base64.b64decode(raw["rawData"], validate=True), user_id))
        elif raw.get("user_id") == user_id:
            found.append(line)
    return found


# ------------------------------------------------------------------------------------- the bound


def schedule_seconds(expression: str) -> int:
    """Seconds between runs of an EventBridge `rate(...)` expression (the template allows only rate
    expressions for the compaction schedule, so the erasure bound can be stated)."""
    match = _RATE.match(expression.strip())
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"not a rate(N minutes|hours|days) expression: {expression!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


def log_erasure_bound(compaction_schedule: str) -> timedelta:
    """How long after an erasure the shopper's lines are gone from the S3 event log, current and old
    versions, in normal operation: the tombstone is shipped (stream batching), lands in S3 (Firehose
    buffer), the next compaction run starts (at most one schedule interval later) and ends (at most
    its timeout). A stalled shipper or a log too large for one run stretches it (docs/privacy.md)."""
    return timedelta(
        seconds=SHIPPER_BATCHING_SECONDS
        + FIREHOSE_BUFFER_SECONDS
        + schedule_seconds(compaction_schedule)
        + COMPACTION_TIMEOUT_SECONDS
    )
