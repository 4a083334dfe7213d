"""Erasure's pure parts (issue 9): the tombstone, the one rule, the compaction's line filter, the bound,
the privacy service on the in-memory store, and the training reader honouring tombstones."""

from __future__ import annotations

import base64
import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from nextpick.adapters.memory import InMemoryStateRepository
from nextpick.domain.erasure import (
    MARKER_TTL,
    Erasure,
    Tombstones,
    erase_lines,
    log_erasure_bound,
    schedule_seconds,
    tombstone_of,
    tombstones_in,
    user_lines,
)
from nextpick.domain.events import EventType, TrackedEvent
from nextpick.domain.privacy import PrivacyRequests
from nextpick.domain.state import StateLimits, UserState, apply_events
from nextpick.errors import ConcurrentUpdate, VersionConflict
from nextpick_training import event_log

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def line(event_id: str, user: str, seconds: float, item: str = "i1") -> str:
    """An event-log line exactly as the event path writes it, received `seconds` after T0."""
    event = TrackedEvent(
        event_id=event_id, user_id=user, item_id=item, event_type=EventType.VIEW, timestamp=T0
    )
    return json.dumps(event.log_record(T0 + timedelta(seconds=seconds)), separators=(",", ":"))


def tombstone(user: str, seconds: float) -> str:
    return Erasure(user, T0 + timedelta(seconds=seconds), "req-1").log_record()


def body(*lines: str) -> bytes:
    return "".join(f"{text}\n" for text in lines).encode()


# ------------------------------------------------------------------------------ tombstone and rule


def test_a_tombstone_line_reads_back_as_the_same_erasure() -> None:
    erasure = Erasure("shop:42", T0, "req-9")
    raw = json.loads(erasure.log_record())
    assert raw == {
        "type": "erasure",
        "user_id": "shop:42",
        "erased_at": "2026-11-01T12:00:00Z",
        "request_id": "req-9",
    }
    assert tombstone_of(raw) == erasure
    assert erasure.marker_expires_at == int((T0 + MARKER_TTL).timestamp())


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "erasure", "user_id": "a/b", "erased_at": "2026-11-01T12:00:00Z"},
        {"type": "erasure", "user_id": "u1", "erased_at": "yesterday"},
        {"type": "erasure", "user_id": "u1"},
        {"type": "rename", "user_id": "u1", "erased_at": "2026-11-01T12:00:00Z"},
    ],
)
def test_a_broken_or_unknown_typed_record_is_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        tombstone_of(raw)


def test_the_rule_erases_lines_received_at_or_before_the_latest_erasure() -> None:
    tombstones = Tombstones()
    assert tombstones.add(Erasure("u1", T0))
    assert tombstones.erases("u1", T0 - timedelta(days=30)) and tombstones.erases("u1", T0)
    assert not tombstones.erases("u1", T0 + timedelta(microseconds=1))  # the returning shopper
    assert not tombstones.erases("u2", T0 - timedelta(days=1))
    # An earlier erasure changes nothing; a later one moves the bound.
    assert not tombstones.add(Erasure("u1", T0 - timedelta(hours=1)))
    assert tombstones.add(Erasure("u1", T0 + timedelta(hours=1)))
    assert tombstones.erases("u1", T0 + timedelta(minutes=30))


def test_tombstones_compare_and_survive_the_checkpoint() -> None:
    known = Tombstones({"u1": T0})
    found = Tombstones({"u1": T0 - timedelta(seconds=1), "u2": T0})
    assert found.beyond(known) == Tombstones({"u2": T0})
    assert not known.covers(found) and known.merged(found).covers(found)
    assert Tombstones.from_json(known.merged(found).to_json()) == known.merged(found)
    assert known.merged(found).erased_since(T0 - timedelta(seconds=1)) == Tombstones({"u1": T0, "u2": T0})
    assert len(Tombstones({"u1": T0}).erased_since(T0)) == 0


# ------------------------------------------------------------------------------ compaction's filter


