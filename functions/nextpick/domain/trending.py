"""Live trending (issue 12): time-decayed event counts per hour bucket, kept by the log shipper and read
by `GET /trending`. Pure: the shipper's aggregation of a batch and the API's decay and merge of the last
hours' buckets; the DynamoDB reading and writing is adapters/dynamodb_trending.py. docs/trending.md."""

from __future__ import annotations

import heapq
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.erasure import is_tombstone_shaped
from nextpick.domain.events import REVIEW, SEARCH, EventType
from nextpick.domain.history import EVENT_INTENT
from nextpick.domain.ports import CatalogSource, TrendingCounts
from nextpick.errors import StorageUnavailable

# The bucket every event counts in; the catalog category is applied when reading (the log record carries
# no category, and the shipper does not read the catalog).
ALL_CATEGORIES = "_all"
HOUR = timedelta(hours=1)


def hour_of(moment: datetime) -> datetime:
    """The start of the UTC hour `moment` falls in."""
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def bucket_key(category: str, hour: datetime) -> str:
    """`<category>#<yyyy-mm-ddThh>`: the trending table's partition key."""
    return f"{category}#{hour_of(hour):%Y-%m-%dT%H}"


def bucket_hour(key: str) -> datetime:
    """The hour a bucket key names (the inverse of `bucket_key`)."""
    return datetime.strptime(key.rsplit("#", 1)[1], "%Y-%m-%dT%H").replace(tzinfo=UTC)


def event_weight(event_type: EventType) -> float:
    """The model's intent weight of an event type (history.EVENT_INTENT), floored at 0: removing from
    a cart says "not now" to one shopper, not "less popular" to everyone."""
    return max(EVENT_INTENT[event_type], 0.0)


def observed_steps(record: Mapping[str, Any]) -> list[tuple[str, EventType]]:
    """(item id, type) of what the shopper did to items, from a log record: a search's clicks (its
    matched items are nextpick's reading of the query, not interest the shop's other shoppers showed:
    counting them would let one popular word push its matches up trending), a review as a rating."""
    kind = record["event_type"]
    if kind == SEARCH:
        return [(item_id, EventType.CLICK) for item_id in record.get("clicked_items", ())]
    if kind == REVIEW:
        return [(record["item_id"], EventType.RATE)]
    return [(record["item_id"], EventType(kind))]


def aggregate(log_lines: Iterable[str]) -> dict[str, dict[str, float]]:
    """Bucket key -> item id -> summed weight of a batch's log records (domain/events.py log_record),
    by the hour they were received (not the shopper's timestamp: what is trending now, and a replayed
    old event cannot land in a bucket long since read). Tombstones (erasure records) count for nothing."""
    buckets: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for line in log_lines:
        record = json.loads(line)
        if is_tombstone_shaped(record):
            continue
        received = datetime.fromisoformat(record["received_at"].replace("Z", "+00:00"))
        counts = buckets[bucket_key(ALL_CATEGORIES, received)]
        for item_id, event_type in observed_steps(record):
            weight = event_weight(event_type)
            if weight > 0:
                counts[item_id] += weight
    return {key: dict(counts) for key, counts in buckets.items()}


@dataclass(frozen=True)
class TrendingWindow:
    """Which buckets an answer reads and how an hour's counts fade."""

    window_hours: int
    half_life_hours: float

    def hours(self, now: datetime) -> list[datetime]:
        """The current hour and the `window_hours - 1` before it, newest first."""
        current = hour_of(now)
        return [current - age * HOUR for age in range(self.window_hours)]

    def decay(self, age_hours: int) -> float:
        return float(0.5 ** (age_hours / self.half_life_hours))


@dataclass(frozen=True)
class TrendingItem:
    item_id: str
    score: float


def decayed_scores(
    counts_by_age: Mapping[int, Mapping[str, float]], window: TrendingWindow
) -> dict[str, float]:
    """Each item's hour counts summed, each decayed by the hour's age (0 = the current hour); only
    items with a positive score."""
    scores: dict[str, float] = defaultdict(float)
    for age, counts in counts_by_age.items():
        factor = window.decay(age)
        for item_id, count in counts.items():
            scores[item_id] += count * factor
    return {item_id: score for item_id, score in scores.items() if score > 0}


