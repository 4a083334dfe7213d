"""The large-catalog path for catalogs without cluster structure (docs/ranking-1m.md): an int8 scan of
the whole item table chooses candidates, the model re-scores them exactly.

The explore index (`candidates.search`) needs item vectors that cluster; where they do not (the index is
refused at build), every item must be scored. At 1M items the exact fp32 `rank` streams 256 MB per call
(29 ms with top-10); the version's *explore scan* (`explore_scan.tflite`) streams an int8 copy (64 MB)
and returns its best `candidates` items with top-K inside the graph, plus an estimate of the explore
normaliser log Z. The candidates are then scored exactly (fp32) through the model's `score_items`
signature, so every score returned is the model's log P, up to the normaliser's estimate.

A request whose mask allows few items (a category filter) skips the scan: its allowed items are scored
exactly, and only the normaliser comes from the scan model (from its sample, no full scan).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nextpick.domain.candidates import (
    EXACT_SUBSET_MAX_ITEMS,
    Candidates,
    ExploreQuery,
    history_of,
    top,
    with_history,
)


@dataclass(frozen=True)
class ScanAnswer:
    """What the scan model says about one query: items to score exactly, and the rest of log Z."""

    # vocabulary indices (none 0, each once), best int8 score first
    items: np.ndarray
    # how many items each one's exact exp(logit) stands for in Z: 1 for the scan's candidates, the
    # sample's stride for the normaliser's sample rows
    weight: float
    # log of the estimated sum of exp(logit) over every other item but 0 (from the scan's sample)
    log_rest: float

    def log_z(self, exact_logits: np.ndarray) -> float:
        """log Z over every item but 0, given the exact logits of `items`."""
        terms = np.append(exact_logits.astype(np.float64) + np.log(self.weight), self.log_rest)
        peak = float(terms.max())
        return peak + float(np.log(np.sum(np.exp(terms - peak))))


class ExploreScan(Protocol):
    """A version's explore scan (docs/model-contract.md, "explore_scan.tflite")."""

    def candidates(self, query: np.ndarray) -> ScanAnswer:
        """The scan of every item: its best items by int8 score, each standing for itself."""
        ...

    def sample(self, query: np.ndarray) -> ScanAnswer:
        """The normaliser alone, from the sample rows (no full scan): its best rows stand for `weight`
        items each."""
        ...


# Every 64th entry of the mask estimates how many items it allows (15,625 of 1M: ~5 µs, where counting
# all of them took 0.1 to 0.17 ms a request at 1M items).
MASK_SAMPLE_STRIDE = 64


# The exact explore logits (query . V[i] + B[i]) of the given vocabulary indices: the model's `score_items`.
ScoreItems = Callable[[np.ndarray, np.ndarray], np.ndarray]


def scan_search(
    scan: ExploreScan,
    score_items: ScoreItems,
    explore: ExploreQuery,
    exclude: np.ndarray,
    k: int,
    subset_max: int = EXACT_SUBSET_MAX_ITEMS,
) -> Candidates | None:
    """The top `k` items `exclude` allows, or None when the scan's candidates hold fewer than `k` allowed
    items (a mask that drops most of them): the caller then runs the exact `rank`."""
    if k <= 0:
        return Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32), "subset")
    q = explore.query
    history, history_scores = history_of(explore, len(exclude))
    allowed_count = _allowed_count_if_few(exclude, subset_max)
    subset = allowed_count is not None and allowed_count <= subset_max
    scanned = scan.sample(q) if subset else scan.candidates(q)
    items = _allowed(exclude) if subset else scanned.items
    # One call scores the items, the scan's own items (when they are not the items) and the history.
    extra = scanned.items if subset else np.zeros(0, np.int64)
    logits = score_items(q, np.concatenate([items, extra, history]))
    item_logits = logits[: len(items)]
    scan_logits = logits[len(items) : len(items) + len(extra)] if subset else item_logits
    log_z = _outside_history(scanned.log_z(scan_logits), logits[len(items) + len(extra) :])
    found, scores = with_history(explore, items, item_logits - log_z, (history, history_scores), exclude)
    if len(found) < k and len(found) < (allowed_count if allowed_count is not None else _count(exclude)):
        return None
    top_items, top_scores = top(found, scores, k)
    return Candidates(top_items, top_scores, "subset" if subset else "scan")


def _allowed(exclude: np.ndarray) -> np.ndarray:
    allowed = np.flatnonzero(exclude == 0.0)
    return allowed[allowed > 0]


def _count(exclude: np.ndarray) -> int:
    return int(np.count_nonzero(exclude[1:] == 0.0))


def _allowed_count_if_few(exclude: np.ndarray, subset_max: int) -> int | None:
    """The number of allowed items (never index 0) when a sample of the mask says it may be at most 4x
    `subset_max`, else None (many: the scan path, which still checks its shortfall exactly). A mask
    built to fool the sample costs time, never correctness: the shortfall check counts exactly."""
    sampled = int(np.count_nonzero(exclude[::MASK_SAMPLE_STRIDE] == 0.0)) * MASK_SAMPLE_STRIDE
    return _count(exclude) if sampled <= 4 * subset_max else None


def _outside_history(log_z: float, history_logits: np.ndarray) -> float:
    """log Z without the history items' terms (the normaliser runs over the items outside the history).
    The estimate can fall below the exact history terms on a tiny catalog; it then keeps 1e-6 of itself
    rather than a log of a negative number."""
    if not history_logits.size:
        return float(log_z)
    top_logit = max(float(log_z), float(history_logits.max()))
    total = np.exp(float(log_z) - top_logit)
    history_total = float(np.sum(np.exp(history_logits.astype(np.float64) - top_logit)))
    return top_logit + float(np.log(max(total - history_total, total * 1e-6)))
