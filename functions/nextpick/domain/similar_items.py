"""Similar items (issue 12, `GET /items/{item_id}/similar`): an item's neighbours in the live model's
own item space, so they improve with every retrain; live trending in the item's category when the model
cannot answer. Stock, category masks and the business rules are applied as for a shopper's
recommendations (ranking.MaskCache, rules.apply_rules). docs/similar.md."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np

from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.catalog_columns import CatalogColumns
from nextpick.domain.events import Recommendation
from nextpick.domain.impressions import (
    CONTROL_VARIANT,
    Impression,
    Surface,
    item_page_impression,
    new_recommendation_id,
)
from nextpick.domain.ports import CatalogSource, ModelSource, RankingModel
from nextpick.domain.ranking import MaskCache, plain_top_k
from nextpick.domain.rules import Pick, RuleSet, apply_rules, plan_rules
from nextpick.domain.trending import LiveTrending
from nextpick.errors import MissingReference

# How many of the category's trending items a fallback answer chooses from: enough that a filter or a
# diversity cap still leaves k (max_k is 100) in a category of normal breadth; the decayed merge costs
# the same for 10 or 500 (one pass over the window's counts, docs/trending.md).
FALLBACK_CANDIDATES = 500


class NeighbourSource(StrEnum):
    MODEL = "model"  # the model's `similar` signature: cosine of its item vectors
    FALLBACK = "fallback"  # live trending in the item's category (docs/trending.md)


@dataclass(frozen=True)
class SimilarItemsAnswer:
    item_id: str
    model_version: str | None
    source: NeighbourSource
    items: list[Recommendation]
    # docs/attribution.md: the id later events cite, and the A/B variant that answered.
    recommendation_id: str = field(default_factory=new_recommendation_id)
    variant: str = CONTROL_VARIANT

    def as_json(self) -> dict[str, object]:
        return {
            "item_id": self.item_id,
            "recommendation_id": self.recommendation_id,
            "model_version": self.model_version,
            "variant": self.variant,
            "source": self.source.value,
            "items": [{"item_id": item.item_id, "score": round(item.score, 6)} for item in self.items],
        }

    def impression(self, user_id: str | None, served_at: datetime) -> Impression:
        return item_page_impression(self, Surface.SIMILAR, user_id, served_at)


def catalog_knows(snapshot: CatalogSnapshot, item_id: str) -> bool:
    """Whether the items table holds `item_id` (every item stored through the API has a category; one
    written around the API without one is still known by its price or stock)."""
    return item_id in snapshot.category_of or item_id in snapshot.price_of or item_id in snapshot.out_of_stock


def _as_recommendations(items: tuple[str | None, ...], picks: list[Pick]) -> list[Recommendation]:
    return [Recommendation(item_id=str(items[pick.item_index]), score=pick.score) for pick in picks]


@dataclass
class SimilarItems:
    models: ModelSource
    catalog: CatalogSource
    trending: LiveTrending
    # Shared by every ranking service of a container (wiring.candidate_masks): one build per (model, snapshot).
    masks: MaskCache = field(default_factory=MaskCache)

    def similar(self, item_id: str, k: int, rules: RuleSet | None = None) -> SimilarItemsAnswer:
        """The `k` items most like `item_id`, never itself, never out of stock; MissingReference naming
        `item_id` when the catalog does not know it (checked first: nothing else is read for it)."""
        snapshot = self.catalog.snapshot()
        if not catalog_knows(snapshot, item_id):
            raise MissingReference("item_id", "the catalog has no item with this id")
        model = self.models.current()
        index = model.item_index(item_id) if model is not None else 0
        if model is not None and index > 0:
            picks = self._from_model(model, index, snapshot, k, rules)
            if picks is not None:
                return SimilarItemsAnswer(item_id, model.version, NeighbourSource.MODEL, picks)
        version = model.version if model is not None else None
        return SimilarItemsAnswer(
            item_id, version, NeighbourSource.FALLBACK, self._from_trending(item_id, snapshot, k, rules)
        )

    def _from_model(
        self, model: RankingModel, index: int, snapshot: CatalogSnapshot, k: int, rules: RuleSet | None
    ) -> list[Recommendation] | None:
        """None: the model has no `similar` signature (published before it existed)."""
        masks = self.masks.get(model, snapshot)
        exclude = masks.base.copy()
        exclude[index] = 1.0
        scores = model.similar(index, exclude)
        if scores is None:
            return None
        if rules is None:
            return plain_top_k(model, scores, exclude, k)
        return _as_recommendations(
            tuple(model.items), apply_rules(scores, exclude, plan_rules(rules, masks.columns), k)
        )

    def _from_trending(
        self, item_id: str, snapshot: CatalogSnapshot, k: int, rules: RuleSet | None
    ) -> list[Recommendation]:
        """Live trending in the item's category (every category for an item without one), in stock
        (decayed_top_k drops the rest), without the item itself. The rules apply over those candidates
        as over a model's scores: a pinned or promoted item that is not trending in the category is not
        added (there is no score to place it by)."""
        candidates = [
            entry
            for entry in self.trending.top(FALLBACK_CANDIDATES, snapshot.category_of.get(item_id))
            if entry.item_id != item_id
        ]
        if rules is None:
            return [Recommendation(item_id=entry.item_id, score=entry.score) for entry in candidates[:k]]
        items: tuple[str | None, ...] = (None, *(entry.item_id for entry in candidates))
        position = {candidate: index for index, candidate in enumerate(items) if candidate is not None}
        columns = CatalogColumns(items, snapshot, lambda candidate: position.get(candidate, 0))
        scores = np.array([0.0, *(entry.score for entry in candidates)], dtype=np.float32)
        exclude = np.zeros(len(items), dtype=np.float32)
        exclude[0] = 1.0
        return _as_recommendations(items, apply_rules(scores, exclude, plan_rules(rules, columns), k))
