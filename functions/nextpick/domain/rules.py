"""Business rules: a filter, promotions, diversity, pinned items and excluded items, applied to the score
vector the model's `rank` returns, outside the model (docs/rules.md has the grammar, the order of
application and every decision).

`RuleSet` is what a request sends or the admin stores by name (pydantic, JSON both ways); `plan_rules`
resolves it against one (model version, catalog snapshot) into vocabulary indices and masks;
`apply_rules` is the pure function from (scores, exclusions, plan, k) to the top K."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from nextpick.domain.catalog_columns import CatalogColumns
from nextpick.domain.events import Identifier, describe_errors
from nextpick.domain.filters import MAX_FILTER_LENGTH, parse_filter
from nextpick.errors import InvalidInput, InvalidRequest

# Bounds on what one rule set may hold: a stored rule set is read on every request that names it, and a
# request's rules arrive in its body; these keep both small (a full rule set is ~40 KB of JSON).
MAX_PROMOTIONS = 5
MAX_PROMOTION_ITEMS = 1000
MAX_PINS = 20
# A cart, plus what the page already shows.
MAX_EXCLUDED_ITEMS = 500
# Positions and slots beyond the largest k a deployment allows (MAX_K <= 1000) could never apply.
MAX_POSITION = 1000

# The organic places are filled in rounds over the best `max(4 x places left, 64)` candidates, not by
# sorting the whole pool (docs/rules.md, "Cost").
ROUND_FACTOR, ROUND_MINIMUM = 4, 64

# Names of stored rule sets and of promotions: the id character set (docs/design.md, "Ids").
RuleSetName = Identifier


def _valid_filter(text: str) -> str:
    try:
        parse_filter(text)
    except InvalidInput as error:
        # "{message}" as the template: the message itself is never read as a format string.
        raise PydanticCustomError("filter_syntax", "{message}", {"message": error.message}) from None
    return text


FilterExpression = Annotated[str, Field(max_length=MAX_FILTER_LENGTH), AfterValidator(_valid_filter)]


class Pin(BaseModel):
    """An item shown at a fixed position (1 = first)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: Identifier
    position: int = Field(ge=1, le=MAX_POSITION)


class Promotion(BaseModel):
    """At least `slots` of the K places go to this set's best-scored items (its `items`, narrowed by its
    `filter` when both are given)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: RuleSetName
    slots: int = Field(ge=1, le=MAX_POSITION)
    items: tuple[Identifier, ...] = Field(default=(), max_length=MAX_PROMOTION_ITEMS)
    filter: FilterExpression | None = None

    @model_validator(mode="after")
    def _has_a_set(self) -> Promotion:
        if not self.items and self.filter is None:
            raise ValueError("a promotion needs items, a filter, or both")
        return self


class RuleSet(BaseModel):
    """Every business rule of one request (or one stored, named rule set). Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filter: FilterExpression | None = None
    promotions: tuple[Promotion, ...] = Field(default=(), max_length=MAX_PROMOTIONS)
    max_per_category: int | None = Field(default=None, ge=1, le=MAX_POSITION)
    pinned: tuple[Pin, ...] = Field(default=(), max_length=MAX_PINS)
    # The shopper's cart (and anything else the page already shows): never recommended. A stored rule set
    # normally leaves it empty and a request adds its own cart (`with_excluded`).
    exclude_items: tuple[Identifier, ...] = Field(default=(), max_length=MAX_EXCLUDED_ITEMS)

    @field_validator("pinned")
    @classmethod
    def _pins_distinct(cls, pinned: tuple[Pin, ...]) -> tuple[Pin, ...]:
        if len({pin.item_id for pin in pinned}) < len(pinned):
            raise ValueError("an item is pinned twice")
        if len({pin.position for pin in pinned}) < len(pinned):
            raise ValueError("two items are pinned at the same position")
        return pinned

    @field_validator("promotions")
    @classmethod
    def _promotions_distinct(cls, promotions: tuple[Promotion, ...]) -> tuple[Promotion, ...]:
        if len({promotion.name for promotion in promotions}) < len(promotions):
            raise ValueError("two promotions have the same name")
        return promotions

    def with_excluded(self, item_ids: tuple[str, ...]) -> RuleSet:
        """This rule set plus a request's cart (a stored set and a request's items combined); more than
        MAX_EXCLUDED_ITEMS in all is an `InvalidRequest` on `exclude_items`."""
        merged = tuple(dict.fromkeys((*self.exclude_items, *item_ids)))
        return rules_from({**self.model_dump(), "exclude_items": merged})


