"""What ranking needs to know about the catalog: what is out of stock and what is in which category."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CatalogSnapshot:
    # Identifies this snapshot so that masks derived from it can be cached until it changes.
    snapshot_id: int
    out_of_stock: frozenset[str] = frozenset()
    category_of: dict[str, str] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> CatalogSnapshot:
        return cls(snapshot_id=0)
