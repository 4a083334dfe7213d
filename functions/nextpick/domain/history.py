"""A shopper's own item history: what contract v2's `rank` sees besides the state vector.

A 400-float state cannot remember which of 14,000 products this shopper buys every week; this can.
Per item the shopper touched, the state item keeps a few counters (`HistoryEntry`), at most
`HISTORY_CAPACITY` items (the least valuable is forgotten first). At ranking time the `HISTORY_SLOTS`
most valuable entries become two fixed-size model inputs, `history_items` int32[H] and
`history_features` float32[H, F] (docs/model-contract.md), from which the model scores "again" items
on their own terms (how often, how recently, how strongly) beside "new to you" items.

This module is the one definition of that input: serving builds it from the stored entries, and
training replays every user's events through the very same `ItemHistory.observe` and `model_input`,
so there is no train/serve skew (tests/unit/test_history.py checks both paths agree).

Time is the events' own timestamps (unix seconds) and the moment the list is shown (`now`): a
purchase 3 days ago and one 60 days ago are different evidence for buying again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from typing import Generic, TypeVar

import numpy as np

from nextpick.domain.events import EventType

# Entries kept per shopper in the state item (~36 bytes each with a 16-character id: ~7 KB at 200).
HISTORY_CAPACITY = 200
# Model input size H: a shopper's 64 most valuable items. Instacart-like shoppers touch ~90 distinct
# products; the 64 with the highest decayed intent hold nearly all of their repeat purchases.
HISTORY_SLOTS = 64
HISTORY_FEATURES = (
    "log_purchases",  # log(1 + purchases of this item)
    "log_interactions",  # log(1 + views, clicks, cart adds, rates of this item)
    "log_days_since_seen",  # log(1 + days since the last event on this item)
    "log_bought_7d",  # log(1 + purchases of this item decayed with a 7-day half-life)
    "log_bought_30d",  # ... 30-day half-life ("buy again" as a rule: the strongest simple baseline)
    "log_bought_120d",  # ... 120-day half-life
    "log_decayed_intent",  # log(1 + intent weight decayed with a 14-day half-life), signed
    "order_share",  # purchases of this item / the shopper's orders: "in 80% of their baskets"
    "due",  # days since the last purchase / this shopper's usual days between purchases of it (<= 4)
    "log_orders",  # log(1 + the shopper's orders): how much evidence the shares rest on
    "present",  # 1 for a filled slot, 0 for padding (always last)
)
NUM_HISTORY_FEATURES = len(HISTORY_FEATURES)
INTENT_HALF_LIFE_DAYS = 14.0
# Purchases are counted with three half-lives: weekly staples, monthly refills, seasonal buys.
PURCHASE_HALF_LIVES_DAYS = (7.0, 30.0, 120.0)
SECONDS_PER_DAY = 86_400.0
MAX_DUE = 4.0
# `now` is taken to the hour: features move on a scale of days, and an answer repeated within the hour
# (a redelivered event, a page reload) is then exactly the same list with the same scores.
NOW_RESOLUTION_SECONDS = 3600.0

# Intent of one event, by type: buying says more than looking; removing from the cart says "not now".
EVENT_INTENT: dict[EventType, float] = {
    EventType.VIEW: 0.5,
    EventType.CLICK: 0.75,
    EventType.ADD_TO_CART: 1.5,
    EventType.REMOVE_FROM_CART: -0.5,
    EventType.PURCHASE: 2.0,
    EventType.RATE: 1.0,
}
_INTENT_BY_CODE = tuple(EVENT_INTENT[event_type] for event_type in EventType)
_PURCHASE = EventType.PURCHASE.code

Key = TypeVar("Key", bound=Hashable)


# Purchases closer together than this belong to one order (shops send an order's lines in seconds).
ORDER_GAP_SECONDS = 600.0


def starts_new_order(orders: int, last_order: float, timestamp: float) -> bool:
    """The one order rule: a purchase starts a new order when there is none yet or it is more than
    ORDER_GAP_SECONDS from the last one. The history's order count and the retrain's bought-together
    baskets (nextpick_training.together) both split a shopper's purchases with it."""
    return not orders or abs(timestamp - last_order) > ORDER_GAP_SECONDS


@dataclass(slots=True)
class HistoryEntry:
    purchases: int = 0
    interactions: int = 0
    last_seen: float = 0.0
    # 0.0: never bought.
    last_purchase: float = 0.0
    # Decayed intent as of `last_seen`.
    intent: float = 0.0
    # 0.0: never bought.
    first_purchase: float = 0.0
    # Purchases decayed with each of PURCHASE_HALF_LIVES_DAYS, as of `last_purchase`.
    bought: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def bought_at(self, now: float) -> tuple[float, ...]:
        days = max(0.0, now - self.last_purchase) / SECONDS_PER_DAY
        return tuple(
            b * 0.5 ** (days / h) for b, h in zip(self.bought, PURCHASE_HALF_LIVES_DAYS, strict=True)
        )

    def intent_at(self, now: float) -> float:
        days = max(0.0, now - self.last_seen) / SECONDS_PER_DAY
        return self.intent * 0.5 ** (days / INTENT_HALF_LIFE_DAYS)