def best_in_stock(
    scores: Mapping[str, float], catalog: CatalogSnapshot, k: int, category: str | None
) -> list[TrendingItem]:
    """The best `k` of `scores`, dropping items out of stock or (when `category` is given) of another
    category or unknown to the catalog; ties by item id, so the answer is the same list every time."""
    eligible = (
        (item_id, score)
        for item_id, score in scores.items()
        if item_id not in catalog.out_of_stock
        and (category is None or catalog.category_of.get(item_id) == category)
    )
    best = heapq.nsmallest(k, eligible, key=lambda pair: (-pair[1], pair[0]))
    return [TrendingItem(item_id, score) for item_id, score in best]


def decayed_top_k(
    counts_by_age: Mapping[int, Mapping[str, float]],
    window: TrendingWindow,
    catalog: CatalogSnapshot,
    k: int,
    category: str | None,
) -> list[TrendingItem]:
    """`decayed_scores` then `best_in_stock`: the answer of `GET /trending` from one read."""
    return best_in_stock(decayed_scores(counts_by_age, window), catalog, k, category)


@dataclass
class LiveTrending:
    """`GET /trending`, and a new shopper's recommendations: the window's buckets read at once, decayed,
    filtered by the catalog snapshot.

    The counts read, and the scores decayed from them, are kept for `refresh_seconds` within the same
    hour: a read of 24 full buckets is ~1.4 MB and 48,000 values to parse and their merge ~9 ms
    (docs/trending.md, "Speed"), and the answer moves on an hour's scale; a new hour always reads
    afresh, since every bucket's age changes. One read and one score dict per container: bounded."""

    counts: TrendingCounts
    catalog: CatalogSource
    window: TrendingWindow
    refresh_seconds: float = 60.0
    # After a failed read the recommendation path asks again only this much later: a broken table costs
    # one failed read per container per 30 s, not one per new shopper (GET /trending still asks each time).
    retry_after_failure_seconds: float = 30.0
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    monotonic: Callable[[], float] = time.monotonic
    # (the current hour, when read, the decayed scores of the read)
    _read: tuple[datetime, float, dict[str, float]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _failed_at: float | None = field(default=None, init=False, repr=False, compare=False)

    def top(self, k: int, category: str | None) -> list[TrendingItem]:
        return best_in_stock(self.scores(), self.catalog.snapshot(), k, category)

    def scores(self) -> dict[str, float]:
        """Item id -> decayed score, positive only, stock not applied. The same dict object while a read
        is reused, so a caller may key its own derived caches on it (`id()`); `StorageUnavailable` when
        the table cannot be read."""
        hours = self.window.hours(self.clock())
        read = self._read
        if read is not None and read[0] == hours[0] and self.monotonic() - read[1] < self.refresh_seconds:
            return read[2]
        keys = [bucket_key(ALL_CATEGORIES, hour) for hour in hours]
        found = self.counts.read(keys)
        scores = decayed_scores(
            {age: found[key] for age, key in enumerate(keys) if key in found}, self.window
        )
        self._read = (hours[0], self.monotonic(), scores)
        return scores

    def scores_or_none(self) -> dict[str, float] | None:
        """`scores()`, or None when the table cannot be read now (or failed less than
        `retry_after_failure_seconds` ago): for callers with an answer of their own to fall back on."""
        failed_at = self._failed_at
        if failed_at is not None and self.monotonic() - failed_at < self.retry_after_failure_seconds:
            return None
        try:
            scores = self.scores()
        except StorageUnavailable:
            self._failed_at = self.monotonic()
            return None
        self._failed_at = None
        return scores

    def as_json(self, items: list[TrendingItem], category: str | None) -> dict[str, object]:
        return {
            "items": [{"item_id": item.item_id, "score": round(item.score, 6)} for item in items],
            "category": category,
            "window_hours": self.window.window_hours,
            "half_life_hours": self.window.half_life_hours,
        }
