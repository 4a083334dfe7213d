"""Non-neural baselines, each a scorer with the same interface as the served model.

They are fitted on the training sequences of a split and scored with the functions of
:mod:`nextpick_training.evaluate` in the same run as the model, so the comparison is like for like
(same users, same targets, same exclusion, full ranking).

Training sequences may hold untimed `Interaction`s or `TimedInteraction`s (only the item, the first
field, is read, plus the timestamp where a baseline decays by age). Time-agnostic baselines are
:class:`~nextpick_training.evaluate.Scorer`s ``(history, exclude)`` (wrap them with
`evaluate.timed` for the next-basket harness); :class:`BuyAgain` is a timed scorer
``(history, now, exclude)``.

Memory: nothing here is a dense [num_items, num_items] matrix. Co-occurrences and transitions are
counted as sparse pair keys (``i * num_items + j``, reduced with ``np.unique``) and kept as CSR
rows (:class:`SparseRows`); item-kNN keeps the top ``neighbours`` per item.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .datasets import SECONDS_PER_DAY, attribute_values

# Added to every baseline score so that, where the evidence ties (e.g. no co-occurrence at all),
# more popular items come first instead of arbitrary ones.
POPULARITY_TIEBREAK = 1e-6
# Pairs buffered before they are reduced with np.unique: 4M int64 keys = 32 MB.
PAIR_BUFFER = 4_000_000
# Entries sorted at once when item-kNN picks each item's top neighbours (~100 MB of sort state).
SORT_BLOCK = 4_000_000

Event = tuple[Any, ...]  # an Interaction (item, event type, strength) or a TimedInteraction (+ timestamp)


def _column(seq: Sequence[Event], field: int, dtype: type = np.int64) -> np.ndarray:
    return np.fromiter((e[field] for e in seq), dtype=dtype, count=len(seq))


def _items(seq: Sequence[Event], num_items: int) -> np.ndarray:
    items = _column(seq, 0)
    return items[(items > 0) & (items < num_items)]


def _item_counts(sequences: Sequence[Sequence[Event]], num_items: int) -> np.ndarray:
    counts = np.zeros(num_items, dtype=np.float64)
    for seq in sequences:
        counts += np.bincount(_items(seq, num_items), minlength=num_items)
    return counts


def _masked(scores: np.ndarray, exclude: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(exclude) > 0.5, -1e10, scores).astype(np.float64)


def _recent_items(history: Sequence[Event], num_items: int, window: int) -> np.ndarray:
    """The last ``window`` known items, most recent first."""
    return _items(history, num_items)[::-1][:window]


class _PairCounter:
    """Sums weights per pair key, bounded in memory: buffered keys are reduced every PAIR_BUFFER."""

    def __init__(self) -> None:
        self.keys: np.ndarray = np.zeros(0, dtype=np.int64)
        self.weights: np.ndarray = np.zeros(0, dtype=np.float64)
        self._buffer: list[tuple[np.ndarray, np.ndarray]] = []
        self._buffered = 0

    def add(self, keys: np.ndarray, weight: float | np.ndarray = 1.0) -> None:
        self._buffer.append((keys, np.broadcast_to(np.asarray(weight, dtype=np.float64), keys.shape)))
        self._buffered += keys.size
        if self._buffered >= PAIR_BUFFER:
            self._reduce()

    def _reduce(self) -> None:
        keys = np.concatenate([self.keys, *(k for k, _w in self._buffer)])
        weights = np.concatenate([self.weights, *(w for _k, w in self._buffer)])
        self.keys, inverse = np.unique(keys, return_inverse=True)
        self.weights = np.bincount(inverse, weights=weights, minlength=self.keys.size)
        self._buffer, self._buffered = [], 0

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        self._reduce()
        return self.keys, self.weights


def _top_per_row(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, top: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries sorted by row, largest value first, keeping the `top` first of each row."""
    order = np.lexsort((-values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    if top is not None:
        starts = np.searchsorted(rows, rows, side="left")
        keep = (np.arange(rows.size) - starts) < top
        rows, cols, values = rows[keep], cols[keep], values[keep]
    return rows, cols, values


@dataclass(frozen=True)
class SparseRows:
    """Rows of a sparse [num_items, num_items] matrix (CSR): row i is
    ``indices[indptr[i]:indptr[i+1]]`` with ``values`` alike."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray

    @classmethod
    def from_entries(
        cls, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, num_items: int, top: int | None = None
    ) -> SparseRows:
        """Entries (any order, no duplicates) -> CSR, keeping the `top` largest values per row."""
        rows, cols, values = _top_per_row(rows, cols, values, top)
        return cls._of_sorted(rows, cols, values, num_items)

    @classmethod
    def symmetric(
        cls, i: np.ndarray, j: np.ndarray, values: np.ndarray, num_items: int, top: int | None = None
    ) -> SparseRows:
        """Entries (i, j, v) mirrored to (j, i, v) as well, as CSR with the `top` largest per row.

        Built in blocks of rows of about SORT_BLOCK entries each, so the sort never holds all the
        mirrored entries at once (at 300k events over 100k items: 30M entries)."""
        per_row = np.bincount(i, minlength=num_items) + np.bincount(j, minlength=num_items)
        block_of_row = np.cumsum(per_row) // SORT_BLOCK
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for block in np.unique(block_of_row):
            first, last = np.flatnonzero(block_of_row == block)[[0, -1]]
            in_i, in_j = (i >= first) & (i <= last), (j >= first) & (j <= last)
            parts.append(
                _top_per_row(
                    np.concatenate([i[in_i], j[in_j]]),
                    np.concatenate([j[in_i], i[in_j]]),
                    np.concatenate([values[in_i], values[in_j]]),
                    top,
                )
            )
        rows, cols, vals = (np.concatenate([p[k] for p in parts]) for k in range(3))
        return cls._of_sorted(rows, cols, vals, num_items)

    @classmethod
    def _of_sorted(cls, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, num_items: int) -> SparseRows:
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=num_items))])
        return cls(indptr.astype(np.int64), cols.astype(np.int32), values.astype(np.float64))

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.indptr[i], self.indptr[i + 1]
        return self.indices[a:b], self.values[a:b]

    def get(self, i: int, j: int) -> float:
        cols, vals = self.row(i)
        hit = np.flatnonzero(cols == j)
        return float(vals[hit[0]]) if hit.size else 0.0

    def add_rows(self, scores: np.ndarray, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """scores + sum_r weights[r] * row(rows[r])."""
        if len(rows) == 0:
            return scores
        cols = [self.row(int(i)) for i in rows]
        index = np.concatenate([c for c, _v in cols])
        values = np.concatenate([w * v for w, (_c, v) in zip(weights, cols, strict=True)])
        return scores + np.bincount(index, weights=values, minlength=scores.size)


class Popularity:
    """Most interacted-with items overall; with `half_life_days`, each training event counts
    0.5^(age / half-life), age measured from the latest training event (the same ranking as from
    any later moment: the factor is common to all items). Needs timestamps then."""

    def __init__(
        self, sequences: Sequence[Sequence[Event]], num_items: int, half_life_days: float | None = None
    ) -> None:
        self.num_items = num_items
        if half_life_days is None:
            self.counts = _item_counts(sequences, num_items)
            return
        items = np.concatenate([_column(s, 0) for s in sequences])
        times = np.concatenate([_column(s, 3, np.float64) for s in sequences])
        known = (items > 0) & (items < num_items)
        ages = (times.max() - times[known]) / SECONDS_PER_DAY
        self.counts = np.bincount(items[known], weights=0.5 ** (ages / half_life_days), minlength=num_items)

    def __call__(self, history: Sequence[Event], exclude: np.ndarray) -> np.ndarray:
        return _masked(self.counts.copy(), exclude)


def user_pair_counts(
    sequences: Sequence[Sequence[Event]], num_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pair keys i * num_items + j with i < j, number of users who have both, users per item),
    over each user's distinct items."""
    counter = _PairCounter()
    users_per_item = np.zeros(num_items, dtype=np.float64)
    for seq in sequences:
        distinct = np.unique(_items(seq, num_items))
        users_per_item[distinct] += 1.0
        if distinct.size >= 2:
            a, b = np.triu_indices(distinct.size, 1)
            counter.add(distinct[a] * num_items + distinct[b])
    keys, counts = counter.result()
    return keys, counts, users_per_item


class ItemKNN:
    """Item-to-item cosine similarity of co-occurrence in users' histories, sparse.

    ``sim[i, j] = co(i, j) / (sqrt(n_i * n_j) + shrink)`` over distinct items per user, keeping each
    item's `neighbours` most similar items (None = all); a user's score is
    ``sum_r decay^r * sim[h_r]`` over their ``window`` most recent items h_0 (newest), ...
    ``self_weight`` is the similarity of an item to itself (0: the classic item-kNN, which never
    recommends the history back; 1 makes it repeat-aware, for shops where nothing is excluded).
    `pairs` = a precomputed `user_pair_counts(sequences, num_items)` (tuning reuses it).
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[Event]],
        num_items: int,
        window: int = 50,
        decay: float = 0.9,
        shrink: float = 0.0,
        neighbours: int | None = None,
        self_weight: float = 0.0,
        pairs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.num_items, self.window, self.decay, self.self_weight = num_items, window, decay, self_weight
        self.pairs = pairs if pairs is not None else user_pair_counts(sequences, num_items)
        keys, co, n = self.pairs
        # int32 indices: half the memory of the 2 x pairs entries (item indices stay below 2^31).
        i, j = (keys // num_items).astype(np.int32), (keys % num_items).astype(np.int32)
        sim = co / (np.sqrt(n[i] * n[j]) + shrink + 1e-12)
        self.similarity = SparseRows.symmetric(i, j, sim, num_items, neighbours)
        self.popularity = n / max(n.max(initial=0.0), 1.0)

    def rescored(self, window: int, decay: float, self_weight: float = 0.0) -> ItemKNN:
        """The same neighbours with other scoring parameters (tuning shares the similarity)."""
        other = copy.copy(self)
        other.window, other.decay, other.self_weight = window, decay, self_weight
        return other

    def __call__(self, history: Sequence[Event], exclude: np.ndarray) -> np.ndarray:
        recent = _recent_items(history, self.num_items, self.window)
        mix = self.decay ** np.arange(recent.size)
        scores = POPULARITY_TIEBREAK * self.popularity
        if self.self_weight:
            scores = scores + self.self_weight * np.bincount(recent, weights=mix, minlength=self.num_items)
        return _masked(self.similarity.add_rows(scores, recent, mix), exclude)


def transition_counts(
    sequences: Sequence[Sequence[Event]], num_items: int, skip_weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """(pair keys a * num_items + b, weight): b right after a counts 1, two steps after a
    `skip_weight`."""
    counter = _PairCounter()
    for seq in sequences:
        items = _items(seq, num_items)
        for gap, weight in ((1, 1.0), (2, skip_weight)):
            if weight > 0 and items.size > gap:
                counter.add(items[:-gap] * num_items + items[gap:], weight)
    return counter.result()


class Transitions:
    """First-order "what came right after" model, smoothed toward popularity, sparse.

    ``P(j | i) = (T[i, j] + alpha * pop(j)) / (n_i + alpha)``, with ``T`` counting j directly after
    i (plus, with weight ``skip_weight``, j two steps after i) and n_i its row total. A user's score
    mixes the rows of their ``window`` most recent items with weights ``decay^r`` (newest first):
    the last item dominates, older ones back it off, and items never seen in transitions fall back
    to popularity. The smoothing term is added analytically, so rows stay sparse.
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[Event]],
        num_items: int,
        window: int = 5,
        decay: float = 0.6,
        alpha: float = 5.0,
        skip_weight: float = 0.5,
    ) -> None:
        self.num_items, self.window, self.decay, self.alpha = num_items, window, decay, alpha
        keys, weights = transition_counts(sequences, num_items, skip_weight)
        rows, cols = keys // num_items, keys % num_items
        self.counts = SparseRows.from_entries(rows, cols, weights, num_items)
        self.row_totals = np.bincount(rows, weights=weights, minlength=num_items)
        pop = _item_counts(sequences, num_items)
        self.popularity = pop / max(pop.sum(), 1.0)

    def probability(self, i: int, j: int) -> float:
        smoothed = self.counts.get(i, j) + self.alpha * self.popularity[j]
        return float(smoothed / (self.row_totals[i] + self.alpha))

    def __call__(self, history: Sequence[Event], exclude: np.ndarray) -> np.ndarray:
        recent = _recent_items(history, self.num_items, self.window)
        if recent.size == 0:
            return _masked(self.popularity.copy(), exclude)
        mix = self.decay ** np.arange(recent.size)
        denominators = self.row_totals[recent] + self.alpha
        smoothing = float(np.sum(mix * self.alpha / denominators))
        scores = (POPULARITY_TIEBREAK + smoothing) * self.popularity
        return _masked(self.counts.add_rows(scores, recent, mix / denominators), exclude)


