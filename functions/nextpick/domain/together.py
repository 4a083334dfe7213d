"""Bought together (issue 12): each item's best co-purchase partners, and how a cart blends them with the
model's scores. Pure (numpy only); the retrain computes the table (nextpick_training.together), the
model registry stores and verifies it (`bought_together.npz`), docs/bought-together.md has the figures.

A `PartnerTable` is two arrays aligned to a model's vocabulary: row `i` holds item `i`'s partners
(vocabulary indices, best first, 0 = padding) and their scores. A catalog refresh only appends items to
the vocabulary, so a table built for the first `rows` items stays valid for every refresh of that
model: an item beyond the table (new since the retrain) has no partners.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

# Partners kept per item. The API's default k is 10 and stock, category and rule filters drop some
# partners at request time: 20 leaves twice the default list to filter from, and 50,000 items x 20 x
# 8 bytes is 8 MB per container, loaded once per model version.
TOP_PARTNERS = 20

# The cart blend's weight of the partners' distribution (docs/bought-together.md, "Cart completion":
# the best of 0, 0.02, 0.05, 0.1, ..., 0.9 on Instacart validation baskets). A shopper with events of
# their own: 0, the model alone (its buy-again half beats any partner list: test NDCG@10 0.242 vs 0.109
# for the partners alone, and every weight > 0 scored lower on validation). An anonymous cart or a
# shopper without events, where the model sees the cart alone: 0.7 (test NDCG@10 0.107 vs 0.040).
CART_BLEND_WEIGHT = 0.0
CART_BLEND_WEIGHT_NEW = 0.7


@dataclass(frozen=True)
class PartnerTable:
    """`partners[i]`: item `i`'s partners (vocabulary indices), best first, 0-padded; `scores[i]` theirs."""

    partners: np.ndarray  # int32 [rows, TOP_PARTNERS]
    scores: np.ndarray  # float32 [rows, TOP_PARTNERS], > 0 where a partner is, 0 on padding

    def __post_init__(self) -> None:
        check_table(self.partners, self.scores)

    @property
    def rows(self) -> int:
        return int(self.partners.shape[0])

    def of(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Item `index`'s partners and scores, best first (empty for an item beyond the table)."""
        if not 0 < index < self.rows:
            return np.zeros(0, np.int32), np.zeros(0, np.float32)
        present = self.partners[index] > 0
        return self.partners[index][present], self.scores[index][present]

    def distribution(self, indices: Iterable[int], size: int) -> np.ndarray:
        """The cart's partner distribution over a vocabulary of `size`: each cart item with partners
        contributes its row's scores normalised to sum to 1, averaged over those items; all zeros when
        no cart item has partners."""
        mass = np.zeros(size, np.float64)
        rows = 0
        for index in indices:
            partners, scores = self.of(index)
            total = float(scores.sum())
            if total > 0:
                np.add.at(mass, partners[partners < size], scores[partners < size] / total)
                rows += 1
        return mass / rows if rows else mass


def check_table(partners: np.ndarray, scores: np.ndarray) -> None:
    """ValueError unless the arrays form a table: int32/float32 of one 2-d shape, partners within the
    table's rows and never the item itself, finite non-negative scores, zero on padding."""
    if partners.dtype != np.int32 or scores.dtype != np.float32:
        raise ValueError(f"partner table dtypes are {partners.dtype}/{scores.dtype}, not int32/float32")
    if partners.ndim != 2 or partners.shape != scores.shape:
        raise ValueError(f"partner table shapes {partners.shape} and {scores.shape} differ or are not 2-d")
    rows = partners.shape[0]
    if rows and (partners.min() < 0 or partners.max() >= rows):
        raise ValueError("a partner index is outside the table")
    if rows and np.any((partners == np.arange(rows, dtype=np.int32)[:, None]) & (partners > 0)):
        raise ValueError("an item is its own partner")
    if not np.all(np.isfinite(scores)) or np.any(scores < 0) or np.any(scores[partners == 0] != 0):
        raise ValueError("partner scores must be finite, non-negative and 0 on padding")


def blend(model_scores: np.ndarray, exclude: np.ndarray, partners: np.ndarray, weight: float) -> np.ndarray:
    """log((1 - w) P_model + w P_partners): the cart's scores.

    P_model is the model's scores as a distribution over the allowed items (a log-softmax: nextpick's
    models already score log P(item), so for them this only renormalises after the exclusions);
    P_partners is `PartnerTable.distribution`. With no partners (all zeros) the ranking is the model's.
    Excluded items keep -inf-like scores (≤ -1e9) so nothing downstream takes them."""
    allowed = exclude == 0.0
    out = np.full(len(model_scores), -1e9, np.float32)
    if not allowed.any():
        return out
    values = model_scores[allowed].astype(np.float64)
    log_model = values - (values.max() + np.log(np.exp(values - values.max()).sum()))
    if weight <= 0 or not partners[allowed].any():
        out[allowed] = log_model
        return out
    with np.errstate(divide="ignore"):
        log_partners = np.log(weight) + np.log(partners[allowed])
    out[allowed] = np.logaddexp(np.log1p(-weight) + log_model, log_partners)
    return out
