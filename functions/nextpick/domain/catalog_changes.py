"""Catalog changes as serving sees them: one item's row, a batch's net changes against a snapshot, and a
snapshot with changes applied (docs/catalog-artifact.md).

The availability artifact's writer folds the items table's stream into these; every serving container
applies the same changes to the same snapshot, so all containers hold the same catalog for a version.
A change is what serving can tell apart: a stock of 5 becoming 4 is no change (both in stock), so most
stock decrements never make a new version at all."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import TypeVar

from nextpick.domain.catalog import AttributeValue, CatalogSnapshot


@dataclass(frozen=True)
class CatalogRow:
    """One item as a `CatalogSnapshot` holds it."""

    category: str | None = None
    price: float | None = None
    out_of_stock: bool = False
    title: str | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        category: str | None,
        price: float | None,
        stock: float | None,
        attributes: Mapping[str, AttributeValue] | None = None,
        title: str | None = None,
    ) -> CatalogRow:
        """The row `SnapshotBuilder.add` would make of these fields (same rules: no stock is in stock,
        an empty title is none)."""
        return cls(
            category=sys.intern(category) if category is not None else None,
            price=float(price) if price is not None else None,
            out_of_stock=stock is not None and stock <= 0,
            title=title or None,
            attributes={
                sys.intern(name): sys.intern(value) if isinstance(value, str) else value
                for name, value in (attributes or {}).items()
            },
        )

    def same(self, other: CatalogRow | None) -> bool:
        """Equal, and attribute values of the same type too (`==` has True == 1; the filters do not)."""
        return (
            other is not None
            and self == other
            and all(_same(value, other.attributes.get(name)) for name, value in self.attributes.items())
        )


def _same(a: object, b: object) -> bool:
    return type(a) is type(b) and a == b


def row_of(snapshot: CatalogSnapshot, item_id: str) -> CatalogRow | None:
    """The item's row in the snapshot; None when the catalog does not have it."""
    if item_id not in snapshot.item_ids:
        return None
    return CatalogRow(
        category=snapshot.category_of.get(item_id),
        price=snapshot.price_of.get(item_id),
        out_of_stock=item_id in snapshot.out_of_stock,
        title=snapshot.title_of.get(item_id),
        attributes={
            name: values[item_id] for name, values in snapshot.attributes.items() if item_id in values
        },
    )


@dataclass(frozen=True)
class CatalogChanges:
    """Items to add or replace, and items to drop."""

    upserts: Mapping[str, CatalogRow] = field(default_factory=dict)
    removes: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.upserts or self.removes)

    @property
    def item_count(self) -> int:
        return len(self.upserts) + len(self.removes)


def last_word(records: Iterable[tuple[str, CatalogRow | None]]) -> dict[str, CatalogRow | None]:
    """Each item's last row in stream order (None: removed): a batch that puts an item out of stock and
    back in stock ends in stock."""
    latest: dict[str, CatalogRow | None] = {}
    for item_id, row in records:
        latest.pop(item_id, None)
        latest[item_id] = row
    return latest


def net_changes(snapshot: CatalogSnapshot, latest: Mapping[str, CatalogRow | None]) -> CatalogChanges:
    """What of `latest` differs from the snapshot. A redelivered stream batch (Lambda retries the same
    batch until it succeeds) finds every row already applied: no changes, so no new version."""
    upserts = {
        item_id: row
        for item_id, row in latest.items()
        if row is not None and not row.same(row_of(snapshot, item_id))
    }
    removes = frozenset(
        item_id for item_id, row in latest.items() if row is None and item_id in snapshot.item_ids
    )
    return CatalogChanges(upserts, removes)


def diff(before: CatalogSnapshot, after: CatalogSnapshot) -> CatalogChanges:
    """The changes that turn `before` into `after` (the daily reconciliation against a table scan)."""
    latest: dict[str, CatalogRow | None] = {item_id: None for item_id in before.item_ids - after.item_ids}
    for item_id in after.item_ids:
        latest[item_id] = row_of(after, item_id)
    return net_changes(before, latest)


def apply_changes(snapshot: CatalogSnapshot, changes: CatalogChanges, snapshot_id: int) -> CatalogSnapshot:
    """A new snapshot; `snapshot` is left as it was (masks built from it may still be in use).

    Copy-on-write per field: a field no change touches is shared with `snapshot`, so a stock change
    costs the (small) out-of-stock set, not a copy of every 1M-entry dict (~30 ms each)."""
    upserts, removes = changes.upserts, changes.removes
    out_of_stock = set(snapshot.out_of_stock) - removes - upserts.keys()
    out_of_stock.update(item_id for item_id, row in upserts.items() if row.out_of_stock)
    attributes = dict(snapshot.attributes)
    for name in {name for row in upserts.values() for name in row.attributes} | snapshot.attributes.keys():
        column = _written(
            snapshot.attributes.get(name, {}),
            removes,
            {i: r.attributes.get(name) for i, r in upserts.items()},
        )
        if column:
            attributes[name] = column
        else:
            attributes.pop(name, None)
    known = not removes and upserts.keys() <= snapshot.item_ids
    return CatalogSnapshot(
        snapshot_id,
        frozenset(out_of_stock),
        _written(snapshot.category_of, removes, {i: r.category for i, r in upserts.items()}),
        _written(snapshot.price_of, removes, {i: r.price for i, r in upserts.items()}),
        attributes,
        snapshot.item_ids if known else frozenset((snapshot.item_ids - removes) | upserts.keys()),
        _written(snapshot.title_of, removes, {i: r.title for i, r in upserts.items()}),
    )


V = TypeVar("V")


def _written(values: Mapping[str, V], removes: AbstractSet[str], new: Mapping[str, V | None]) -> dict[str, V]:
    """`values` without `removes` and with `new` (None: no value): the same dict when nothing differs."""
    if all(i not in values for i in removes) and all(_same(values.get(i), v) for i, v in new.items()):
        return values  # type: ignore[return-value]
    copy = dict(values)
    for item_id in removes:
        copy.pop(item_id, None)
    for item_id, value in new.items():
        if value is None:
            copy.pop(item_id, None)
        else:
            copy[item_id] = value
    return copy