class UserFrequency:
    """Each user's own most frequent items (a repurchase reference, not an ML-100K baseline)."""

    def __init__(self, sequences: Sequence[Sequence[Event]], num_items: int) -> None:
        self.num_items = num_items
        pop = _item_counts(sequences, num_items)
        self.popularity = pop / max(pop.max(), 1.0)

    def __call__(self, history: Sequence[Event], exclude: np.ndarray) -> np.ndarray:
        scores = POPULARITY_TIEBREAK * self.popularity
        scores = scores + np.bincount(_items(history, self.num_items), minlength=self.num_items)
        return _masked(scores, exclude)


class BuyAgain:
    """ "Recommend what this shopper buys most, most recently" (a timed scorer).

    score(i) = sum over the user's events on i of 0.5^(age_days / half_life_days), age = now minus
    the event's time (`half_life_days=None`: no decay, a plain count). Every item the user has had
    ranks above every item they have not; unseen items (and own items whose weights tie) are
    ordered by training popularity. The user's weights are rescaled by their largest term before
    summing (the same ranking; an event 1,000 half-lives old still counts as "seen").
    """

    def __init__(
        self, sequences: Sequence[Sequence[Event]], num_items: int, half_life_days: float | None = None
    ) -> None:
        self.num_items, self.half_life_days = num_items, half_life_days
        pop = _item_counts(sequences, num_items)
        self.popularity = pop / (pop.max(initial=0.0) + 1.0)  # in [0, 1)

    def __call__(self, history: Sequence[Event], now: float, exclude: np.ndarray) -> np.ndarray:
        items = _column(history, 0)
        known = (items > 0) & (items < self.num_items)
        if self.half_life_days is None:
            weights = np.ones(int(known.sum()))
        else:
            times = _column(history, 3, np.float64)
            exponent = -(now - times[known]) / SECONDS_PER_DAY / self.half_life_days
            weights = 2.0 ** (exponent - (exponent.max() if exponent.size else 0.0))
        own = np.bincount(items[known], weights=weights, minlength=self.num_items)
        seen = np.bincount(items[known], minlength=self.num_items) > 0
        scores = np.where(seen, 1.0 + own + POPULARITY_TIEBREAK * self.popularity, self.popularity)
        return _masked(scores, exclude)