def event_intent(event_type: int, strength: float) -> float:
    """The type's intent times the event's strength. Strength is 1 except a rating's rating / 5 (a
    1-star rating is weak evidence of liking; a review is folded as a rating, so the same) and a
    search's matched items' 1 / M' (M' items matched: one search is worth one view in all, spread
    over what it named; its clicks are clicks, 0.75 each). docs/model-contract.md."""
    intent = _INTENT_BY_CODE[min(max(int(event_type), 0), len(_INTENT_BY_CODE) - 1)]
    return intent * float(strength)


class ItemHistory(Generic[Key]):
    """The bounded per-shopper item map. Keys are item ids in serving, vocabulary indices in training."""

    __slots__ = ("capacity", "entries", "last_order", "orders")

    def __init__(
        self,
        entries: dict[Key, HistoryEntry] | None = None,
        capacity: int = HISTORY_CAPACITY,
        orders: int = 0,
        last_order: float = 0.0,
    ):
        self.entries: dict[Key, HistoryEntry] = dict(entries or {})
        self.capacity = capacity
        # The shopper's orders (runs of purchases, ORDER_GAP_SECONDS apart) and the last one's time.
        self.orders = orders
        self.last_order = last_order

    def copy(self) -> ItemHistory[Key]:
        entries = {k: replace(e) for k, e in self.entries.items()}
        return ItemHistory(entries, self.capacity, self.orders, self.last_order)

    def observe(self, key: Key, event_type: int, strength: float, timestamp: float) -> None:
        # Whole seconds: what the state item stores, so a replayed history equals the stored one.
        timestamp = float(math.floor(timestamp))
        entry = self.entries.get(key)
        if entry is None:
            if len(self.entries) >= self.capacity:
                self._forget_one(timestamp)
            entry = self.entries[key] = HistoryEntry(last_seen=timestamp)
        # Events can arrive slightly out of order: decay only forward in time.
        moment = max(timestamp, entry.last_seen)
        entry.intent = entry.intent_at(moment) + event_intent(event_type, strength)
        entry.last_seen = moment
        if event_type == _PURCHASE:
            entry.purchases += 1
            entry.first_purchase = min(entry.first_purchase or timestamp, timestamp)
            when = max(entry.last_purchase, timestamp)
            decayed = entry.bought_at(when)
            entry.bought = (decayed[0] + 1.0, decayed[1] + 1.0, decayed[2] + 1.0)
            entry.last_purchase = when
            if starts_new_order(self.orders, self.last_order, timestamp):
                self.orders += 1
            self.last_order = max(self.last_order, timestamp)
        else:
            entry.interactions += 1

    def observe_all(self, events: Iterable[tuple[Key, int, float, float]]) -> ItemHistory[Key]:
        for key, event_type, strength, timestamp in events:
            self.observe(key, event_type, strength, timestamp)
        return self

    def _forget_one(self, now: float) -> None:
        """Drop the entry worth least now (lowest |decayed intent|, then the oldest)."""
        victim = min(self.entries, key=lambda k: (_value(self.entries[k], now), self.entries[k].last_seen))
        del self.entries[victim]

    def model_input(
        self, index_of: Callable[[Key], int], now: float, slots: int = HISTORY_SLOTS
    ) -> tuple[np.ndarray, np.ndarray]:
        """(`history_items` int32[slots], `history_features` float32[slots, F]) at time `now`.

        The `slots` most valuable entries whose item the model knows (index > 0), most valuable first;
        the rest is padding (item 0, all features 0)."""
        now = math.floor(now / NOW_RESOLUTION_SECONDS) * NOW_RESOLUTION_SECONDS
        items = np.zeros(slots, dtype=np.int32)
        features = np.zeros((slots, NUM_HISTORY_FEATURES), dtype=np.float32)
        ranked = sorted(
            ((index_of(key), entry) for key, entry in self.entries.items()),
            key=lambda pair: (-_value(pair[1], now), -pair[1].last_seen, pair[0]),
        )
        slot = 0
        for index, entry in ranked:
            if index <= 0:
                continue
            items[slot] = index
            features[slot] = entry_features(entry, now, self.orders)
            slot += 1
            if slot == slots:
                break
        return items, features


def _value(entry: HistoryEntry, now: float) -> float:
    return abs(entry.intent_at(now)) + entry.purchases


def entry_features(entry: HistoryEntry, now: float, orders: int) -> list[float]:
    days_seen = max(0.0, now - entry.last_seen) / SECONDS_PER_DAY
    due = 0.0
    bought = entry.bought_at(now)
    if entry.purchases:
        days_bought = max(0.0, now - entry.last_purchase) / SECONDS_PER_DAY
        if entry.purchases >= 2:
            gap = (entry.last_purchase - entry.first_purchase) / SECONDS_PER_DAY / (entry.purchases - 1)
            due = min(MAX_DUE, days_bought / max(gap, 1.0))
    intent = entry.intent_at(now)
    return [
        math.log1p(entry.purchases),
        math.log1p(entry.interactions),
        math.log1p(days_seen),
        math.log1p(bought[0]),
        math.log1p(bought[1]),
        math.log1p(bought[2]),
        math.copysign(math.log1p(abs(intent)), intent),
        min(1.0, entry.purchases / max(orders, 1)),
        due,
        math.log1p(orders),
        1.0,
    ]
