"""The two co-purchase surfaces (issue 12, docs/bought-together.md):

* `bought_together(item)`: the item's partners from the live model's table, filtered by stock and the
  request's rules; live trending in the item's category when the model has no row for it;
* `cart(items, user)`: the model's `rank` on the shopper's state with the cart folded in as
  add_to_cart events (through `apply_events`, the path serving folds events with), blended with the cart
  items' partners. Nothing is written: the folded state is thrown away.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.catalog_columns import CatalogColumns
from nextpick.domain.events import EventType, Identifier, Recommendation, TrackedEvent
from nextpick.domain.impressions import (
    CONTROL_VARIANT,
    Impression,
    Surface,
    item_page_impression,
    new_recommendation_id,
)
from nextpick.domain.ports import CatalogSource, ModelSource, RankingModel, StateRepository
from nextpick.domain.ranking import MaskCache, RecommendOptions, choose, exclusion
from nextpick.domain.rules import RuleSet, apply_rules, plan_rules
from nextpick.domain.service import ServiceConfig, UserRecommendations
from nextpick.domain.state import UserState, apply_events
from nextpick.domain.together import CART_BLEND_WEIGHT, CART_BLEND_WEIGHT_NEW, blend
from nextpick.domain.trending import LiveTrending
from nextpick.domain.variants import model_for
from nextpick.errors import MissingReference

# A cart of more than this is not a cart a page completes (and 50 folds cost ~5 ms of `update`).
MAX_CART_ITEMS = 50
# Trending items read for a fallback answer: enough for k = 100 after a filter drops three in four.
FALLBACK_POOL = 400
# Whose state an anonymous cart is folded into (an empty one; never stored).
ANONYMOUS = "anonymous-cart"


class CartBody(BaseModel):
    """`POST /recommendations/cart`'s body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    items: tuple[Identifier, ...] = Field(min_length=1, max_length=MAX_CART_ITEMS)
    user_id: Identifier | None = None

    @field_validator("items")
    @classmethod
    def _distinct(cls, items: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(items)) < len(items):
            raise ValueError("items must be distinct")
        return items


@dataclass(frozen=True)
class ItemPicks:
    """An item page's list and where it came from (`model`: the partners; `fallback`: trending)."""

    item_id: str
    model_version: str | None
    source: str
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
            "source": self.source,
            "items": [r.model_dump() for r in self.items],
        }

    def impression(self, user_id: str | None, served_at: datetime) -> Impression:
        return item_page_impression(self, Surface.BOUGHT_TOGETHER, user_id, served_at)


def require_known(
    field_name: str, item_id: str, snapshot: CatalogSnapshot, model: RankingModel | None
) -> None:
    """404 unless the catalog or the live model knows the item (an item the model learned from events
    is a product of the shop even if its catalog entry was never sent)."""
    if item_id in snapshot.item_ids or (model is not None and model.item_index(item_id) > 0):
        return
    raise MissingReference(field_name, "is not an item of the catalog")


def _pick(
    items: tuple[str | None, ...] | list[str | None],
    columns: CatalogColumns,
    indices: np.ndarray,
    scores: np.ndarray,
    exclude: np.ndarray,
    k: int,
    rules: RuleSet | None,
) -> list[Recommendation]:
    """The best `k` of a scored list (`indices` best first) that `exclude` and the rules allow; only
    listed items take organic places (pins and promotions are chosen as on any list)."""
    if rules is not None:
        vector = np.zeros(len(exclude), np.float32)
        vector[indices] = scores
        listed = np.zeros(len(exclude), bool)
        listed[indices] = True
        picks = apply_rules(vector, exclude, plan_rules(rules, columns), k, organic=listed)
        return [Recommendation(item_id=str(items[p.item_index]), score=p.score) for p in picks]
    chosen = [(i, s) for i, s in zip(indices.tolist(), scores.tolist(), strict=True) if exclude[i] == 0.0]
    return [Recommendation(item_id=str(items[i]), score=float(s)) for i, s in chosen[:k]]