def test_erase_lines_drops_only_the_erased_lines_and_keeps_the_rest_byte_for_byte() -> None:
    # Other shoppers' lines in whatever spacing a writer used, blank lines and CRLF survive exactly.
    other = b'{"event_id": "e9",  "user_id": "u2", "received_at": "2026-11-01T11:00:00Z"}\r\n'
    original = (
        body(line("e1", "u1", -60), line("e2", "u1", 0))
        + other
        + b"\n"
        + body(tombstone("u1", 0), line("e3", "u1", 1), "{not json", '{"user_id":"u1","event_id":"trunc')
    )
    result = erase_lines(original, Tombstones({"u1": T0}))
    assert result.erased == 3  # e1, e2 (at the erasure) and the truncated u1 line
    assert result.body == other + b"\n" + body(tombstone("u1", 0), line("e3", "u1", 1), "{not json")
    # Filtering again changes nothing: the object is left alone.
    assert erase_lines(result.body, Tombstones({"u1": T0})).body is None
    assert erase_lines(original, Tombstones({"u3": T0})).body is None
    assert erase_lines(original, Tombstones()).body is None


def test_erase_lines_reads_and_writes_gzip_objects() -> None:
    original = gzip.compress(body(line("e1", "u1", -1), line("e2", "u2", -1)))
    result = erase_lines(original, Tombstones({"u1": T0}))
    assert result.body is not None and gzip.decompress(result.body) == body(line("e2", "u2", -1))


def test_erase_lines_filters_inside_firehose_error_records() -> None:
    def error_record(*lines: str) -> str:
        raw = base64.b64encode(body(*lines)).decode()
        return json.dumps({"attemptsMade": 4, "errorCode": "S3.AccessDenied", "rawData": raw})

    original = body(
        error_record(line("e1", "u1", -1), line("e2", "u2", -1)), error_record(line("e3", "u1", -2))
    )
    result = erase_lines(original, Tombstones({"u1": T0}))
    assert result.body is not None
    (kept,) = result.body.splitlines()
    assert base64.b64decode(json.loads(kept)["rawData"]) == body(line("e2", "u2", -1))
    assert json.loads(kept)["errorCode"] == "S3.AccessDenied"


def test_an_access_request_finds_every_line_naming_the_shopper() -> None:
    wrapped = json.dumps(
        {"rawData": base64.b64encode(body(line("e4", "u1", 3), line("e5", "u2", 3))).decode()}
    )
    original = body(line("e1", "u1", 0), line("e2", "u2", 0), tombstone("u1", 1), wrapped, '{"user_id":"u1",')
    assert user_lines(original, "u1") == [
        line("e1", "u1", 0).encode(),
        tombstone("u1", 1).encode(),
        line("e4", "u1", 3).encode(),
        b'{"user_id":"u1",',
    ]
    assert user_lines(gzip.compress(original), "u9") == []


def test_tombstones_are_found_in_an_object() -> None:
    found = list(
        tombstones_in(body(line("e1", "u1", 0), tombstone("u1", 5), '{"type":"erasure","user_id":"/"}'))
    )
    assert found == [Erasure("u1", T0 + timedelta(seconds=5), "req-1")]


def test_the_bound_follows_the_schedule() -> None:
    assert schedule_seconds("rate(6 hours)") == 21_600
    assert schedule_seconds("rate(1 day)") == schedule_seconds("rate(24 hours)")
    assert log_erasure_bound("rate(6 hours)") == timedelta(seconds=5 + 300 + 21_600 + 900)
    for bad in ("cron(0 * * * ? *)", "rate(0 hours)", "rate(6 weeks)"):
        with pytest.raises(ValueError):
            schedule_seconds(bad)


# ------------------------------------------------------------------------------ the privacy service


def tracked(event_id: str, user: str = "u1") -> TrackedEvent:
    return TrackedEvent(
        event_id=event_id, user_id=user, item_id="i1", event_type=EventType.PURCHASE, timestamp=T0
    )


def stored_state(repo: InMemoryStateRepository, user: str = "u1") -> UserState:
    state, _ = apply_events(repo.load(user), [tracked("e1", user)], None, StateLimits(), T0)
    return repo.save(state)


def test_erase_replaces_the_state_by_an_empty_one_and_logs_a_tombstone() -> None:
    repo = InMemoryStateRepository()
    stored_state(repo)
    privacy = PrivacyRequests(repo, clock=lambda: T0 + timedelta(minutes=1))

    receipt = privacy.erase("u1", "req-7")

    after = repo.load("u1")
    assert after.is_new and after.version == 2 and not after.purchased and not after.processed_keys
    assert [json.loads(r) for r in repo.outbox] == [
        {"type": "erasure", "user_id": "u1", "erased_at": "2026-11-01T12:01:00Z", "request_id": "req-7"}
    ]
    assert receipt.as_json()["log_erased_by"] == "2026-11-01T18:21:05Z"  # 1 min + 6 h + 1,205 s
    export = privacy.export("u1")
    assert export["state"] is None and export["erasure"] == {"erased_at": "2026-11-01T12:01:00Z"}


