"""What ranking needs to know about the catalog: stock and category for the exclusion masks, and price and
attributes for the business rules' filters (docs/rules.md)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from nextpick.domain.events import CatalogItem

AttributeValue = str | int | float | bool


@dataclass(frozen=True)
class CatalogSnapshot:
    # Identifies this snapshot so that masks derived from it can be cached until it changes.
    snapshot_id: int
    out_of_stock: frozenset[str] = frozenset()
    category_of: dict[str, str] = field(default_factory=dict)
    price_of: dict[str, float] = field(default_factory=dict)
    # attribute name -> item id -> value: one dict per attribute, the layout the vocabulary-aligned
    # columns are built from (catalog_columns.py), and fewer dicts than one per item (100k items with
    # 10 attributes: 10 dicts, not 100k).
    attributes: dict[str, dict[str, AttributeValue]] = field(default_factory=dict)
    # Every item id of the catalog (in stock or not): what the item routes' 404 is decided on.
    item_ids: frozenset[str] = frozenset()
    # Titles, for resolving search queries (domain/search.py); items without one are absent.
    title_of: dict[str, str] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> CatalogSnapshot:
        return cls(snapshot_id=0)

    def same_content(self, other: CatalogSnapshot) -> bool:
        """Whether `other` holds the same catalog (its id aside): masks and columns can be kept."""
        return (
            self.out_of_stock == other.out_of_stock
            and self.category_of == other.category_of
            and self.price_of == other.price_of
            and self.attributes == other.attributes
            and self.item_ids == other.item_ids
            and self.title_of == other.title_of
        )


class SnapshotBuilder:
    """Collects items one by one (a paged scan, a dict of items) into a snapshot.

    Strings are interned: a catalog repeats a few hundred brands and categories across 100k items, and
    one shared object per distinct value keeps the snapshot's memory proportional to the item count."""

    def __init__(self) -> None:
        self._out_of_stock: set[str] = set()
        self._category_of: dict[str, str] = {}
        self._price_of: dict[str, float] = {}
        self._attributes: dict[str, dict[str, AttributeValue]] = {}
        self._item_ids: set[str] = set()
        self._title_of: dict[str, str] = {}

    def add(
        self,
        item_id: str,
        category: str | None,
        price: float | None,
        stock: float | None,
        attributes: Mapping[str, AttributeValue] | None = None,
        title: str | None = None,
    ) -> None:
        self._item_ids.add(item_id)
        if category is not None:
            self._category_of[item_id] = sys.intern(category)
        if price is not None:
            self._price_of[item_id] = float(price)
        if title:
            self._title_of[item_id] = title
        if stock is not None and stock <= 0:
            self._out_of_stock.add(item_id)
        for name, value in (attributes or {}).items():
            column = self._attributes.get(name)
            if column is None:
                column = self._attributes[sys.intern(name)] = {}
            column[item_id] = sys.intern(value) if isinstance(value, str) else value

    def add_item(self, item: CatalogItem) -> None:
        self.add(item.item_id, item.category, item.price, item.stock, item.attributes, item.title)

    def build(self, snapshot_id: int) -> CatalogSnapshot:
        return CatalogSnapshot(
            snapshot_id,
            frozenset(self._out_of_stock),
            self._category_of,
            self._price_of,
            self._attributes,
            frozenset(self._item_ids),
            self._title_of,
        )


def snapshot_of(snapshot_id: int, items: Iterable[CatalogItem]) -> CatalogSnapshot:
    builder = SnapshotBuilder()
    for item in items:
        builder.add_item(item)
    return builder.build(snapshot_id)