@dataclass
class TogetherService:
    states: StateRepository
    models: ModelSource
    catalog: CatalogSource
    trending: LiveTrending
    config: ServiceConfig = field(default_factory=ServiceConfig)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    blend_weight: float = CART_BLEND_WEIGHT
    blend_weight_new: float = CART_BLEND_WEIGHT_NEW
    # Shared by every ranking service of a container (wiring.candidate_masks): one build per (model, snapshot).
    masks: MaskCache = field(default_factory=MaskCache)

    def bought_together(self, item_id: str, options: RecommendOptions) -> ItemPicks:
        model = self.models.current()
        snapshot = self.catalog.snapshot()
        require_known("item_id", item_id, snapshot, model)
        if model is not None:
            index = model.item_index(item_id)
            table = model.partner_table
            empty = (np.zeros(0, np.int32), np.zeros(0, np.float32))
            partners, scores = table.of(index) if table is not None else empty
            if len(partners):
                masks = self.masks.get(model, snapshot)
                exclude = exclusion(model, masks, (item_id,), None)
                picks = _pick(
                    tuple(model.items), masks.columns, partners, scores, exclude, options.k, options.rules
                )
                if picks:
                    return ItemPicks(item_id, model.version, "model", picks)
        version = model.version if model is not None else None
        return ItemPicks(item_id, version, "fallback", self._trending(item_id, snapshot, options))

    def _trending(
        self, item_id: str, snapshot: CatalogSnapshot, options: RecommendOptions
    ) -> list[Recommendation]:
        """Live trending in the item's category (all of it when the item has none), the item left out,
        the rules applied over the trending list as its own small vocabulary."""
        top = self.trending.top(max(FALLBACK_POOL, 4 * options.k), snapshot.category_of.get(item_id))
        items: list[str | None] = [None, *(t.item_id for t in top)]
        index = {item: i for i, item in enumerate(items) if item is not None}
        exclude = np.zeros(len(items), np.float32)
        exclude[0] = 1.0
        exclude[index.get(item_id, 0)] = 1.0
        columns = CatalogColumns(items, snapshot, lambda item: index.get(item, 0))
        indices = np.arange(1, len(items), dtype=np.int64)
        scores = np.array([t.score for t in top], np.float32)
        return _pick(items, columns, indices, scores, exclude, options.k, options.rules)

    def cart(
        self, items: tuple[str, ...], user_id: str | None, options: RecommendOptions
    ) -> UserRecommendations:
        """The cart's completion for `user_id` (None: an anonymous shopper, zeros). Writes nothing.
        A shopper's cart is ranked by their A/B variant's model; an anonymous cart by the control's."""
        assignment = model_for(self.models, user_id)
        model = assignment.model
        snapshot = self.catalog.snapshot()
        for position, item_id in enumerate(items):
            require_known(f"items[{position}]", item_id, snapshot, model)
        if model is None:
            return UserRecommendations(user_id or "", None, [], self.models.status)
        state = self.states.load(user_id) if user_id is not None else UserState.new(ANONYMOUS)
        now = self.clock()
        cart_events = [
            TrackedEvent(
                event_id=f"cart-{uuid.uuid4().hex}",
                user_id=state.user_id,
                item_id=item_id,
                event_type=EventType.ADD_TO_CART,
                timestamp=now,
            )
            for item_id in items
        ]
        # The same fold as a real add_to_cart (state vector and item history); the result is not saved.
        folded, _ = apply_events(state, cart_events, model, self.config.limits, now)
        masks = self.masks.get(model, snapshot)
        exclude_purchased = (
            self.config.exclude_purchased_default
            if options.exclude_purchased is None
            else options.exclude_purchased
        )
        excluded = (*items, *(folded.purchased if exclude_purchased else ()))
        exclude = exclusion(model, masks, excluded, options.category)
        history = (
            folded.history.model_input(model.item_index, now.timestamp(), model.history_slots)
            if model.history_slots
            else None
        )
        assert folded.vector is not None
        scores = (
            model.rank(folded.vector, exclude, *history) if history else model.rank(folded.vector, exclude)
        )
        table = model.partner_table
        if table is not None:
            partners = table.distribution((model.item_index(i) for i in items), len(scores))
            weight = self.blend_weight_new if state.is_new else self.blend_weight
            scores = blend(scores, exclude, partners, weight)
        picks = choose(model, masks, scores, exclude, options.k, options.rules)
        status = self.models.status
        return UserRecommendations(user_id or "", model.version, picks, status, variant=assignment.variant)
