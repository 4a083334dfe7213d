"""A Kinesis batch (records partitioned by `user_id`) as few state writes: every user's events of the
whole batch folded in one write, in record order (docs/kinesis.md).

A user's events are split into several writes only where one write would carry more than the
`max_batch_log_bytes` of event-log records a state item can take (192 KiB: some 600 events of
~300 bytes, six times a whole batch of single-event records). The writes of one user are applied in
order, and none after one that failed, so a retry from the failed record never folds an older event
after a newer one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nextpick.domain.events import AnyEvent
from nextpick.domain.requests import batch_log_bytes


@dataclass(frozen=True)
class StreamRecord:
    """One valid Kinesis record: its sequence number and the events its data carried."""

    sequence_number: str
    events: tuple[AnyEvent, ...]


@dataclass(frozen=True)
class UserWrite:
    """One user's events that go into one state write; `sequence_numbers[i]` is the record of `events[i]`."""

    user_id: str
    events: tuple[AnyEvent, ...]
    sequence_numbers: tuple[str, ...]

    @property
    def first_sequence_number(self) -> str:
        """Where the shard must resume if this write fails: the first record it holds an event of."""
        return self.sequence_numbers[0]


def plan_writes(records: Sequence[StreamRecord], max_log_bytes: int) -> list[list[UserWrite]]:
    """Per user (in order of first appearance), the writes that apply all of the user's events in
    record order: one, unless they exceed `max_log_bytes` of log records together."""
    by_user: dict[str, list[tuple[str, AnyEvent]]] = {}
    for record in records:
        for event in record.events:
            by_user.setdefault(event.user_id, []).append((record.sequence_number, event))
    plans: list[list[UserWrite]] = []
    for user_id, pairs in by_user.items():
        writes: list[UserWrite] = []
        chunk: list[tuple[str, AnyEvent]] = []
        size = 0
        for sequence_number, event in pairs:
            event_bytes = batch_log_bytes([event])
            if chunk and size + event_bytes > max_log_bytes:
                writes.append(_write(user_id, chunk))
                chunk, size = [], 0
            chunk.append((sequence_number, event))
            size += event_bytes
        writes.append(_write(user_id, chunk))
        plans.append(writes)
    return plans


def _write(user_id: str, pairs: list[tuple[str, AnyEvent]]) -> UserWrite:
    return UserWrite(
        user_id=user_id,
        events=tuple(event for _, event in pairs),
        sequence_numbers=tuple(sequence_number for sequence_number, _ in pairs),
    )


def batch_item_failures(sequence_numbers: Iterable[str]) -> list[dict[str, str]]:
    """The partial-batch response: Lambda resumes the shard at the lowest sequence number reported
    (every record after it is delivered again), so only that one is reported. Sequence numbers are
    decimal strings of up to 128 digits: compared as integers, not as text."""
    lowest = min(sequence_numbers, key=int, default=None)
    return [] if lowest is None else [{"itemIdentifier": lowest}]
