"""Turning a state vector into a top-K list, with the business filters applied *before* ranking."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from nextpick.domain import candidates
from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.catalog_columns import CatalogColumns
from nextpick.domain.events import Recommendation
from nextpick.domain.explore_scan import scan_search
from nextpick.domain.ports import RankingModel
from nextpick.domain.rules import PROMOTION_SOURCE, Pick, RuleSet, apply_rules, plan_rules

# The plan of "no business rules", for the paths that always go through `apply_rules`.
NO_RULES = RuleSet()


class ColdStart(StrEnum):
    """Where a shopper-without-events' list came from: the answer's `cold_start` (docs/trending.md, "A new
    shopper's answer"); null in the answer when the model ranked the shopper's own state."""

    # Live trending (GET /trending's scores) first; places it cannot fill go to the model's list.
    LIVE_TRENDING = "live_trending"
    # Live trending had nothing to show here (no counts yet, all out of stock or filtered out).
    MODEL_TRENDING = "model_trending"
    # The trending table could not be read: the model's list, and the answer says so.
    LIVE_UNAVAILABLE = "model_trending_live_unavailable"


@dataclass(frozen=True)
class RecommendOptions:
    k: int = 10
    # None: use the deployment's default (EXCLUDE_PURCHASED_DEFAULT).
    exclude_purchased: bool | None = None
    category: str | None = None
    # Business rules (docs/rules.md); None: ranking exactly as without rules.
    rules: RuleSet | None = None
    # `?explain=true`: each pick says which of the shopper's own items it owes most to (docs/explanations.md).
    explain: bool = False


@dataclass
class CandidateMasks:
    """Exclude masks aligned to one model's vocabulary and one catalog snapshot.

    Built once per (model version, snapshot) and reused by every request, so a request only copies
    an array and flips the user's own purchases instead of walking the catalog."""

    model_version: str
    snapshot_id: int
    # 1.0 for the unknown-item slot and out-of-stock items.
    base: np.ndarray
    _snapshot: CatalogSnapshot
    _items: tuple[str | None, ...]
    # Price, category and attribute columns and compiled filters, for the business rules (lazy).
    columns: CatalogColumns
    _by_category: dict[str, np.ndarray] = field(default_factory=dict)
    _trending: tuple[np.ndarray, np.ndarray] | None = None
    # (the live scores dict they were built from, scores, listed): one entry, rebuilt when the read is.
    _live: tuple[Mapping[str, float], np.ndarray, np.ndarray] | None = None

    @classmethod
    def build(cls, model: RankingModel, snapshot: CatalogSnapshot) -> CandidateMasks:
        items = tuple(model.items)
        base = np.zeros(len(items), dtype=np.float32)
        base[0] = 1.0
        for index, item_id in enumerate(items):
            if item_id is not None and item_id in snapshot.out_of_stock:
                base[index] = 1.0
        columns = CatalogColumns(items, snapshot, model.item_index)
        return cls(model.version, snapshot.snapshot_id, base, snapshot, items, columns)

    def outside_category(self, category: str) -> np.ndarray:
        mask = self._by_category.get(category)
        if mask is None:
            category_of = self._snapshot.category_of
            mask = np.fromiter(
                (
                    0.0 if item is not None and category_of.get(item) == category else 1.0
                    for item in self._items
                ),
                dtype=np.float32,
                count=len(self._items),
            )
            self._by_category[category] = mask
        return mask

    def trending_scores(self, model: RankingModel) -> tuple[np.ndarray, np.ndarray]:
        """The model's trending list as a score vector (0 off the list) and a mask of the listed items,
        for a new shopper's rules: a trending score is a decayed event count, so 0 is what an item off
        the list has, near enough (the list holds the top 500)."""
        if self._trending is None:
            scores = np.zeros(len(self._items), dtype=np.float32)
            listed = np.zeros(len(self._items), dtype=bool)
            for index, score in model.trending:
                if 0 < index < len(scores):
                    scores[index], listed[index] = score, True
            self._trending = scores, listed
        return self._trending

    def live_trending_scores(self, live: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Live trending's scores (item id -> decayed count) in the model's vocabulary, and a mask of the
        items it lists; items the model does not know cannot be ranked or ruled on, so they are left out
        until the next retrain. Rebuilt only when `live` is another read (LiveTrending.scores)."""
        cached = self._live
        if cached is None or cached[0] is not live:
            scores = np.zeros(len(self._items), dtype=np.float64)
            listed = np.zeros(len(self._items), dtype=bool)
            index_of = self.columns.index_of
            for item_id, score in live.items():
                index = index_of(item_id)
                if index > 0:
                    scores[index], listed[index] = score, True
            cached = self._live = (live, scores, listed)
        return cached[1], cached[2]


class MaskCache:
    """Keeps the masks of each live (model, snapshot) pair; one is rebuilt only when its model's
    snapshot changes. Several models are live at once in an A/B test (the control, its variants and a
    shadow: docs/variants.md), so masks are kept per model version, up to `MAX_MODELS`, the least
    recently built dropped first: one slot would rebuild on every request that alternates variants."""

    # The control, two challengers and a shadow; a fifth live version evicts the oldest masks.
    MAX_MODELS = 4

    def __init__(self) -> None:
        self._masks: dict[str, CandidateMasks] = {}

    def get(self, model: RankingModel, snapshot: CatalogSnapshot) -> CandidateMasks:
        masks = self._masks.get(model.version)
        if masks is None or masks.snapshot_id != snapshot.snapshot_id:
            masks = CandidateMasks.build(model, snapshot)
            self._masks.pop(model.version, None)
            while len(self._masks) >= self.MAX_MODELS:
                self._masks.pop(next(iter(self._masks)))
            self._masks[model.version] = masks
        return masks


def _cold_start_exclude(masks: CandidateMasks, category: str | None) -> np.ndarray:
    return masks.base if category is None else np.maximum(masks.base, masks.outside_category(category))


def trending_top_k(
    model: RankingModel, masks: CandidateMasks, k: int, category: str | None, rules: RuleSet | None = None
) -> list[Recommendation]:
    """A shopper with no events yet: what is trending (the model's `trending` list: time-decayed
    popularity when it was published), in stock and in the category, best first."""
    exclude = _cold_start_exclude(masks, category)
    items = model.items
    if rules is not None:
        plan = plan_rules(rules, masks.columns)
        scores, listed = masks.trending_scores(model)
        return _recommendations(model, apply_rules(scores, exclude, plan, k, organic=listed))
    picks = []
    for index, score in model.trending:
        if 0 < index < len(exclude) and exclude[index] == 0.0:
            picks.append(Recommendation(item_id=str(items[index]), score=float(score)))
            if len(picks) == k:
                break
    return picks


def cold_start_top_k(
    model: RankingModel,
    masks: CandidateMasks,
    k: int,
    category: str | None,
    rules: RuleSet | None,
    live: Mapping[str, float] | None,
) -> tuple[list[Recommendation], ColdStart] | None:
    """A shopper with no events yet: live trending (`live`, LiveTrending.scores; None when it could not
    be read) first, then the model's trending list for the places left, in stock, in the category,
    under the rules. None when neither list has anything to offer: the model ranks the empty state.

    The two lists' scores are decayed counts over different windows, so they are not compared: every
    live item ranks above every model-list item (a rank key of live score + the model list's best + 1),
    and each pick carries its own list's score."""
    model_scores, model_listed = masks.trending_scores(model)
    exclude = _cold_start_exclude(masks, category)
    fallback = ColdStart.MODEL_TRENDING if live is not None else ColdStart.LIVE_UNAVAILABLE
    if live:
        live_scores, live_listed = masks.live_trending_scores(live)
        if np.any(live_listed & (exclude == 0.0)):
            offset = float(model_scores.max(initial=0.0)) + 1.0
            rank_key = np.where(live_listed, live_scores + offset, model_scores)
            plan = plan_rules(rules if rules is not None else NO_RULES, masks.columns)
            picks = apply_rules(rank_key, exclude, plan, k, organic=live_listed | model_listed)
            own_score = np.where(live_listed, live_scores, model_scores)
            answer = [pick._replace(score=float(own_score[pick.item_index])) for pick in picks]
            from_live = any(live_listed[pick.item_index] for pick in picks)
            return _recommendations(model, answer), ColdStart.LIVE_TRENDING if from_live else fallback
    if not model.trending:
        return None
    return trending_top_k(model, masks, k, category, rules), fallback


def top_k(
    model: RankingModel,
    vector: np.ndarray,
    masks: CandidateMasks,
    purchased: tuple[str, ...],
    k: int,
    exclude_purchased: bool,
    category: str | None,
    history: tuple[np.ndarray, np.ndarray] | None = None,
    rules: RuleSet | None = None,
) -> list[Recommendation]:
    """The top `k` allowed items; `history` is the v2 model's (history_items, history_features).

    `rules` are applied to the scores `rank` returns, outside the model (docs/rules.md); the model sees
    the same `exclude` with or without them."""
    exclude = exclusion(model, masks, purchased if exclude_purchased else (), category)
    if rules is None:
        found = large_catalog_top_k(model, vector, exclude, k, history)
        if found is not None:
            return found
    scores = model.rank(vector, exclude, *history) if history is not None else model.rank(vector, exclude)
    return choose(model, masks, scores, exclude, k, rules)


def large_catalog_top_k(
    model: RankingModel,
    vector: np.ndarray,
    exclude: np.ndarray,
    k: int,
    history: tuple[np.ndarray, np.ndarray] | None,
) -> list[Recommendation] | None:
    """The top `k` through the version's explore index, or else its explore scan (docs/ranking-1m.md), or
    None: the model has neither (or no `rank_query`), or the probed lists or scanned candidates hold
    fewer than `k` allowed items; the caller then runs the exact `rank`. Requests with business rules
    always take the exact path: a rule may pin or promote any item of the catalog, so it needs every
    item's score."""
    index = model.explore_index
    scan = model.explore_scan if model.has_score_items else None
    if index is None and scan is None:
        return None
    explore = model.explore_query(vector, *(history if history is not None else (None, None)))
    if explore is None:
        return None
    if index is not None:
        found = candidates.search(index, explore, exclude, k)
    elif scan is not None:
        found = scan_search(scan, model.score_items, explore, exclude, k)
    else:
        return None
    if found is None:
        return None
    items = model.items
    return [
        Recommendation(item_id=str(items[item]), score=float(score))
        for item, score in zip(found.indices.tolist(), found.scores.tolist(), strict=True)
        if exclude[item] == 0.0
    ]


def exclusion(
    model: RankingModel, masks: CandidateMasks, excluded: tuple[str, ...], category: str | None
) -> np.ndarray:
    """The `exclude` input of `rank`: the unknown item and out-of-stock items, items outside `category`,
    and the `excluded` ids (a shopper's purchases, a cart)."""
    exclude = masks.base.copy()
    if category is not None:
        np.maximum(exclude, masks.outside_category(category), out=exclude)
    if excluded:
        indices = [model.item_index(item_id) for item_id in excluded]
        exclude[[index for index in indices if index > 0]] = 1.0
    return exclude


def choose(
    model: RankingModel,
    masks: CandidateMasks,
    scores: np.ndarray,
    exclude: np.ndarray,
    k: int,
    rules: RuleSet | None,
) -> list[Recommendation]:
    """The top `k` of `scores` that `exclude` and the rules allow."""
    if rules is not None:
        return _recommendations(model, apply_rules(scores, exclude, plan_rules(rules, masks.columns), k))
    return plain_top_k(model, scores, exclude, k)


def plain_top_k(model: RankingModel, scores: np.ndarray, exclude: np.ndarray, k: int) -> list[Recommendation]:
    """The best `k` of `scores` that `exclude` allows: the answer without business rules."""
    allowed = int(len(exclude) - np.count_nonzero(exclude))
    k = min(k, allowed)
    if k <= 0:
        return []
    candidates = np.argpartition(-scores, k - 1)[:k]
    ordered = candidates[np.argsort(-scores[candidates], kind="stable")]
    items = model.items
    # The mask is checked again here rather than trusting the model's scores alone: an excluded
    # item (out of stock, already bought) must never be shown, whatever the model does.
    return [
        Recommendation(item_id=str(items[index]), score=float(scores[index]))
        for index in ordered
        if exclude[index] == 0.0
    ]


def _recommendations(model: RankingModel, picks: list[Pick]) -> list[Recommendation]:
    items = model.items
    return [
        Recommendation(
            item_id=str(items[pick.item_index]),
            score=pick.score,
            promotion=pick.source.removeprefix(PROMOTION_SOURCE)
            if pick.source.startswith(PROMOTION_SOURCE)
            else None,
        )
        for pick in picks
    ]