def rules_from(data: Mapping[str, Any]) -> RuleSet:
    """A rule set from already-decoded data (query parameters, a stored item), or `InvalidRequest`
    naming each field at fault (`filter`, `promotions[0].slots`, ...). A JSON body goes through
    `requests.parse_body(RuleSet, ...)`, which answers the same way."""
    try:
        return RuleSet.model_validate(data)
    except ValidationError as error:
        raise InvalidRequest(describe_errors(error.errors(include_url=False, include_input=False))) from None


# --- plan: a rule set resolved against one (model version, catalog snapshot) -----------------------


@dataclass(frozen=True)
class PromotionPlan:
    name: str
    # Vocabulary indices of the set, ascending.
    indices: np.ndarray
    slots: int


@dataclass(frozen=True)
class RulePlan:
    """A rule set as vocabulary indices and masks: what `apply_rules` needs, and no strings."""

    # True where the filter lets the item through; None: no filter.
    allowed: np.ndarray | None
    excluded: np.ndarray
    # (index, position), by position; only items the model knows.
    pins: tuple[tuple[int, int], ...]
    promotions: tuple[PromotionPlan, ...]
    max_per_category: int | None
    # Each item's category code (-1: none), for the diversity cap.
    category_codes: np.ndarray


def plan_rules(rules: RuleSet, columns: CatalogColumns) -> RulePlan:
    promotions = []
    for promotion in rules.promotions:
        if promotion.items:
            indices = columns.indices_of(promotion.items)
            if promotion.filter is not None:
                indices = indices[columns.filter_mask(promotion.filter)[indices]]
        else:
            assert promotion.filter is not None
            indices = np.flatnonzero(columns.filter_mask(promotion.filter))
        promotions.append(PromotionPlan(promotion.name, indices, promotion.slots))
    pins = [(columns.index_of(pin.item_id), pin.position) for pin in rules.pinned]
    return RulePlan(
        allowed=columns.filter_mask(rules.filter) if rules.filter is not None else None,
        excluded=columns.indices_of(rules.exclude_items),
        # An item the model does not know (index 0) cannot be ranked, so it is not pinned either.
        pins=tuple(sorted(((i, p) for i, p in pins if i > 0), key=lambda pin: pin[1])),
        promotions=tuple(promotions),
        max_per_category=rules.max_per_category,
        category_codes=columns.category.codes,
    )


# --- apply: the pure function ------------------------------------------------------------------------


# A promoted pick's `source`: this, then the promotion's name.
PROMOTION_SOURCE = "promotion:"


class Pick(NamedTuple):
    item_index: int
    score: float
    # "pinned", "organic", or "promotion:<name>": what put the item in the list.
    source: str


class _Quota:
    """Per-category counts against the diversity cap (pinned items count, but are never refused)."""

    def __init__(self, codes: np.ndarray, cap: int | None) -> None:
        self._codes = codes
        self._cap = cap
        self._counts: dict[int, int] = {}

    def admits(self, index: int) -> bool:
        code = int(self._codes[index])
        return self._cap is None or code < 0 or self._counts.get(code, 0) < self._cap

    def count(self, index: int) -> None:
        code = int(self._codes[index])
        if code >= 0:
            self._counts[code] = self._counts.get(code, 0) + 1

    def full_categories(self) -> list[int]:
        return [code for code, n in self._counts.items() if self._cap is not None and n >= self._cap]


