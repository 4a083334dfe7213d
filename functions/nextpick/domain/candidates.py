"""The large-catalog ranking path (docs/ranking-1m.md): an inverted-file index (IVF) over the items'
explore vectors, so a request scores a few lists of items instead of the whole catalog.

At 1M items the exact `rank` streams the 256 MB item table per call (11 ms in numpy, 29 ms through
LiteRT with top-10 on this machine) and `argpartition` over 1M scores costs another 11 ms. Here the items
are grouped by k-means into `L` lists, stored contiguously in list order (a gather of scattered rows
costs 14x a contiguous slice: 2.5 ms against 0.18 ms for 32k rows); a request scores the `L` list
centroids, then the rows of the `probe` best lists exactly, in fp32, and picks its top K among those.

Scores stay log P of the model's mixture (docs/design.md, "Model v2"): history items take the repeat
side from the model's `rank_query` signature, every other item log(1 - g) + q . V[i] + B[i] - log Z.
Z, the explore softmax's normaliser over all items outside the history, is the one approximation:
exact over the probed lists, plus, for each list not probed, its first `SAMPLE_PER_LIST` rows (the rows
of a list are in random order) scaled up to the list's size: a stratified sample. It shifts every
explore score by the same amount, so it never reorders explore items among themselves, only explore
items against the shopper's own history items; the benchmark reports its error.

Every mask is honoured exactly: an excluded item is never returned, and a request whose allowed items
are few (a narrow category filter) is scored exactly over those items (`EXACT_SUBSET_MAX_ITEMS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The arrays of `explore_index.npz` (docs/model-contract.md); `probe` is stored as a 0-d array.
INDEX_ARRAYS = ("centroids", "offsets", "order", "table", "probe")
# Rows per unprobed list that estimate its share of the normaliser.
SAMPLE_PER_LIST = 8
# A request with at most this many allowed items may score exactly those (a gather of allowed rows:
# 75 ns a row on this machine, so 2.5 ms at 32k); with more, the lists are probed.
EXACT_SUBSET_MAX_ITEMS = 32_768
# A gathered row costs this many contiguous ones (2.46 ms against 0.18 ms for 32k rows of 64 floats,
# measured): the allowed items are scored exactly when that costs less than the lists probed for them.
GATHER_COST = 14


@dataclass(frozen=True)
class ExploreQuery:
    """What the model's `rank_query` signature says about one shopper (docs/model-contract.md)."""

    # [D + 1]: the explore query q, then 1.0 (it multiplies the bias column of the table)
    query: np.ndarray
    # [H] vocabulary index of each history slot (0 = padding)
    history_items: np.ndarray
    # [H] log g + log P_repeat of each filled slot (unused on padding)
    history_scores: np.ndarray
    # log(1 - g): the explore side's share (0.0 for a shopper without history)
    explore_offset: float
    # [H] True for a filled slot
    present: np.ndarray