def test_erase_retries_a_lost_race_and_gives_up_with_a_409() -> None:
    class ConflictsOnce(InMemoryStateRepository):
        conflicts = 1

        def erase(self, erasure: Erasure, expected_version: int) -> None:
            if self.conflicts:
                self.conflicts -= 1
                raise VersionConflict("u1")
            super().erase(erasure, expected_version)

    repo = ConflictsOnce()
    PrivacyRequests(repo, backoff=lambda attempt: None).erase("u1")
    assert repo.load("u1").version == 1 and len(repo.outbox) == 1

    repo.conflicts = 99
    with pytest.raises(ConcurrentUpdate):
        PrivacyRequests(repo, max_write_attempts=3, backoff=lambda attempt: None).erase("u1")


def test_export_decodes_every_field_of_the_state() -> None:
    repo = InMemoryStateRepository()
    stored_state(repo)
    export = PrivacyRequests(repo).export("u1")
    state = export["state"]
    assert export["user_id"] == "u1" and export["erasure"] is None and "event_log" in export["elsewhere"]
    assert state["version"] == 1 and state["purchased"] == ["i1"] and state["processed_event_ids"] == 1
    assert state["recent_events"] == [{"item_id": "i1", "event_type": "purchase", "strength": 1.0}]
    (entry,) = state["history"]["items"]
    assert entry["item_id"] == "i1" and entry["purchases"] == 1
    assert entry["last_purchase"] == entry["first_purchase"] == "2026-11-01T12:00:00Z"
    assert state["history"]["orders"] == 1
    assert PrivacyRequests(repo).export("nobody") == {**export, "user_id": "nobody", "state": None}


# ------------------------------------------------------------------------------ the training reader


class FakeS3:
    def __init__(self, objects: dict[str, bytes]) -> None:
        self.objects = objects

    def get_paginator(self, name: str) -> FakeS3:
        return self

    def paginate(self, Bucket: str, Prefix: str) -> Any:
        yield {"Contents": [{"Key": k} for k in sorted(self.objects) if k.startswith(Prefix)]}

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.objects[Key])}


def test_a_tombstone_is_recognised_not_counted_malformed() -> None:
    stats = event_log.LogStats()
    assert isinstance(event_log.parse_line(tombstone("u1", 0)), Erasure)
    records = event_log.parse_lines([tombstone("u1", 0), line("e1", "u1", 1), '{"type":"other"}'], stats)
    assert [r.event_id for r in records] == ["e1"]
    assert (stats.tombstones, stats.malformed) == (1, 1)


def test_the_reader_drops_an_erased_shoppers_events_up_to_the_erasure_wherever_they_are() -> None:
    folder = "events/year=2026/month=11/day=01/"
    s3 = FakeS3(
        {
            # Erased events before the tombstone's object, after it (a late Firehose delivery) and a
            # re-delivered copy; the returning shopper's event after the erasure; another shopper.
            f"{folder}a": body(line("e1", "u1", -60), line("x1", "u2", -60)),
            f"{folder}b": body(tombstone("u1", 0), line("e2", "u1", 1)),
            f"{folder}c": body(line("e0", "u1", -1), line("e1", "u1", -60)),
        }
    )
    stats = event_log.LogStats()
    records = event_log.read_event_log(
        s3, "b", "events/", T0 - timedelta(days=1), T0 + timedelta(days=1), stats
    )
    assert sorted((r.user_id, r.event_id) for r in records) == [("u1", "e2"), ("u2", "x1")]
    assert (stats.tombstones, stats.erased, stats.malformed) == (1, 3, 0)


def test_two_shoppers_sharing_an_event_id_both_reach_the_model_and_copies_count_once() -> None:
    stats = event_log.LogStats()
    records = event_log.parse_lines([line("e1", "u1", 0), line("e1", "u2", 0), line("e1", "u1", 5)])
    unique = event_log.deduplicate(records, stats)
    assert sorted(r.user_id for r in unique) == ["u1", "u2"]
    assert stats.duplicates == 1