class AttributePopularity:
    """Scores any item, with or without events, by how popular its attribute values are.

    For each attribute in `attributes`, a value's global rate is the number of training events on
    items carrying it (`normalise="events"`) or that divided by the number of trained items carrying
    it (`"per_item"`: how popular an average item with this value is), scaled to [0, 1]. With
    `personal > 0` it is mixed with the user's own rate (their history's events on items with the
    value, scaled to [0, 1]): ``(1 - personal) * global + personal * user``. An item's score sums,
    over attributes, the `aggregate` ("mean" or "max") over its values; popularity breaks ties.
    """

    def __init__(
        self,
        sequences: Sequence[Sequence[Event]],
        num_items: int,
        item_attributes: Mapping[int, Mapping[str, str]],
        attributes: Sequence[str] = ("genre",),
        aggregate: str = "mean",
        normalise: str = "per_item",
        personal: float = 0.0,
    ) -> None:
        self.num_items, self.aggregate, self.personal = num_items, aggregate, personal
        counts = _item_counts(sequences, num_items)
        self.popularity = counts / max(counts.max(initial=0.0), 1.0)
        # Per attribute: (item index per incidence, value index per incidence, global rate per value).
        self.incidences: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for name in attributes:
            values: dict[str, int] = {}
            pairs = [
                (item, values.setdefault(v, len(values)))
                for item, attrs in item_attributes.items()
                if 0 < item < num_items
                for v in attribute_values(attrs, name)
            ]
            if not pairs:
                continue
            items, value_ids = (np.asarray(x, dtype=np.int64) for x in zip(*pairs, strict=True))
            rate: np.ndarray = np.bincount(value_ids, weights=counts[items], minlength=len(values))
            if normalise == "per_item":
                rate = rate / np.maximum(
                    np.bincount(value_ids, weights=counts[items] > 0, minlength=len(values)), 1.0
                )
            self.incidences.append((items, value_ids, rate / max(rate.max(), 1e-12)))

    def __call__(self, history: Sequence[Event], exclude: np.ndarray) -> np.ndarray:
        own = np.bincount(_items(history, self.num_items), minlength=self.num_items).astype(np.float64)
        scores = POPULARITY_TIEBREAK * self.popularity
        for items, value_ids, rate in self.incidences:
            value_score = rate
            if self.personal > 0:
                mine = np.bincount(value_ids, weights=own[items], minlength=rate.size)
                value_score = (1 - self.personal) * rate + self.personal * mine / max(mine.max(), 1.0)
            per_incidence = value_score[value_ids]
            if self.aggregate == "max":
                item_score = np.zeros(self.num_items)
                np.maximum.at(item_score, items, per_incidence)
            else:
                total = np.bincount(items, weights=per_incidence, minlength=self.num_items)
                item_score = total / np.maximum(np.bincount(items, minlength=self.num_items), 1)
            scores = scores + item_score
        return _masked(scores, exclude)


class RandomOrder:
    """Every allowed item scores the same: under the metrics' expectation over random tie-breaking
    this is exactly the expected value of a uniformly random list (no sampling noise)."""

    def __init__(self, num_items: int) -> None:
        self.num_items = num_items

    def __call__(self, history: Sequence[Event], exclude: np.ndarray) -> np.ndarray:
        return _masked(np.zeros(self.num_items), exclude)