@dataclass(frozen=True)
class ExploreIndex:
    """The IVF index of one model version: `explore_index.npz`, verified by `from_arrays`."""

    # [L, D + 1] float32: the mean (vector, bias) row of each list
    centroids: np.ndarray
    # [L + 1] int64: list j is rows offsets[j] : offsets[j + 1] of `table`
    offsets: np.ndarray
    # [R] int32: the vocabulary index of each table row; every item but 0, each once
    order: np.ndarray
    # [R, D + 1] float32: (V[i], B[i]) of each item, in list order
    table: np.ndarray
    # lists scored per request, chosen at build for recall@10 >= 0.99 on calibration queries
    probe: int
    # derived at load: each vocabulary index's table row (-1 for index 0)
    row_of: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    # derived at load: the sample rows estimating each unprobed list's share of Z
    sample_rows: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0), np.float32))
    sample_list: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    sample_weight: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.float64))

    @property
    def lists(self) -> int:
        return len(self.offsets) - 1

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], num_items: int) -> ExploreIndex:
        """The index in `arrays` for a model of `num_items` items; ValueError naming what is wrong."""
        missing = [name for name in INDEX_ARRAYS if name not in arrays]
        if missing:
            raise ValueError(f"item index lacks {missing}")
        centroids = np.ascontiguousarray(arrays["centroids"], dtype=np.float32)
        offsets = np.asarray(arrays["offsets"], dtype=np.int64)
        order = np.asarray(arrays["order"], dtype=np.int64)
        table = np.ascontiguousarray(arrays["table"], dtype=np.float32)
        probe = int(np.asarray(arrays["probe"]))
        lists = len(centroids)
        if centroids.ndim != 2 or table.ndim != 2 or table.shape[1] != centroids.shape[1]:
            raise ValueError("item index centroids and table must be 2-D with one width")
        if offsets.shape != (lists + 1,) or offsets[0] != 0 or np.any(np.diff(offsets) < 0):
            raise ValueError("item index offsets must rise from 0, one per list plus one")
        if offsets[-1] != len(table) or order.shape != (len(table),) or len(table) != num_items - 1:
            raise ValueError(f"item index must hold every item but 0 of {num_items} exactly once")
        row_of = np.full(num_items, -1, dtype=np.int64)
        if order.min(initial=1) < 1 or order.max(initial=1) >= num_items:
            raise ValueError("item index order holds an index outside 1 .. num_items - 1")
        row_of[order] = np.arange(len(order))
        if np.count_nonzero(row_of >= 0) != len(order):
            raise ValueError("item index order repeats an item")
        if not 1 <= probe <= lists or not np.isfinite(table).all() or not np.isfinite(centroids).all():
            raise ValueError("item index probe must be 1 .. lists and its rows finite")
        sizes = np.diff(offsets)
        taken = np.minimum(sizes, SAMPLE_PER_LIST)
        sample_idx = np.concatenate([np.arange(o, o + t) for o, t in zip(offsets[:-1], taken, strict=True)])
        sample_list = np.repeat(np.arange(lists), taken)
        weight = sizes[sample_list] / taken[sample_list]
        return cls(centroids, offsets, order, table, probe, row_of, table[sample_idx], sample_list, weight)

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "centroids": self.centroids,
            "offsets": self.offsets,
            "order": self.order.astype(np.int32),
            "table": self.table,
            "probe": np.asarray(self.probe, dtype=np.int32),
        }

    def list_of_rows(self) -> np.ndarray:
        """[R] the list of each table row (what a catalog refresh extends)."""
        return np.repeat(np.arange(self.lists), np.diff(self.offsets))


@dataclass(frozen=True)
class Candidates:
    """The best allowed items of one request: vocabulary indices and their log P scores, best first."""

    indices: np.ndarray
    scores: np.ndarray
    # how the explore items were found: "probe" (IVF) or "subset" (exact over the allowed items)
    path: str


