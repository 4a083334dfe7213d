"""The synthetic shop every serving benchmark replays: shoppers, a catalog and their events.

Event ids are UUIDs (36 characters), as a storefront would generate them. The state item now keeps an
8-byte key per processed event whatever the id's length; the cost section still sizes the old layout
(the last 200 ids, raw) with these ids, for comparison."""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta

# A typical e-commerce funnel: mostly views, a few purchases.
from nextpick.adapters.model_registry import EVENT_TYPES
from nextpick.domain.events import CatalogItem

EVENT_WEIGHTS = (0.70, 0.15, 0.07, 0.02, 0.04, 0.02)
CATEGORIES = 20
# One item in 20 (5 %) is out of stock: fixed by index, so the ranking benchmarks can build the
# exclusion set of a million-item catalog without building the catalog.
OUT_OF_STOCK_EVERY = 20


def popular_item(rng: random.Random, num_items: int) -> int:
    """An item index in 1..num_items-1, log-uniform: a few items get most of the traffic."""
    return min(num_items - 1, int((num_items - 1) ** rng.random()))


def event_bodies(num_items: int, count: int, users: int, seed: int = 0) -> list[str]:
    """`count` POST /events bodies (one event each) from `users` shoppers, stamped in the recent past."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=1)
    bodies = []
    for position in range(count):
        event_type = rng.choices(EVENT_TYPES, EVENT_WEIGHTS)[0]
        event: dict[str, str | int] = {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "user_id": f"user-{rng.randrange(users)}",
            "item_id": f"item-{popular_item(rng, num_items)}",
            "event_type": event_type,
            "timestamp": (start + timedelta(milliseconds=position)).isoformat().replace("+00:00", "Z"),
        }
        if event_type == "rate":
            event["rating"] = rng.randint(1, 5)
        bodies.append(json.dumps(event))
    return bodies


def is_in_stock(index: int) -> bool:
    return index % OUT_OF_STOCK_EVERY != 0


def out_of_stock_ids(num_items: int) -> frozenset[str]:
    return frozenset(f"item-{index}" for index in range(1, num_items) if not is_in_stock(index))


def catalog(num_items: int, limit: int | None = None, seed: int = 0) -> list[CatalogItem]:
    """Catalog entries for the model's items (the first `limit` of them): 20 categories, 5 % out of stock."""
    rng = random.Random(seed)
    last = num_items if limit is None else min(num_items, limit + 1)
    return [
        CatalogItem(
            item_id=f"item-{index}",
            category=f"category-{index % CATEGORIES}",
            price=round(rng.uniform(1, 200), 2),
            stock=rng.randint(1, 100) if is_in_stock(index) else 0,
        )
        for index in range(1, last)
    ]
