"""A generated demo shop: a catalog and a history of shoppers whose tastes have structure.

Pure and seeded: the same `DemoConfig` always gives the same shop, so a walkthrough can name shoppers
and items. The structure is what makes personalization visible after one retrain:

* items belong to categories, each with a typical price; within a category items form a price-sorted
  "aisle", and shoppers drift to neighbouring items (item-to-item transitions the model can learn);
* item popularity is skewed (Zipf-like), so there is a popularity baseline to beat;
* every shopper prefers one or two categories and a price band (budget / mid / premium);
* sessions are funnels: views, sometimes an add_to_cart, sometimes a purchase; consumable categories
  are bought again (repurchase).

Nothing here talks to AWS; `seed.py` writes the shop into the local stack.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from nextpick.domain.events import CatalogItem, EventType, TrackedEvent
from nextpick.domain.rules import Promotion, RuleSet

# (category, typical price, consumable: bought again and again)
CATEGORIES: tuple[tuple[str, float, bool], ...] = (
    ("coffee", 14.0, True),
    ("tea", 9.0, True),
    ("pet-food", 32.0, True),
    ("skincare", 24.0, True),
    ("books", 18.0, False),
    ("kitchen", 45.0, False),
    ("outdoor", 120.0, False),
    ("electronics", 260.0, False),
    ("toys", 30.0, False),
    ("garden", 55.0, False),
    ("fitness", 70.0, False),
    ("office", 22.0, False),
)
# What goes in the same basket (bought together, docs/bought-together.md): a product of one category is
# often bought with "its" product of the companion category (the one at the same place in that aisle's
# price order: beans with their grinder, a tent with its boots), in the same order. Without baskets the
# demo's orders would hold one product each and its bought-together lists would all be fallbacks.
COMPANIONS: dict[str, str] = {
    "coffee": "kitchen",
    "tea": "books",
    "pet-food": "toys",
    "skincare": "fitness",
    "books": "office",
    "kitchen": "coffee",
    "outdoor": "fitness",
    "electronics": "office",
    "toys": "pet-food",
    "garden": "outdoor",
    "fitness": "outdoor",
    "office": "electronics",
}
# Of purchases whose companion is in stock, this share adds it to the same order.
COMPANION_SHARE = 0.5
_ADJECTIVES = ("Classic", "Organic", "Smart", "Compact", "Deluxe", "Everyday", "Pro", "Eco", "Nordic", "Bold")
_PRICE_BANDS = ("budget", "mid", "premium")


@dataclass(frozen=True)
class DemoConfig:
    seed: int = 7
    items: int = 3000
    shoppers: int = 800
    # How far back the history goes.
    history_days: int = 30
    sessions: tuple[int, int] = (2, 9)


@dataclass(frozen=True)
class Persona:
    """A named demo shopper: fixed tastes, so the walkthrough can tell a story about them."""

    user_id: str
    categories: tuple[str, ...]
    price_band: str
    description: str


PERSONAS: tuple[Persona, ...] = (
    Persona("alice", ("coffee", "kitchen"), "premium", "coffee lover, premium kitchen gear, rebuys beans"),
    Persona("bob", ("outdoor", "fitness"), "mid", "hikes and trains, mid-range budget"),
    Persona("chen", ("books", "office"), "budget", "reads a lot, buys cheap"),
    Persona("dana", ("pet-food", "toys"), "mid", "two dogs: pet food every week, toys now and then"),
)


# The demo's named rule set (docs/storefront.md, "The promotion"): stored by `nextpick serve --demo` with
# PUT /rule-sets/storefront, named by the storefront's recommendation calls (`rules=storefront`).
STOREFRONT_RULE_SET = "storefront"
# Two of the page's ten picks go to the featured products.
FEATURED_SLOTS = 2


def storefront_rules(items: Sequence[CatalogItem]) -> RuleSet:
    """One promotion, `featured`: the mid-priced in-stock product of each category (the middle of its
    aisle), so every category, and a category-only list, has a featured product to promote."""
    aisles: dict[str, list[CatalogItem]] = {}
    for item in items:
        if item.in_stock:
            aisles.setdefault(item.category, []).append(item)
    featured = tuple(
        sorted(aisle, key=lambda i: (i.price, i.item_id))[len(aisle) // 2].item_id
        for _, aisle in sorted(aisles.items())
    )
    return RuleSet(promotions=(Promotion(name="featured", slots=FEATURED_SLOTS, items=featured),))


@dataclass(frozen=True)
class Shopper:
    user_id: str
    # Category -> preference weight (sums to 1).
    tastes: dict[str, float]
    price_band: str


@dataclass(frozen=True)
class DemoShop:
    items: list[CatalogItem]
    shoppers: list[Shopper]
    # The anonymous shoppers' events, each with when nextpick "received" it (the log's received_at).
    history: list[tuple[TrackedEvent, datetime]]
    # The named shoppers' whole timeline, oldest first, ending minutes before `now`: sent through the
    # real event path when the stack starts, so their state holds all of it (and the log gets it then).
    live_events: dict[str, list[TrackedEvent]] = field(default_factory=dict)


def band_of(price: float, typical: float) -> str:
    if price < typical * 0.8:
        return "budget"
    return "premium" if price > typical * 1.35 else "mid"


def generate_catalog(config: DemoConfig, rng: random.Random) -> list[CatalogItem]:
    items: list[CatalogItem] = []
    per_category = math.ceil(config.items / len(CATEGORIES))
    for category, typical, consumable in CATEGORIES:
        prices = sorted(round(typical * rng.lognormvariate(0, 0.45), 2) for _ in range(per_category))
        for position, price in enumerate(prices):
            if len(items) >= config.items:
                break
            # About 4% of the catalog is sold out: ranking must leave it out.
            stock = 0 if rng.random() < 0.04 else rng.randint(1, 500)
            noun = category.replace("-", " ")
            items.append(
                CatalogItem(
                    item_id=f"{category}-{position:04d}",
                    category=category,
                    price=price,
                    stock=stock,
                    title=f"{rng.choice(_ADJECTIVES)} {noun} #{position}",
                    attributes={"band": band_of(price, typical), "consumable": consumable},
                )
            )
    return items


def _shoppers(config: DemoConfig, rng: random.Random) -> list[Shopper]:
    names = [c for c, _, _ in CATEGORIES]
    shoppers = [
        Shopper(p.user_id, {c: 1.0 / len(p.categories) for c in p.categories}, p.price_band) for p in PERSONAS
    ]
    for number in range(config.shoppers - len(shoppers)):
        liked = rng.sample(names, rng.choice((1, 2, 2)))
        weights = [rng.uniform(0.4, 1.0) for _ in liked]
        total = sum(weights)
        tastes = {c: w / total for c, w in zip(liked, weights, strict=True)}
        shoppers.append(Shopper(f"shopper-{number:04d}", tastes, rng.choice(_PRICE_BANDS)))
    return shoppers


class _Aisles:
    """Per category: items in price order with popularity weights, for sampling what a shopper sees."""

    def __init__(self, items: Sequence[CatalogItem], rng: random.Random) -> None:
        self.by_category: dict[str, list[CatalogItem]] = {}
        for item in items:
            self.by_category.setdefault(item.category, []).append(item)
        self.popularity: dict[str, float] = {}
        for aisle in self.by_category.values():
            ranks = list(range(len(aisle)))
            rng.shuffle(ranks)
            for item, rank in zip(aisle, ranks, strict=True):
                self.popularity[item.item_id] = 1.0 / (rank + 1) ** 0.9
        self.consumable = {c for c, _, consumable in CATEGORIES if consumable}
        self._position = {
            item.item_id: position
            for aisle in self.by_category.values()
            for position, item in enumerate(aisle)
        }

    def companion(self, item: CatalogItem) -> CatalogItem | None:
        """The product bought with `item` (COMPANIONS), if its category has one and it is in stock."""
        aisle = self.by_category.get(COMPANIONS.get(item.category, ""), [])
        if not aisle:
            return None
        partner = aisle[self._position[item.item_id] % len(aisle)]
        return partner if partner.in_stock else None

    def pick(self, rng: random.Random, category: str, band: str) -> int:
        """An index into the category's aisle: popular items, mostly in the shopper's price band."""
        aisle = self.by_category[category]
        weights = [
            self.popularity[item.item_id] * (4.0 if item.attributes.get("band") == band else 0.5)
            for item in aisle
        ]
        return rng.choices(range(len(aisle)), weights=weights)[0]


def _session(
    rng: random.Random,
    aisles: _Aisles,
    shopper: Shopper,
    bought: list[str],
    start: datetime,
) -> Iterator[tuple[EventType, CatalogItem, datetime]]:
    """One visit: views drifting along an aisle, then maybe add_to_cart, then maybe purchase."""
    moment = start
    category = rng.choices(list(shopper.tastes), weights=list(shopper.tastes.values()))[0]
    aisle = aisles.by_category[category]
    repurchase = [i for i in bought if i.startswith(category)] if category in aisles.consumable else []
    if repurchase and rng.random() < 0.5:
        again = rng.choice(repurchase)
        item = next(i for i in aisle if i.item_id == again)
        for event_type in (EventType.VIEW, EventType.ADD_TO_CART, EventType.PURCHASE):
            moment += timedelta(seconds=rng.randint(5, 90))
            yield event_type, item, moment
        return
    position = aisles.pick(rng, category, shopper.price_band)
    viewed: list[CatalogItem] = []
    for _ in range(rng.randint(2, 6)):
        viewed.append(aisle[position])
        moment += timedelta(seconds=rng.randint(10, 120))
        yield EventType.VIEW, aisle[position], moment
        # Neighbours in the aisle are similar items at a similar price.
        if rng.random() < 0.7:
            position = min(len(aisle) - 1, max(0, position + rng.choice((-2, -1, 1, 1, 2))))
        else:
            position = aisles.pick(rng, category, shopper.price_band)
    in_stock = [item for item in viewed if item.in_stock]
    if in_stock and rng.random() < 0.45:
        item = max(in_stock, key=lambda i: aisles.popularity[i.item_id] * rng.random())
        moment += timedelta(seconds=rng.randint(10, 60))
        yield EventType.ADD_TO_CART, item, moment
        if rng.random() < 0.65:
            moment += timedelta(seconds=rng.randint(30, 300))
            yield EventType.PURCHASE, item, moment
            companion = aisles.companion(item)
            # Minutes apart, so one order (orders split at 10 minutes: domain/history.py).
            if companion is not None and rng.random() < COMPANION_SHARE:
                for event_type in (EventType.ADD_TO_CART, EventType.PURCHASE):
                    moment += timedelta(seconds=rng.randint(20, 120))
                    yield event_type, companion, moment


def generate(config: DemoConfig | None = None, now: datetime | None = None) -> DemoShop:
    """The whole demo shop; the history ends an hour before `now`, the named shoppers' last session
    lies in the minutes before `now`."""
    config = config or DemoConfig()
    now = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    rng = random.Random(config.seed)
    items = generate_catalog(config, rng)
    aisles = _Aisles(items, rng)
    shoppers = _shoppers(config, rng)
    history_end = now - timedelta(hours=1)
    history: list[tuple[TrackedEvent, datetime]] = []
    live: dict[str, list[TrackedEvent]] = {}
    personas = {p.user_id for p in PERSONAS}
    for shopper in shoppers:
        bought: list[str] = []
        named = shopper.user_id in personas
        sessions = config.sessions[1] if named else rng.randint(*config.sessions)
        starts = sorted(
            history_end - timedelta(seconds=rng.uniform(3600, config.history_days * 86400))
            for _ in range(sessions)
        )
        if named:
            starts.append(now - timedelta(minutes=15))
        for number, start in enumerate(starts):
            session_id = f"{shopper.user_id}-s{number}"
            events: list[TrackedEvent] = []
            for event_type, item, moment in _session(rng, aisles, shopper, bought, start):
                if event_type is EventType.PURCHASE:
                    bought.append(item.item_id)
                events.append(
                    TrackedEvent(
                        event_id=f"{session_id}-e{len(events)}",
                        user_id=shopper.user_id,
                        item_id=item.item_id,
                        event_type=event_type,
                        timestamp=moment,
                        session_id=session_id,
                        quantity=1 if event_type is not EventType.VIEW else None,
                        price=item.price if event_type is EventType.PURCHASE else None,
                    )
                )
            if named:
                # Clamped into the past: the API refuses events from the future.
                live.setdefault(shopper.user_id, []).extend(e for e in events if e.timestamp <= now)
            else:
                history.extend((e, e.timestamp + timedelta(seconds=rng.uniform(0.5, 30))) for e in events)
    history.sort(key=lambda pair: pair[1])
    return DemoShop(items=items, shoppers=shoppers, history=history, live_events=live)