def in_score_order(scores: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """`indices` best first: higher score, then lower vocabulary index (the documented tie-break)."""
    return indices[np.lexsort((indices, -scores[indices]))]


def best_of(scores: np.ndarray, pool: np.ndarray, m: int) -> np.ndarray:
    """The `m` best items of the boolean `pool`, best first, ties broken as `in_score_order` does."""
    indices = np.flatnonzero(pool)
    if len(indices) > m:
        values = scores[indices]
        threshold = np.partition(values, len(values) - m)[len(values) - m]
        above = indices[values > threshold]
        # Ties at the threshold: the lowest indices (`indices` is ascending).
        indices = np.concatenate([above, indices[values == threshold][: m - len(above)]])
    return in_score_order(scores, indices)


def eligibility(exclude: np.ndarray, plan: RulePlan) -> np.ndarray:
    """Items that may be shown at all: not excluded by ranking (stock, category, purchases, the unknown
    item), through the filter, not in the excluded items."""
    eligible = exclude == 0.0
    if plan.allowed is not None:
        eligible &= plan.allowed
    eligible[plan.excluded] = False
    return eligible


def apply_rules(
    scores: np.ndarray,
    exclude: np.ndarray,
    plan: RulePlan,
    k: int,
    organic: np.ndarray | None = None,
) -> list[Pick]:
    """The top `k` under the rules (docs/rules.md, "Order of application").

    `scores` and `exclude` are what the model's `rank` returned and was given. `organic`, when given,
    narrows the items that may take organic places (a new shopper's trending list); pinned and
    promoted items are chosen from every eligible item."""
    eligible = eligibility(exclude, plan)
    taken = np.zeros(len(scores), dtype=bool)
    quota = _Quota(plan.category_codes, plan.max_per_category)
    pins = [(index, position) for index, position in plan.pins if position <= k and eligible[index]]
    for index, _ in pins:
        taken[index] = True
        quota.count(index)
    free = k - len(pins)
    chosen: list[Pick] = []
    for promotion in plan.promotions:
        candidates = promotion.indices[eligible[promotion.indices] & ~taken[promotion.indices]]
        limit = min(promotion.slots, free - len(chosen))
        chosen += _take(
            scores, in_score_order(scores, candidates), limit, quota, taken, PROMOTION_SOURCE + promotion.name
        )
    pool = eligible & ~taken
    if organic is not None:
        pool &= organic
    chosen += _take_from_pool(scores, pool, free - len(chosen), quota, plan, taken)
    chosen.sort(key=lambda pick: (-pick.score, pick.item_index))
    return _with_pins(chosen, [Pick(i, float(scores[i]), "pinned") for i, _ in pins], [p for _, p in pins])


def _take(
    scores: np.ndarray, ordered: np.ndarray, limit: int, quota: _Quota, taken: np.ndarray, source: str
) -> list[Pick]:
    picks: list[Pick] = []
    for index in ordered.tolist():
        if len(picks) >= limit:
            break
        if quota.admits(index):
            quota.count(index)
            taken[index] = True
            picks.append(Pick(index, float(scores[index]), source))
    return picks


def _take_from_pool(
    scores: np.ndarray, pool: np.ndarray, need: int, quota: _Quota, plan: RulePlan, taken: np.ndarray
) -> list[Pick]:
    """The organic places: the best of `pool` in score order, skipping items whose category is full.

    Looks at a few times `need` candidates at a time instead of sorting the pool: after each round the
    full categories leave the pool, so a cap that refuses most candidates (a one-category page with
    max_per_category 2) ends in a round or two, not in a walk over the whole catalog."""
    picks: list[Pick] = []
    while need > len(picks):
        full = quota.full_categories()
        if full:
            pool &= ~np.isin(plan.category_codes, full)
        remaining = int(np.count_nonzero(pool))
        if remaining == 0:
            break
        candidates = best_of(
            scores, pool, min(remaining, max(ROUND_FACTOR * (need - len(picks)), ROUND_MINIMUM))
        )
        picks += _take(scores, candidates, need - len(picks), quota, taken, "organic")
        pool[candidates] = False
    return picks


def _with_pins(others: list[Pick], pins: list[Pick], positions: list[int]) -> list[Pick]:
    """Pins at their positions, the others in order around them; a pin whose position is past the end
    of a short list follows the last other item (pins keep their order)."""
    result: list[Pick] = []
    pending = list(zip(positions, pins, strict=True))
    rest = iter(others)
    total = len(others) + len(pins)
    while len(result) < total:
        if pending and pending[0][0] == len(result) + 1:
            result.append(pending.pop(0)[1])
            continue
        following = next(rest, None)
        result.append(following if following is not None else pending.pop(0)[1])
    return result
