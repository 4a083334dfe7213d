"""A brute-force reading of docs/rules.md, written without numpy and without the engine's code: a
filter is interpreted item by item over the catalog items themselves, and every rule is a plain loop
over all items in score order. The property tests compare the engine with it."""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nextpick.domain.events import CatalogItem
from nextpick.domain.filters import And, Comparison, Membership, Node, Not, Or, parse_filter
from nextpick.domain.ports import WithoutOptionalParts
from nextpick.domain.rules import RuleSet

ORDERINGS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


class FixedScores(WithoutOptionalParts):
    """A model whose `rank` returns fixed scores (excluded items at -1e10, as the contract asks)."""

    def __init__(self, items: Sequence[str], scores: Sequence[float], version: str = "v1") -> None:
        self._items: tuple[str | None, ...] = (None, *items)
        self.scores = np.array([0.0, *scores], dtype=np.float32)
        self.version = version
        self.trending: tuple[tuple[int, float], ...] = ()
        self.history_slots = 0
        self.state_dim = 2

    @property
    def items(self) -> Sequence[str | None]:
        return self._items

    def item_index(self, item_id: str) -> int:
        return self._items.index(item_id) if item_id in self._items else 0

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray:
        return state

    def rank(self, state: np.ndarray, exclude: np.ndarray, *history: Any) -> np.ndarray:
        return np.where(exclude > 0.5, np.float32(-1e10), self.scores)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same_value(stored: object, literal: object) -> bool:
    if isinstance(stored, bool) or isinstance(literal, bool):
        return isinstance(stored, bool) and isinstance(literal, bool) and stored == literal
    if _is_number(stored) or _is_number(literal):
        return _is_number(stored) and _is_number(literal) and float(stored) == float(literal)  # type: ignore[arg-type]
    return stored == literal


def field_value(item_id: str, item: CatalogItem | None, node: Comparison | Membership) -> object:
    field = node.field
    if field.kind == "item_id":
        return item_id
    if item is None:
        return None
    if field.kind == "price":
        return item.price
    if field.kind == "category":
        return item.category
    return item.attributes.get(str(field.name))


def matches(node: Node, item_id: str, item: CatalogItem | None) -> bool:
    if isinstance(node, Not):
        return not matches(node.operand, item_id, item)
    if isinstance(node, And):
        return all(matches(operand, item_id, item) for operand in node.operands)
    if isinstance(node, Or):
        return any(matches(operand, item_id, item) for operand in node.operands)
    value = field_value(item_id, item, node)
    if isinstance(node, Membership):
        found = value is not None and any(same_value(value, v) for v in node.values)
        return not found if node.negated else found
    if node.op in ("==", "!="):
        equal = value is not None and same_value(value, node.value)
        return equal if node.op == "==" else not equal
    return _is_number(value) and ORDERINGS[node.op](float(value), node.value)  # type: ignore[arg-type]


@dataclass
class Request:
    items: list[str]  # the vocabulary without index 0
    catalog: dict[str, CatalogItem]
    scores: list[float]  # per vocabulary item, index 0 included
    rules: RuleSet
    k: int
    category: str | None = None
    purchased: tuple[str, ...] = ()
    # A new shopper: only these items may take organic places.
    listed: frozenset[str] | None = None


class Reference:
    """docs/rules.md, "Order of application", one loop per rule over every item in score order."""

    def __init__(self, request: Request, filter_tree: Node | None = None) -> None:
        self.request = request
        rules = request.rules
        self.tree = (
            filter_tree if filter_tree is not None else (parse_filter(rules.filter) if rules.filter else None)
        )
        self.index_of = {item_id: n + 1 for n, item_id in enumerate(request.items)}
        self.order = sorted(request.items, key=self.rank_key)
        self.counts: Counter[str] = Counter()
        self.taken: set[str] = set()

    def rank_key(self, item_id: str) -> tuple[float, int]:
        return (-self.request.scores[self.index_of[item_id]], self.index_of[item_id])

    def eligible(self, item_id: str) -> bool:
        request = self.request
        item = request.catalog.get(item_id)
        return (
            item_id in self.index_of
            and not (item is not None and item.stock <= 0)
            and (request.category is None or (item is not None and item.category == request.category))
            and item_id not in request.purchased
            and (self.tree is None or matches(self.tree, item_id, item))
            and item_id not in request.rules.exclude_items
        )

    def admits(self, item_id: str) -> bool:
        item = self.request.catalog.get(item_id)
        cap = self.request.rules.max_per_category
        return cap is None or item is None or self.counts[item.category] < cap

    def take(self, item_id: str) -> None:
        self.taken.add(item_id)
        if item_id in self.request.catalog:
            self.counts[self.request.catalog[item_id].category] += 1

    def choose(self, candidates: set[str] | None, limit: int) -> list[str]:
        chosen: list[str] = []
        for item_id in self.order:
            if len(chosen) >= limit:
                break
            if candidates is not None and item_id not in candidates:
                continue
            if self.eligible(item_id) and item_id not in self.taken and self.admits(item_id):
                self.take(item_id)
                chosen.append(item_id)
        return chosen

    def promoted(self, free: int) -> list[str]:
        chosen: list[str] = []
        for promotion in self.request.rules.promotions:
            members = set(promotion.items) if promotion.items else set(self.request.items)
            if promotion.filter is not None:
                tree = parse_filter(promotion.filter)
                members = {i for i in members if matches(tree, i, self.request.catalog.get(i))}
            chosen += self.choose(members, min(promotion.slots, free - len(chosen)))
        return chosen

    def top_k(self) -> list[tuple[str, float]]:
        request = self.request
        pins = sorted(
            (
                (p.item_id, p.position)
                for p in request.rules.pinned
                if p.position <= request.k and self.eligible(p.item_id)
            ),
            key=lambda pin: pin[1],
        )
        for item_id, _ in pins:
            self.take(item_id)
        free = request.k - len(pins)
        chosen = self.promoted(free)
        listed = set(request.listed) if request.listed is not None else None
        chosen += self.choose(listed, free - len(chosen))
        chosen.sort(key=self.rank_key)
        result: list[str] = []
        while chosen or pins:
            if pins and (pins[0][1] == len(result) + 1 or not chosen):
                result.append(pins.pop(0)[0])
            else:
                result.append(chosen.pop(0))
        return [(i, float(np.float32(request.scores[self.index_of[i]]))) for i in result]
