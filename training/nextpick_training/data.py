"""The retrain job's data: the events read from the log (`nextpick_training.event_log`: erasures
applied, de-duplicated, windowed) in, model-ready sequences out. Pure.

The item vocabulary and the held-out split are built together (`build_dataset`): the last basket of
every user with two or more baskets (`model.batches.basket_starts`: one order, or one event) is held
out for the gate, and the vocabulary is the catalog plus the items of the remaining (training)
events. A held-out item neither mentions maps to index 0 (unknown), exactly as serving does.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from nextpick.domain.events import CatalogItem
from nextpick.domain.history import EVENT_INTENT
from nextpick.domain.item_attributes import item_tokens
from nextpick.domain.state import TimedInteraction
from nextpick_training.event_log import LogRecord
from nextpick_training.model.batches import basket_starts

UNKNOWN_ITEM = 0


def user_timelines(records: Iterable[LogRecord]) -> dict[str, list[LogRecord]]:
    """Each user's records in (timestamp, received_at, event_id) order; users sorted by id."""
    by_user: dict[str, list[LogRecord]] = defaultdict(list)
    for record in records:
        by_user[record.user_id].append(record)
    return {user: sorted(by_user[user], key=lambda r: r.order_key) for user in sorted(by_user)}


TRENDING_HALF_LIFE_DAYS = 7.0
TRENDING_SIZE = 500


def trending_items(
    records: Iterable[LogRecord], now: datetime, half_life_days: float = TRENDING_HALF_LIFE_DAYS
) -> list[list[Any]]:
    """`[[item_id, score], ...]`, best first: events weighted by their intent (`EVENT_INTENT`; only
    positive intent counts) and decayed with a 7-day half-life to `now`. What a shopper with no events
    sees (published in the manifest as `trending`)."""
    scores: dict[str, float] = defaultdict(float)
    for record in records:
        intent = EVENT_INTENT[record.event_type]
        # A search's matched items are not counted (domain/trending.py: `observed_steps`, the same rule).
        if intent <= 0 or not record.observed:
            continue
        age_days = max(0.0, (now - record.timestamp).total_seconds()) / 86_400
        scores[record.item_id] += intent * 0.5 ** (age_days / half_life_days)
    best = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[:TRENDING_SIZE]
    return [[item_id, round(score, 6)] for item_id, score in best]


def build_vocabulary(item_ids: Iterable[str], catalog_ids: Iterable[str] = ()) -> list[str | None]:
    """`[None, most frequent item, ..., then catalog items without events, by id]`.

    The vocabulary is the catalog plus whatever the events mention: every catalog item is in the
    published model, including items that never had an event (their vectors come from attributes).
    Index 0 is the unknown item; ties are broken by item id."""
    counts = Counter(item_ids)
    ordered = sorted(counts, key=lambda item: (-counts[item], item))
    unseen = sorted(set(catalog_ids) - set(counts))
    return [None, *ordered, *unseen]


def vocabulary_index(items: Sequence[str | None]) -> dict[str, int]:
    return {item: index for index, item in enumerate(items) if item is not None}


def encode(timeline: Iterable[LogRecord], index: Mapping[str, int]) -> list[TimedInteraction]:
    """A user's records as timed model interactions; items outside the vocabulary become index 0."""
    out: list[TimedInteraction] = []
    for record in timeline:
        event_type, strength = record.interaction_fields
        out.append(
            (index.get(record.item_id, UNKNOWN_ITEM), event_type, strength, record.timestamp.timestamp())
        )
    return out


def catalog_tokens(items: Sequence[str | None], catalog: Iterable[CatalogItem]) -> list[list[str]]:
    """Each vocabulary item's attribute tokens (`nextpick.domain.item_attributes`); [] if not in the catalog."""
    by_id = {item.item_id: item for item in catalog}
    tokens: list[list[str]] = []
    for item_id in items:
        entry = by_id.get(item_id) if item_id is not None else None
        tokens.append(item_tokens(entry.category, entry.price, entry.attributes) if entry else [])
    return tokens


