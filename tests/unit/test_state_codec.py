"""The state item layout, without AWS: what `save` writes is exactly what `load` reads back."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from nextpick.adapters.dynamodb_state import decode_state, encode_state
from nextpick.domain.events import EventType
from nextpick.domain.history import ItemHistory
from nextpick.domain.state import RecentEvent, UserState, event_key


def full_state() -> UserState:
    rng = np.random.default_rng(7)
    return UserState(
        user_id="user-42",
        vector=rng.normal(size=64).astype(np.float32),
        model_version="20261128T203000Z-1a2b3c4d",
        recent=(
            RecentEvent("item-1", EventType.VIEW, 1.0),
            RecentEvent("item-2", EventType.RATE, 0.8),
            RecentEvent("item-1", EventType.PURCHASE, 1.0),
        ),
        purchased=("item-9", "item-1"),
        processed_keys=tuple(event_key(f"evt-{n}") for n in (1, 2, 3)),
        version=7,
        outbox=('{"event_id":"evt-3"}',),
    )


def test_round_trip_is_exact_for_a_64_dim_vector() -> None:
    state = full_state()
    decoded = decode_state(encode_state(state))

    assert decoded.vector is not None and state.vector is not None
    assert decoded.vector.dtype == np.float32
    assert decoded.vector.shape == (64,)
    assert decoded.vector.tobytes() == state.vector.tobytes()  # bit for bit, not approximately
    assert decoded.vector.flags.writeable
    assert (decoded.user_id, decoded.model_version, decoded.version) == (
        state.user_id,
        state.model_version,
        state.version,
    )
    assert decoded.recent == state.recent
    assert decoded.purchased == state.purchased
    assert decoded.processed_keys == state.processed_keys


def test_vector_bytes_are_float32_little_endian() -> None:
    state = UserState("u", vector=np.array([1.0, -2.5], dtype=np.float32), model_version="v", version=1)
    raw = encode_state(state)["vector"]["B"]
    assert raw == np.array([1.0, -2.5], dtype="<f4").tobytes()
    assert len(raw) == 8
    # A big-endian or float64 input is stored in the same canonical form.
    big = UserState("u", vector=np.array([1.0, -2.5], dtype=">f8"), model_version="v", version=1)
    assert encode_state(big)["vector"]["B"] == raw


def test_new_user_round_trip_none_vector_and_empty_lists() -> None:
    state = UserState.new("user-1")
    item = encode_state(state)

    assert "vector" not in item and "model_version" not in item
    assert item["purchased"] == {"L": []}
    assert "processed" not in item
    assert item["outbox"] == {"L": []}
    assert item["recent"] == {"S": "[]"}
    decoded = decode_state(item)
    assert decoded == UserState.new("user-1")


def test_layout_is_the_documented_one() -> None:
    item = encode_state(full_state(), updated_at=datetime(2026, 11, 28, 20, 30, tzinfo=UTC))

    assert set(item) == {
        "user_id",
        "vector",
        "model_version",
        "recent",
        "purchased",
        "processed",
        "outbox",
        "version",
        "updated_at",
    }
    assert {name: next(iter(value)) for name, value in item.items()} == {
        "user_id": "S",
        "vector": "B",
        "model_version": "S",
        "recent": "S",
        "purchased": "L",
        "processed": "B",
        "outbox": "L",
        "version": "N",
        "updated_at": "S",
    }
    assert item["recent"]["S"] == '[["item-1","view",1.0],["item-2","rate",0.8],["item-1","purchase",1.0]]'
    assert item["outbox"] == {"L": [{"S": '{"event_id":"evt-3"}'}]}
    assert item["version"] == {"N": "7"}
    assert item["updated_at"] == {"S": "2026-11-28T20:30:00+00:00"}
    assert json.loads(item["recent"]["S"])[1] == ["item-2", "rate", 0.8]


def test_loaded_state_has_no_outbox() -> None:
    # The outbox belongs to the write that produced it: re-saving a loaded state must not re-ship it.
    assert decode_state(encode_state(full_state())).outbox == ()


def test_decode_tolerates_missing_optional_attributes() -> None:
    decoded = decode_state({"user_id": {"S": "u"}, "version": {"N": "3"}})
    assert decoded == UserState("u", version=3)


@pytest.mark.parametrize("strength", [0.2, 0.4, 0.6, 0.8, 1.0])
def test_rating_strengths_survive_json(strength: float) -> None:
    state = UserState("u", recent=(RecentEvent("i", EventType.RATE, strength),), version=1)
    assert decode_state(encode_state(state)).recent[0].strength == strength


def test_processed_events_are_stored_as_8_byte_keys() -> None:
    item = encode_state(full_state())
    assert item["processed"]["B"] == b"".join(event_key(f"evt-{n}") for n in (1, 2, 3))
    assert len(item["processed"]["B"]) == 3 * 8


def shopper_with_history(distinct_items: int) -> UserState:
    """A shopper who bought, viewed and carted `distinct_items` different 16-character ids."""
    history: ItemHistory[str] = ItemHistory()
    t = 1_790_000_000.0
    for n in range(distinct_items):
        for kind in (EventType.VIEW, EventType.ADD_TO_CART, EventType.PURCHASE):
            history.observe(f"sku-{n:012d}", kind.code, 1.0, t + 3600.0 * n)
    return UserState("user-42", history=history, version=1)


def test_the_item_history_round_trips_exactly() -> None:
    state = shopper_with_history(50)
    decoded = decode_state(encode_state(state)).history
    assert decoded.entries == state.history.entries
    assert (decoded.orders, decoded.last_order) == (state.history.orders, state.history.last_order)
    now = 1_790_000_000.0 + 60 * 86_400
    index = {item_id: n + 1 for n, item_id in enumerate(state.history.entries)}.__getitem__
    for mine, theirs in zip(
        decoded.model_input(index, now), state.history.model_input(index, now), strict=True
    ):
        np.testing.assert_array_equal(mine, theirs)


def test_history_of_200_items_stays_small() -> None:
    """Issue 8's figure: the history part of the state item for a shopper with 200 distinct items."""
    item = encode_state(shopper_with_history(200))
    assert len(item["history"]["B"]) == 8 + 200 * (1 + 16 + 32)  # header + 200 x (length, id, counters)
    assert len(item["history"]["B"]) < 10 * 1024
