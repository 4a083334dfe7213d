"""DynamoDbStateRepository against the template's state table in moto."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from nextpick.adapters.dynamodb_state import DynamoDbStateRepository
from nextpick.domain.events import EventType, TrackedEvent
from nextpick.domain.ports import WithoutOptionalParts
from nextpick.domain.state import (
    EventStatus,
    RecentEvent,
    StateLimits,
    UserState,
    apply_events,
    event_key,
    fold,
)
from nextpick.errors import StorageUnavailable, VersionConflict
from nextpick_local.standin.aws_resources import Stack

NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


class TinyModel(WithoutOptionalParts):
    """Just enough of the model contract to check that concurrent writers keep the vector consistent."""

    version = "tiny-1"
    state_dim = 8
    history_slots = 0
    trending: tuple[tuple[int, float], ...] = ()

    def __init__(self, items: list[str]) -> None:
        self.items: list[str | None] = [None, *items]
        self._embeddings = (
            np.random.default_rng(3).normal(size=(len(self.items), self.state_dim)).astype("f4")
        )

    def item_index(self, item_id: str) -> int:
        return self.items.index(item_id) if item_id in self.items else 0

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray:
        return (np.float32(0.9) * state + np.float32(strength) * self._embeddings[item]).astype(np.float32)

    def rank(self, state: np.ndarray, exclude: np.ndarray, *history: Any) -> np.ndarray:  # pragma: no cover
        return self._embeddings @ state - exclude * np.float32(1e9)


def keys(*event_ids: str) -> tuple[bytes, ...]:
    return tuple(event_key(event_id) for event_id in event_ids)


def event(
    event_id: str, user_id: str = "user-1", item_id: str = "item-1", kind: str = "view"
) -> TrackedEvent:
    return TrackedEvent(
        event_id=event_id, user_id=user_id, item_id=item_id, event_type=EventType(kind), timestamp=NOW
    )


@pytest.fixture
def repo(stack: Stack, dynamodb: Any) -> DynamoDbStateRepository:
    return DynamoDbStateRepository(stack.state_table, client=dynamodb)


def stored_item(dynamodb: Any, stack: Stack, user_id: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = dynamodb.get_item(
        TableName=stack.state_table, Key={"user_id": {"S": user_id}}, ConsistentRead=True
    ).get("Item")
    return item


def test_unknown_user_loads_as_new(repo: DynamoDbStateRepository) -> None:
    assert repo.load("nobody") == UserState.new("nobody")


def test_save_then_load_round_trip(repo: DynamoDbStateRepository, dynamodb: Any, stack: Stack) -> None:
    vector = np.linspace(-1, 1, 64, dtype=np.float32)
    state = UserState(
        user_id="user-1",
        vector=vector,
        model_version="m-1",
        recent=(RecentEvent("item-1", EventType.VIEW, 1.0), RecentEvent("item-2", EventType.RATE, 0.6)),
        purchased=("item-2",),
        processed_keys=keys("e1", "e2"),
        outbox=('{"event_id":"e1"}', '{"event_id":"e2"}'),
    )

    saved = repo.save(state)
    loaded = repo.load("user-1")

    assert saved.version == 1 and saved.outbox == state.outbox
    assert loaded.version == 1
    assert loaded.vector is not None and loaded.vector.tobytes() == vector.tobytes()
    assert (loaded.model_version, loaded.recent, loaded.purchased, loaded.processed_keys) == (
        "m-1",
        state.recent,
        ("item-2",),
        keys("e1", "e2"),
    )
    # The outbox is in the item (for the stream) but not in what is loaded.
    assert loaded.outbox == ()
    item = stored_item(dynamodb, stack, "user-1")
    assert item is not None
    assert item["outbox"] == {"L": [{"S": '{"event_id":"e1"}'}, {"S": '{"event_id":"e2"}'}]}
    assert item["version"] == {"N": "1"}

    again = repo.save(replace(loaded, processed_keys=(*loaded.processed_keys, *keys("e3")), outbox=()))
    assert again.version == 2
    assert repo.load("user-1").processed_keys == keys("e1", "e2", "e3")


def test_stale_save_raises_version_conflict_and_changes_nothing(
    repo: DynamoDbStateRepository, dynamodb: Any, stack: Stack
) -> None:
    first = repo.save(replace(UserState.new("user-1"), processed_keys=keys("e1")))
    winner = repo.save(replace(first, processed_keys=keys("e1", "e2")))
    before = stored_item(dynamodb, stack, "user-1")

    with pytest.raises(VersionConflict):
        repo.save(replace(first, processed_keys=keys("e1", "e3")))  # still believes version 1

    assert stored_item(dynamodb, stack, "user-1") == before
    assert repo.load("user-1").version == winner.version == 2


def test_second_first_write_for_the_same_user_conflicts(repo: DynamoDbStateRepository) -> None:
    repo.save(replace(UserState.new("user-1"), processed_keys=keys("e1")))
    with pytest.raises(VersionConflict):
        repo.save(replace(UserState.new("user-1"), processed_keys=keys("e2")))
    assert repo.load("user-1").processed_keys == keys("e1")


def test_save_keeps_the_item_within_limits(stack: Stack, dynamodb: Any) -> None:
    repo = DynamoDbStateRepository(
        stack.state_table, StateLimits(recent_events=2, processed_ids=3, purchased_items=1), client=dynamodb
    )
    state = UserState(
        "user-1",
        recent=tuple(RecentEvent(f"item-{i}", EventType.VIEW, 1.0) for i in range(5)),
        purchased=("a", "b"),
        processed_keys=keys(*(f"e{i}" for i in range(5))),
    )
    saved = repo.save(state)
    loaded = repo.load("user-1")
    assert loaded == replace(saved, outbox=())
    assert [r.item_id for r in loaded.recent] == ["item-3", "item-4"]
    assert loaded.purchased == ("b",)
    assert loaded.processed_keys == keys("e2", "e3", "e4")


def test_missing_table_is_storage_unavailable(aws: None, dynamodb: Any) -> None:
    repo = DynamoDbStateRepository("no-such-table", client=dynamodb)
    with pytest.raises(StorageUnavailable, match="no-such-table does not exist"):
        repo.load("user-1")
    with pytest.raises(StorageUnavailable, match="no-such-table does not exist"):
        repo.save(UserState.new("user-1"))


class FailingClient:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_item(self, **_: Any) -> None:
        raise self.error

    def put_item(self, **_: Any) -> None:
        raise self.error


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "boom"}}, "Operation")


@pytest.mark.parametrize(
    "error",
    [
        client_error("ProvisionedThroughputExceededException"),
        client_error("ThrottlingException"),
        client_error("RequestLimitExceeded"),
        client_error("InternalServerError"),
        client_error("ServiceUnavailable"),
        ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
        EndpointConnectionError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com"),
    ],
    ids=[
        "throughput",
        "throttling",
        "request-limit",
        "internal",
        "unavailable",
        "read-timeout",
        "unreachable",
    ],
)
def test_throttling_and_outages_are_storage_unavailable(error: Exception) -> None:
    repo = DynamoDbStateRepository("t", client=FailingClient(error))
    with pytest.raises(StorageUnavailable) as caught:
        repo.load("user-1")
    assert caught.value.__cause__ is error
    with pytest.raises(StorageUnavailable):
        repo.save(UserState.new("user-1"))


@pytest.mark.parametrize(
    "error",
    [client_error("ValidationException"), client_error("AccessDeniedException"), NoCredentialsError()],
)
def test_bugs_and_misconfiguration_surface_unchanged(error: Exception) -> None:
    # Retrying cannot fix these: they must not be disguised as a 503 "try again".
    repo = DynamoDbStateRepository("t", client=FailingClient(error))
    with pytest.raises(type(error)) as caught:
        repo.save(UserState.new("user-1"))
    assert caught.value is error


def test_concurrent_writers_lose_no_update_and_double_nothing(
    stack: Stack, dynamodb: Any, atomic_moto_put_item: None
) -> None:
    """8 threads x 25 distinct events for ONE user, each doing load -> apply -> conditional save and
    retrying on VersionConflict: every event is applied exactly once, whatever the interleaving.

    Each event has its own item id, so `recent` (kept whole here) lists exactly which events the final
    state contains, in the order their writes won. `processed_keys` keeps a short window only because
    moto serializes every list element of every GetItem slowly; it must still be the tail of the same
    sequence."""
    threads, per_thread = 8, 25
    total = threads * per_thread
    items = [f"item-w{w}-{n}" for w in range(threads) for n in range(per_thread)]
    event_of = {f"item-w{w}-{n}": f"w{w}-e{n}" for w in range(threads) for n in range(per_thread)}
    model = TinyModel(items)
    limits = StateLimits(recent_events=total, processed_ids=8, purchased_items=8)
    repo = DynamoDbStateRepository(stack.state_table, limits, client=dynamodb)
    start = threading.Barrier(threads)
    saves = Counter[int]()
    conflicts = Counter[int]()
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        jitter = random.Random(worker)
        try:
            start.wait()
            for n in range(per_thread):
                item_id = f"item-w{worker}-{n}"
                tracked = event(event_of[item_id], item_id=item_id)
                while True:
                    state = repo.load("user-1")
                    new_state, statuses = apply_events(state, [tracked], model, limits, NOW)
                    if statuses == [EventStatus.DUPLICATE]:
                        break  # only after a save whose answer was lost; nothing left to do
                    try:
                        repo.save(new_state)
                        saves[worker] += 1
                        break
                    except VersionConflict:
                        conflicts[worker] += 1
                        # What a real caller does too: back off a little so the winner's readers go first.
                        time.sleep(jitter.uniform(0, 0.004))
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    workers = [threading.Thread(target=writer, args=(w,)) for w in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)

    assert not errors
    final = repo.load("user-1")
    applied = [r.item_id for r in final.recent]
    assert len(applied) == total  # no update lost...
    assert sorted(applied) == sorted(items)  # ...none doubled, none invented
    assert final.version == sum(saves.values()) == total  # every successful save is in the chain
    assert final.processed_keys == keys(*(event_of[i] for i in applied[-8:]))
    # Each writer's events appear in its own order (a writer never overtakes itself).
    for w in range(threads):
        assert [i for i in applied if i.startswith(f"item-w{w}-")] == [
            f"item-w{w}-{n}" for n in range(per_thread)
        ]
    # The vector is the fold of exactly the stored events, in the order they won their writes.
    assert final.vector is not None
    rebuilt = fold(model, np.zeros(model.state_dim, dtype=np.float32), final.recent)
    np.testing.assert_allclose(final.vector, rebuilt, rtol=1e-5, atol=1e-6)
    # The test only proves something if writers really collided.
    assert sum(conflicts.values()) > 0
