"""Attribution (docs/attribution.md): the event log's impressions and shopper events in, what each
served answer led to out. Pure: the lines come from whichever reader (report_log.py reads S3).

The rules, in the order they apply:

1. **Erasure**: every line of an erased shopper received (an impression: served) at or before their
   latest tombstone is dropped, by the one rule `Tombstones.erases`.
2. **Duplicates**: events by `(user_id, event_id)`, the earliest `received_at` kept (delivery is at
   least once); impressions by `(recommendation_id, variant, shadow)`.
3. **Window**: impressions served in [start, end] are counted; an event counts for the impression it
   cites when it is the impression's shopper's (any shopper's for an answer without one: trending,
   an item page the shop's server asked for) and its `timestamp` lies within
   [served_at - CLOCK_SKEW, served_at + the type's window]: CLICK_WINDOW for a click,
   PURCHASE_WINDOW for an add to cart and a purchase.
4. **Any item of the answer's journey**: a click, add to cart or purchase citing an answer counts for
   it whatever its item (a shopper who clicks one pick and buys another converted that answer).
5. **Carry-over**: an add to cart or purchase that cites nothing counts for the answer the same
   shopper's latest earlier cited click or add to cart *of the same item* cited, within that answer's
   PURCHASE_WINDOW (checkout pages rarely know which list a cart line came from). Nothing else
   without a `recommendation_id` is attributed: no guessing from "the item was in a list once".
6. **Per answer**: clicked, carted and converted are yes/no (a rate per impression, so Wilson applies);
   revenue is the sum of price x quantity (quantity 1 when absent) of its attributed purchases.
   Shadow impressions (never shown) are counted, never attributed."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from nextpick.domain.erasure import Tombstones, is_tombstone_shaped, parse_time, tombstone_of
from nextpick.domain.events import EventType
from nextpick.domain.impressions import is_impression_record, is_recommendation_id

# A reaction to a list is a click within a session: 30 min is the usual web-analytics session
# timeout, and a list older than that has mostly been replaced by a newer answer on the page.
CLICK_WINDOW = timedelta(minutes=30)
# A purchase decision takes longer (comparison, a second visit the same day): 24 h, Amazon
# Personalize's and most shops' default post-click window; longer windows credit a list with
# purchases other visits caused, and delay every report by as much.
PURCHASE_WINDOW = timedelta(hours=24)
# Event timestamps are the shop's clock, `served_at` nextpick's: serving accepts events up to 5 min in
# the future (Settings.max_future_skew_seconds), so an event may read up to 5 min "before" its answer.
CLOCK_SKEW = timedelta(minutes=5)

_ATTRIBUTED_TYPES = {EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE}


@dataclass(frozen=True, slots=True)
class ServedList:
    recommendation_id: str
    user_id: str | None
    model_version: str | None
    variant: str
    surface: str
    items: tuple[str, ...]
    served_at: datetime
    shadow: bool


@dataclass(frozen=True, slots=True)
class ShopperAction:
    event_id: str
    user_id: str
    event_type: EventType
    item_id: str
    timestamp: datetime
    received_at: datetime
    recommendation_id: str | None
    revenue: float | None  # price x quantity of a purchase; None: no price sent (or not a purchase)


@dataclass
class Outcome:
    """What one served answer led to."""

    served: ServedList
    clicked: bool = False
    carted: bool = False
    converted: bool = False
    revenue: float = 0.0


@dataclass
class LogCounts:
    """What reading found: lines, and the events the rules left unattributed (and why)."""

    lines: int = 0
    malformed: int = 0
    erased: int = 0
    duplicate_events: int = 0
    duplicate_impressions: int = 0
    impressions: int = 0
    shadow_impressions: int = 0
    events: int = 0
    cited: int = 0
    cited_unknown: int = 0  # cites an answer not served in the window (or not logged)
    cited_other_shopper: int = 0
    cited_outside_window: int = 0
    carried_over: int = 0
    purchases_without_price: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class AttributionLog:
    """The distinct, not erased impressions and actions of a log, and what reading counted."""

    impressions: list[ServedList] = field(default_factory=list)
    actions: list[ShopperAction] = field(default_factory=list)
    counts: LogCounts = field(default_factory=LogCounts)


def _served(raw: dict[str, Any]) -> ServedList:
    recommendation_id = raw["recommendation_id"]
    items = raw.get("items", [])
    if not isinstance(recommendation_id, str) or not is_recommendation_id(recommendation_id):
        raise ValueError("an impression carries a recommendation_id")
    if not isinstance(items, list):
        raise ValueError("an impression's items are a list")
    user_id = raw.get("user_id")
    return ServedList(
        recommendation_id=recommendation_id,
        user_id=str(user_id) if user_id is not None else None,
        model_version=str(raw["model_version"]) if raw.get("model_version") is not None else None,
        variant=str(raw["variant"]),
        surface=str(raw.get("surface", "")),
        items=tuple(str(i) for i in items),
        served_at=parse_time(raw["served_at"]),
        shadow=bool(raw.get("shadow", False)),
    )


def _action(raw: dict[str, Any]) -> ShopperAction | None:
    """A click, add to cart or purchase; None for every other event (views, rates, searches, reviews)."""
    try:
        event_type = EventType(str(raw.get("event_type")))
    except ValueError:
        return None
    if event_type not in _ATTRIBUTED_TYPES or "item_id" not in raw:
        return None
    cited = raw.get("recommendation_id")
    revenue = None
    if event_type is EventType.PURCHASE and raw.get("price") is not None:
        revenue = float(raw["price"]) * int(raw.get("quantity") or 1)
    return ShopperAction(
        event_id=str(raw["event_id"]),
        user_id=str(raw["user_id"]),
        event_type=event_type,
        item_id=str(raw["item_id"]),
        timestamp=parse_time(raw["timestamp"]),
        received_at=parse_time(raw["received_at"]),
        recommendation_id=str(cited) if cited is not None else None,
        revenue=revenue,
    )


class _Reader:
    """Rules 1 and 2, line by line: the last copy of nothing is kept twice."""

    def __init__(self, counts: LogCounts) -> None:
        self.counts = counts
        self.tombstones = Tombstones()
        self.impressions: dict[tuple[str, str, bool], ServedList] = {}
        self.actions: dict[tuple[str, str], ShopperAction] = {}

    def add(self, raw: dict[str, Any]) -> None:
        if is_tombstone_shaped(raw):
            self.tombstones.add(tombstone_of(raw))
        elif is_impression_record(raw):
            served = _served(raw)
            key = (served.recommendation_id, served.variant, served.shadow)
            self.counts.duplicate_impressions += key in self.impressions
            self.impressions.setdefault(key, served)
        elif (action := _action(raw)) is not None:
            seen = self.actions.get((action.user_id, action.event_id))
            self.counts.duplicate_events += seen is not None
            if seen is None or action.received_at < seen.received_at:
                self.actions[(action.user_id, action.event_id)] = action

    def kept(self, user_id: str | None, received_at: datetime) -> bool:
        erased = user_id is not None and self.tombstones.erases(user_id, received_at)
        self.counts.erased += erased
        return not erased


def read_attribution_log(lines: Iterable[str | bytes]) -> AttributionLog:
    """Rules 1 and 2 over the log's lines (in any order): impressions and actions, erasure applied,
    duplicates dropped. Lines that are neither are counted as malformed and skipped."""
    log = AttributionLog()
    reader = _Reader(log.counts)
    for line in lines:
        if not line.strip():
            continue
        log.counts.lines += 1
        try:
            raw = json.loads(line)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            reader.add(raw)
        except (ValueError, KeyError, TypeError):
            log.counts.malformed += 1
    log.impressions = [s for s in reader.impressions.values() if reader.kept(s.user_id, s.served_at)]
    log.actions = [a for a in reader.actions.values() if reader.kept(a.user_id, a.received_at)]
    return log


def _window(event_type: EventType) -> timedelta:
    return CLICK_WINDOW if event_type is EventType.CLICK else PURCHASE_WINDOW


def _attributable(served: ServedList, action: ShopperAction, counts: LogCounts) -> bool:
    if served.user_id is not None and served.user_id != action.user_id:
        counts.cited_other_shopper += 1
        return False
    delay = action.timestamp - served.served_at
    if not -CLOCK_SKEW <= delay <= _window(action.event_type):
        counts.cited_outside_window += 1
        return False
    return True


def _credit(outcome: Outcome, action: ShopperAction, counts: LogCounts) -> None:
    if action.event_type is EventType.CLICK:
        outcome.clicked = True
    elif action.event_type is EventType.ADD_TO_CART:
        outcome.carted = True
    else:
        outcome.converted = True
        if action.revenue is None:
            counts.purchases_without_price += 1
        else:
            outcome.revenue += action.revenue


def attribute(log: AttributionLog, start: datetime, end: datetime) -> list[Outcome]:
    """Rules 3-6: one outcome per served (not shadow) impression served in [start, end]."""
    counts = log.counts
    outcomes: dict[str, Outcome] = {}
    for served in log.impressions:
        if not start <= served.served_at <= end:
            continue
        if served.shadow:
            counts.shadow_impressions += 1
        else:
            counts.impressions += 1
            outcomes[served.recommendation_id] = Outcome(served)
    # The shopper's latest cited click or add to cart per item, for carry-over (rule 5).
    journey: dict[tuple[str, str], Outcome] = {}
    for action in sorted(log.actions, key=lambda a: (a.timestamp, a.received_at, a.event_id)):
        counts.events += 1
        outcome = (
            _cited(action, outcomes, journey, counts)
            if action.recommendation_id is not None
            else _carried(action, journey, counts)
        )
        if outcome is not None:
            _credit(outcome, action, counts)
    return list(outcomes.values())


def _cited(
    action: ShopperAction,
    outcomes: dict[str, Outcome],
    journey: dict[tuple[str, str], Outcome],
    counts: LogCounts,
) -> Outcome | None:
    counts.cited += 1
    outcome = outcomes.get(str(action.recommendation_id))
    if outcome is None:
        counts.cited_unknown += 1
        return None
    if not _attributable(outcome.served, action, counts):
        return None
    if action.event_type is not EventType.PURCHASE:
        journey[(action.user_id, action.item_id)] = outcome
    return outcome


def _carried(
    action: ShopperAction, journey: dict[tuple[str, str], Outcome], counts: LogCounts
) -> Outcome | None:
    if action.event_type is EventType.CLICK:
        return None
    carried = journey.get((action.user_id, action.item_id))
    if carried is None or action.timestamp - carried.served.served_at > PURCHASE_WINDOW:
        return None
    counts.carried_over += 1
    return carried