def history_of(explore: ExploreQuery, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """The shopper's history items (each once, within the vocabulary) and their repeat-side scores."""
    filled = explore.history_items[explore.present]
    in_range = (filled > 0) & (filled < num_items)
    history, history_scores = filled[in_range], explore.history_scores[explore.present][in_range]
    if len(np.unique(history)) < len(history):
        # An item in two slots (serving's history never repeats one): `rank` adds their scores up.
        history, slot = np.unique(history, return_inverse=True)
        history_scores = np.bincount(slot, weights=history_scores).astype(np.float32)
    return history, history_scores


def with_history(
    explore: ExploreQuery,
    items: np.ndarray,
    log_explore: np.ndarray,
    history: tuple[np.ndarray, np.ndarray],
    exclude: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """`rank`'s scores of the allowed `items` outside the history (log(1 - g) + their explore log
    probability `log_explore`) and of the allowed history items (their repeat side), as one list."""
    history_items, history_scores = history
    keep = exclude[items] == 0.0
    if history_items.size:
        keep &= ~np.isin(items, history_items)
    own = exclude[history_items] == 0.0
    return (
        np.concatenate([items[keep], history_items[own]]),
        np.concatenate(
            [
                (log_explore[keep] + explore.explore_offset).astype(np.float32),
                history_scores[own].astype(np.float32),
            ]
        ),
    )


def top(indices: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    if len(scores) > k:
        best = np.argpartition(-scores, k - 1)[:k]
        indices, scores = indices[best], scores[best]
    ordered = np.argsort(-scores, kind="stable")
    return indices[ordered], scores[ordered]


def _probed_rows(index: ExploreIndex, lists: np.ndarray) -> np.ndarray:
    return np.concatenate([np.arange(index.offsets[j], index.offsets[j + 1]) for j in lists])


def search(
    index: ExploreIndex,
    explore: ExploreQuery,
    exclude: np.ndarray,
    k: int,
    probe: int | None = None,
    subset_max: int = EXACT_SUBSET_MAX_ITEMS,
) -> Candidates | None:
    """The top `k` items `exclude` allows, or None when this path cannot promise them (fewer than `k`
    allowed among the probed items): the caller then runs the exact `rank`. `probe` (default: the
    index's) lists are scored; a request with at most `subset_max` allowed items is scored exactly."""
    # Counted on a boolean mask: count_nonzero over a float32 mask that is mostly 1.0 (a category filter
    # at 1M items) took 7 ms, over the boolean 0.3 ms (measured).
    allowed = exclude == 0.0
    allowed[0] = False
    allowed_count = int(np.count_nonzero(allowed))
    if allowed_count <= 0 or k <= 0:
        return Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32), "subset")
    q = explore.query
    history, history_scores = history_of(explore, len(index.row_of))
    lists = index.lists
    wanted = probe if probe is not None else index.probe
    # A random mask thins every list alike: probing 1/f as many lists (f = the allowed share) keeps as
    # many allowed candidates as without a mask. A narrow mask is scored exactly over its items instead
    # when that is cheaper; the default probe then only serves the normaliser.
    scaled = min(lists, int(np.ceil(wanted * (len(exclude) - 1) / allowed_count)))
    scaled_rows = scaled * len(index.table) / lists
    subset = allowed_count <= subset_max and GATHER_COST * allowed_count <= scaled_rows
    wanted = min(lists, wanted if subset else scaled)
    probed = np.zeros(lists, dtype=bool)
    if wanted < lists:
        chosen = np.sort(np.argpartition(-(index.centroids @ q), wanted - 1)[:wanted])
        probed[chosen] = True
        rows = _probed_rows(index, chosen)
        logits = index.table[rows] @ q
    else:
        probed[:] = True
        rows = np.arange(len(index.table))
        logits = index.table @ q
    items = index.order[rows]
    log_z = _log_normaliser(index, q, logits, items, probed, history)
    if subset:
        items = np.flatnonzero(allowed)
        logits = index.table[index.row_of[items]] @ q
    items, scores = with_history(explore, items, logits - log_z, (history, history_scores), exclude)
    if len(items) < min(k, allowed_count):
        return None
    top_items, top_scores = top(items, scores, k)
    return Candidates(top_items, top_scores, "subset" if subset else "probe")


def _log_normaliser(
    index: ExploreIndex,
    q: np.ndarray,
    logits: np.ndarray,
    items: np.ndarray,
    probed: np.ndarray,
    history: np.ndarray,
) -> float:
    """log Z over every item outside the history: exact over the probed rows, a stratified sample of
    each unprobed list (its rows are in random order) scaled to the list's size for the rest."""
    in_history = np.isin(items, history) if history.size else np.zeros(len(items), dtype=bool)
    exact = logits[~in_history]
    unprobed = ~probed[index.sample_list]
    sampled = index.sample_rows[unprobed] @ q
    weights = index.sample_weight[unprobed]
    # History items in unprobed lists are in that estimate only statistically: take their exact terms out.
    outside = history[~probed[_list_of(index, index.row_of[history])]] if history.size else history
    history_logits = index.table[index.row_of[outside]] @ q if outside.size else np.zeros(0, np.float32)
    top = float(max(exact.max(initial=-np.inf), sampled.max(initial=-np.inf)))
    if not np.isfinite(top):
        return 0.0
    estimate = float(np.sum(weights * np.exp(sampled.astype(np.float64) - top)))
    estimate = max(0.0, estimate - float(np.sum(np.exp(history_logits.astype(np.float64) - top))))
    total = float(np.sum(np.exp(exact.astype(np.float64) - top))) + estimate
    return top + float(np.log(total)) if total > 0 else top


def _list_of(index: ExploreIndex, rows: np.ndarray) -> np.ndarray:
    return np.searchsorted(index.offsets, rows, side="right") - 1