@dataclass
class Dataset:
    """Model-ready data of one training window.

    `train_sequences[u]` is user `users[u]`'s events minus the held-out last basket (all of them when
    the user has a single basket); it only contains vocabulary items (indices >= 1).
    The gate's held-out set is, for every user with two or more baskets, the history
    `train_sequences[u]`, the time `holdout_nows[j]` of the held-out basket and its distinct items
    `holdout_targets[j]` (0 where the training events and the catalog never mention the item).
    `holdout_item_ids[j]` are the target ids, so another model's vocabulary can map them.
    """

    items: list[str | None]
    users: list[str]
    train_sequences: list[list[TimedInteraction]]
    item_tokens: list[list[str]] = field(default_factory=list)
    holdout_users: list[int] = field(default_factory=list)
    holdout_targets: list[list[int]] = field(default_factory=list)
    holdout_item_ids: list[list[str]] = field(default_factory=list)
    holdout_nows: list[float] = field(default_factory=list)
    events: int = 0
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None

    @property
    def num_items(self) -> int:
        """Vocabulary size including index 0 (the contract's `num_items`)."""
        return len(self.items)

    @property
    def train_events(self) -> int:
        return sum(len(s) for s in self.train_sequences)

    @property
    def holdout_histories(self) -> list[list[TimedInteraction]]:
        return [self.train_sequences[u] for u in self.holdout_users]

    def holdout_history_ids(self) -> list[list[tuple[str, int, float, float]]]:
        """Held-out histories with item ids, for mapping into another vocabulary."""
        return [
            [(self._item_id(i), t, s, ts) for i, t, s, ts in self.train_sequences[u]]
            for u in self.holdout_users
        ]

    def with_holdout_sample(self, max_users: int) -> Dataset:
        """The same data with at most `max_users` held-out users, chosen by a hash of the user id
        (deterministic, unrelated to activity); training data is unchanged."""
        if len(self.holdout_users) <= max_users:
            return self

        def rank(j: int) -> str:
            return hashlib.sha256(self.users[self.holdout_users[j]].encode()).hexdigest()

        keep = sorted(sorted(range(len(self.holdout_users)), key=rank)[:max_users])
        return dataclasses.replace(
            self,
            holdout_users=[self.holdout_users[j] for j in keep],
            holdout_targets=[self.holdout_targets[j] for j in keep],
            holdout_item_ids=[self.holdout_item_ids[j] for j in keep],
            holdout_nows=[self.holdout_nows[j] for j in keep],
        )

    def _item_id(self, index: int) -> str:
        item = self.items[index]
        assert item is not None
        return item


def _last_basket_start(timeline: Sequence[LogRecord]) -> int:
    """Where the user's last basket starts (0 when the whole timeline is one basket)."""
    codes = np.fromiter((r.event_type.code for r in timeline), dtype=np.int32, count=len(timeline))
    times = np.fromiter((r.timestamp.timestamp() for r in timeline), dtype=np.float64, count=len(timeline))
    return int(basket_starts(codes, times)[-1])


def build_dataset(
    records: Iterable[LogRecord], catalog: Sequence[CatalogItem] = (), hold_out_last: bool = True
) -> Dataset:
    """Timelines -> held-out last basket -> vocabulary (catalog + training events) -> encoded sequences."""
    timelines = user_timelines(records)
    users = list(timelines)
    train_parts: list[list[LogRecord]] = []
    held: list[tuple[int, list[LogRecord]]] = []
    first: datetime | None = None
    last: datetime | None = None
    events = 0
    for u, user in enumerate(users):
        timeline = timelines[user]
        events += len(timeline)
        first = timeline[0].timestamp if first is None else min(first, timeline[0].timestamp)
        last = timeline[-1].timestamp if last is None else max(last, timeline[-1].timestamp)
        cut = _last_basket_start(timeline) if hold_out_last else 0
        if cut > 0:
            train_parts.append(timeline[:cut])
            held.append((u, timeline[cut:]))
        else:
            train_parts.append(timeline)
    items = build_vocabulary((r.item_id for part in train_parts for r in part), (c.item_id for c in catalog))
    index = vocabulary_index(items)
    return Dataset(
        items=items,
        users=users,
        train_sequences=[encode(part, index) for part in train_parts],
        item_tokens=catalog_tokens(items, catalog),
        holdout_users=[u for u, _ in held],
        holdout_targets=[sorted({index.get(r.item_id, UNKNOWN_ITEM) for r in basket}) for _, basket in held],
        holdout_item_ids=[sorted({r.item_id for r in basket}) for _, basket in held],
        holdout_nows=[basket[0].timestamp.timestamp() for _, basket in held],
        events=events,
        first_timestamp=first,
        last_timestamp=last,
    )
