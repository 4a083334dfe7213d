"""The catalog as columns aligned to one model's vocabulary, and filter expressions compiled over them.

Built once per (model version, catalog snapshot), like the exclusion masks (`ranking.CandidateMasks`
owns one), and lazily: a column is built the first time a filter names its field, and a filter's mask the
first time the expression is seen. A request then pays for a dictionary lookup, not a pass over the
catalog: the per-request cost of a filter is flat in the number of items once its mask exists."""

from __future__ import annotations

import itertools
import operator
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Generic, TypeVar

import numpy as np

from nextpick.domain.catalog import AttributeValue, CatalogSnapshot
from nextpick.domain.filters import And, Comparison, FieldRef, Membership, Node, Not, Value, parse_filter

# Masks of distinct filter expressions kept per (model, snapshot): 64 x 100k items x 1 byte = 6.4 MB at
# most. Named rule sets and the few filters a storefront sends stay cached; a caller sending a new
# expression every time costs one mask build (~1 ms at 100k items, docs/rules.md) per request, no memory.
FILTER_CACHE_SIZE = 64
# Item lists (promotions) resolved to vocabulary indices, kept the same way.
ITEM_SET_CACHE_SIZE = 64

_ORDERINGS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruCache(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[K, V] = OrderedDict()

    def get_or_build(self, key: K, build: Callable[[K], V]) -> V:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        value = build(key)
        self._entries[key] = value
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return value


def value_key(value: AttributeValue | Value) -> tuple[str, object]:
    """How values compare: numbers by value (an attribute 10 equals a literal 10.0), a boolean is not a
    number (true is not 1), strings exactly (case and all)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    return ("string", value)


@dataclass(frozen=True)
class CodedColumn:
    """A categorical column: `codes[i]` is item i's value's code, -1 where the item has none."""

    codes: np.ndarray
    code_of: dict[tuple[str, object], int]
    # The numeric values (NaN where the value is missing or not a number), for <, <=, >, >=.
    numbers: np.ndarray

    @classmethod
    def of(cls, values: Sequence[AttributeValue | None]) -> CodedColumn:
        code_of: dict[tuple[str, object], int] = {}
        # Most values are strings: one plain dict lookup each (a 100k-item column: ~20 ms, docs/rules.md).
        string_codes: dict[str, int] = {}
        codes = [-1] * len(values)
        numbers: dict[int, float] = {}
        for index, value in enumerate(values):
            if value.__class__ is str:
                code = string_codes.get(value)
                if code is None:
                    code = string_codes[value] = code_of.setdefault(value_key(value), len(code_of))
                codes[index] = code
            elif value is not None:
                key = value_key(value)
                codes[index] = code_of.setdefault(key, len(code_of))
                if key[0] == "number":
                    numbers[index] = key[1]  # type: ignore[assignment]
        number_column = np.full(len(values), np.nan)
        number_column[list(numbers)] = list(numbers.values())
        code_column = np.array(codes, dtype=np.int32)
        code_column.flags.writeable = number_column.flags.writeable = False
        return cls(code_column, code_of, number_column)

    def equals(self, value: Value) -> np.ndarray:
        code = self.code_of.get(value_key(value))
        return self.codes == code if code is not None else np.zeros(len(self.codes), dtype=bool)

    def member_of(self, values: Sequence[Value]) -> np.ndarray:
        codes = [code for v in values if (code := self.code_of.get(value_key(v))) is not None]
        return np.isin(self.codes, codes)


class CatalogColumns:
    """What filters, diversity and promotions read, aligned to a model's vocabulary (index 0 = unknown)."""

    def __init__(
        self, items: Sequence[str | None], snapshot: CatalogSnapshot, index_of: Callable[[str], int]
    ) -> None:
        self._items = items
        self._snapshot = snapshot
        self._index_of = index_of
        self._attributes: dict[str, CodedColumn] = {}
        self._filters: LruCache[str, np.ndarray] = LruCache(FILTER_CACHE_SIZE)
        self._item_sets: LruCache[tuple[str, ...], np.ndarray] = LruCache(ITEM_SET_CACHE_SIZE)

    @property
    def size(self) -> int:
        return len(self._items)

    @cached_property
    def price(self) -> np.ndarray:
        """Each item's price; NaN for an item the catalog does not know."""
        # dict.get over the ids in C (`None`, the unknown item, is simply not a key).
        prices = map(self._snapshot.price_of.get, self._items, itertools.repeat(np.nan))  # type: ignore[arg-type]
        column = np.fromiter(prices, dtype=np.float64, count=len(self._items))
        column.flags.writeable = False
        return column

    @cached_property
    def category(self) -> CodedColumn:
        return CodedColumn.of(list(map(self._snapshot.category_of.get, self._items)))  # type: ignore[arg-type]

    def attribute(self, name: str) -> CodedColumn:
        column = self._attributes.get(name)
        if column is None:
            values = self._snapshot.attributes.get(name)
            if values is None:
                # No catalog item has it: an empty column, not cached (a filter may name anything).
                return CodedColumn.of([None] * len(self._items))
            column = CodedColumn.of(list(map(values.get, self._items)))  # type: ignore[arg-type]
            self._attributes[name] = column
        return column

    def index_of(self, item_id: str) -> int:
        """The item's vocabulary index; 0 when the model does not know it."""
        return self._index_of(item_id)

    def indices_of(self, item_ids: tuple[str, ...]) -> np.ndarray:
        """The vocabulary indices of the ids the model knows, ascending, each once."""

        def build(ids: tuple[str, ...]) -> np.ndarray:
            found = np.unique(np.fromiter((self._index_of(i) for i in ids), dtype=np.int64, count=len(ids)))
            found = found[found > 0]
            found.flags.writeable = False
            return found

        return self._item_sets.get_or_build(item_ids, build)

    def filter_mask(self, expression: str) -> np.ndarray:
        """True where the item satisfies the expression (read-only; cached per expression). Raises
        `InvalidInput("filter", ...)` on a bad expression."""

        def build(text: str) -> np.ndarray:
            mask = self.evaluate(parse_filter(text))
            mask.flags.writeable = False
            return mask

        return self._filters.get_or_build(expression, build)

    def evaluate(self, node: Node) -> np.ndarray:
        if isinstance(node, Comparison):
            return self._compare(node.field, node.op, node.value)
        if isinstance(node, Membership):
            mask = self._member(node.field, node.values)
            return ~mask if node.negated else mask
        if isinstance(node, Not):
            return ~self.evaluate(node.operand)
        masks = [self.evaluate(operand) for operand in node.operands]
        return np.logical_and.reduce(masks) if isinstance(node, And) else np.logical_or.reduce(masks)

    def _compare(self, field: FieldRef, op: str, value: Value) -> np.ndarray:
        # `a != v` is exactly `not (a == v)`: an item without the field passes it (docs/rules.md).
        if op == "!=":
            return ~self._compare(field, "==", value)
        if field.kind == "price":
            assert isinstance(value, float)
            return self.price == value if op == "==" else _ORDERINGS[op](self.price, value)
        if field.kind == "item_id":
            return self._member(field, (value,))
        column = self.category if field.kind == "category" else self.attribute(str(field.name))
        if op == "==":
            return column.equals(value)
        assert isinstance(value, float)
        return _ORDERINGS[op](column.numbers, value)

    def _member(self, field: FieldRef, values: Sequence[Value]) -> np.ndarray:
        if field.kind == "price":
            return np.isin(self.price, np.array(values, dtype=np.float64))
        if field.kind == "item_id":
            mask = np.zeros(len(self._items), dtype=bool)
            mask[self.indices_of(tuple(str(v) for v in values))] = True
            return mask
        column = self.category if field.kind == "category" else self.attribute(str(field.name))
        return column.member_of(values)
