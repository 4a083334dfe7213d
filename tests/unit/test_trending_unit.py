"""Live trending's pure parts (docs/trending.md): a batch's aggregation and the decayed merge, by hand."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.erasure import Erasure
from nextpick.domain.events import EventType, TrackedEvent
from nextpick.domain.trending import (
    LiveTrending,
    TrendingItem,
    TrendingWindow,
    aggregate,
    bucket_hour,
    bucket_key,
    decayed_top_k,
    event_weight,
)

NOW = datetime(2026, 11, 30, 6, 40, 12, tzinfo=UTC)


def line(item_id: str, kind: str, received_at: datetime, event_id: str = "e") -> str:
    event = TrackedEvent(
        event_id=event_id, user_id="u", item_id=item_id, event_type=EventType(kind), timestamp=received_at
    )
    return json.dumps(event.log_record(received_at))


def test_bucket_keys_name_the_utc_hour_and_read_back() -> None:
    key = bucket_key("_all", NOW)
    assert key == "_all#2026-11-30T06"
    assert bucket_hour(key) == datetime(2026, 11, 30, 6, tzinfo=UTC)
    assert bucket_hour("shoes#with#hash#2026-01-02T23") == datetime(2026, 1, 2, 23, tzinfo=UTC)


def test_weights_are_the_models_intent_with_removal_floored_at_zero() -> None:
    assert event_weight(EventType.PURCHASE) == 2.0
    assert event_weight(EventType.ADD_TO_CART) == 1.5
    assert event_weight(EventType.VIEW) == 0.5
    assert event_weight(EventType.REMOVE_FROM_CART) == 0.0


def test_a_batch_sums_weights_per_hour_and_item_and_skips_tombstones_and_removals() -> None:
    earlier = datetime(2026, 11, 30, 5, 59, 59, tzinfo=UTC)
    lines = [
        line("a", "view", NOW),
        line("a", "purchase", NOW),
        line("b", "add_to_cart", NOW),
        line("b", "remove_from_cart", NOW),
        line("a", "view", earlier),
        Erasure("u", NOW).log_record(),
    ]
    assert aggregate(lines) == {
        "_all#2026-11-30T06": {"a": 2.5, "b": 1.5},
        "_all#2026-11-30T05": {"a": 0.5},
    }


def test_decay_halves_per_half_life_and_the_order_follows_decayed_scores() -> None:
    window = TrendingWindow(window_hours=24, half_life_hours=6.0)
    # "old" had 8 six hours ago (decays to 4) and 1 now: 5; "new" has 4.5 now; "gone" is out of stock.
    counts = {0: {"old": 1.0, "new": 4.5, "gone": 100.0}, 6: {"old": 8.0}, 12: {"tie": 20.0}}
    catalog = CatalogSnapshot(snapshot_id=1, out_of_stock=frozenset({"gone"}))
    top = decayed_top_k(counts, window, catalog, 10, None)
    # "tie": 20 x 0.25 = 5.0, equal to "old": ties by item id.
    assert top == [TrendingItem("old", 5.0), TrendingItem("tie", 5.0), TrendingItem("new", 4.5)]
    assert decayed_top_k(counts, window, catalog, 1, None) == [TrendingItem("old", 5.0)]


def test_a_category_keeps_only_its_known_items() -> None:
    window = TrendingWindow(window_hours=3, half_life_hours=1.0)
    catalog = CatalogSnapshot(snapshot_id=1, category_of={"a": "shoes", "b": "hats"})
    counts = {0: {"a": 1.0, "b": 3.0, "unknown": 9.0}, 2: {"a": 8.0}}
    assert decayed_top_k(counts, window, catalog, 5, "shoes") == [TrendingItem("a", 3.0)]
    # Without a category every item counts, known or not; "a" (3.0) and "b" (3.0) tie: by id.
    assert [i.item_id for i in decayed_top_k(counts, window, catalog, 5, None)] == ["unknown", "a", "b"]


class Buckets:
    def __init__(self, stored: dict[str, dict[str, float]]) -> None:
        self.stored = stored
        self.asked: list[list[str]] = []

    def read(self, buckets: Sequence[str]) -> dict[str, dict[str, float]]:
        self.asked.append(list(buckets))
        return {key: self.stored[key] for key in buckets if key in self.stored}


class Catalog:
    def snapshot(self) -> CatalogSnapshot:
        return CatalogSnapshot(snapshot_id=1)


def test_live_trending_reads_the_window_at_once_and_ignores_older_buckets() -> None:
    stored = {
        "_all#2026-11-30T06": {"a": 1.0},
        "_all#2026-11-30T04": {"b": 4.0},  # two hours old, half-life 2 h: 2.0
        "_all#2026-11-30T03": {"c": 100.0},  # outside a 3-hour window
    }
    counts = Buckets(stored)
    live = LiveTrending(counts, Catalog(), TrendingWindow(3, 2.0), clock=lambda: NOW)
    items = live.top(10, None)
    assert counts.asked == [["_all#2026-11-30T06", "_all#2026-11-30T05", "_all#2026-11-30T04"]]
    assert items == [TrendingItem("b", 2.0), TrendingItem("a", 1.0)]
    assert live.as_json(items, None) == {
        "items": [{"item_id": "b", "score": 2.0}, {"item_id": "a", "score": 1.0}],
        "category": None,
        "window_hours": 3,
        "half_life_hours": 2.0,
    }


@pytest.mark.parametrize("half_life", [1.0, 6.0])
def test_decay_factor(half_life: float) -> None:
    window = TrendingWindow(24, half_life)
    assert window.decay(0) == 1.0
    assert window.decay(int(half_life)) == pytest.approx(0.5)


def test_live_trending_reuses_a_read_within_the_refresh_and_the_hour() -> None:
    counts = Buckets({"_all#2026-11-30T06": {"a": 1.0}})
    now, elapsed = [NOW], [0.0]
    live = LiveTrending(
        counts,
        Catalog(),
        TrendingWindow(2, 6.0),
        refresh_seconds=60.0,
        clock=lambda: now[0],
        monotonic=lambda: elapsed[0],
    )
    assert live.top(5, None) == [TrendingItem("a", 1.0)]
    counts.stored["_all#2026-11-30T06"] = {"a": 1.0, "b": 7.0}
    elapsed[0] = 59.0
    assert live.top(5, None) == [TrendingItem("a", 1.0)] and len(counts.asked) == 1  # reused
    elapsed[0] = 60.0
    assert live.top(5, None) == [TrendingItem("b", 7.0), TrendingItem("a", 1.0)]  # refreshed
    now[0] = datetime(2026, 11, 30, 7, 0, 1, tzinfo=UTC)
    elapsed[0] = 61.0
    # A new hour reads afresh at once: the 06 bucket is an hour old now (decay 0.5 ** (1/6)).
    assert [i.item_id for i in live.top(5, None)] == ["b", "a"] and len(counts.asked) == 3
    assert counts.asked[-1] == ["_all#2026-11-30T07", "_all#2026-11-30T06"]
