"""The catalog artifact's formats (docs/catalog-artifact.md): the pointer, a snapshot (every item as
columns over the artifact's own item order) and a delta (the rows one version changed). Pure: bytes in,
bytes out; `s3_catalog_artifact` stores them."""

from __future__ import annotations

import base64
import gzip
import json
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from nextpick.domain.catalog import AttributeValue, CatalogSnapshot
from nextpick.domain.catalog_changes import CatalogChanges, CatalogRow
from nextpick.errors import StorageUnavailable

FORMAT = "nextpick-catalog/1"


class ArtifactCorrupt(StorageUnavailable):
    """An artifact object that does not decode, has another format, or names another version."""


# ---------------------------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class ObjectRef:
    version: int
    key: str


@dataclass(frozen=True)
class ArtifactPointer:
    version: int
    snapshot: ObjectRef
    # Ascending, contiguous, ending at `version` (or empty when the snapshot is the version).
    deltas: tuple[ObjectRef, ...] = ()
    # Made at the bootstrap and kept by every later version: an artifact rebuilt from scratch (the
    # operator's repair) numbers its versions from 1 again, and a container must not take its version 1
    # for the old one's.
    lineage: str = ""

    def encode(self) -> bytes:
        document = {
            "format": FORMAT,
            "version": self.version,
            "lineage": self.lineage,
            "snapshot": {"version": self.snapshot.version, "key": self.snapshot.key},
            "deltas": [{"version": d.version, "key": d.key} for d in self.deltas],
            "written_at": datetime.now(UTC).isoformat(),
        }
        return json.dumps(document).encode()

    @classmethod
    def decode(cls, body: bytes) -> ArtifactPointer:
        try:
            document = json.loads(body)
            _check_format(document, "the catalog pointer")
            pointer = cls(
                version=int(document["version"]),
                snapshot=ObjectRef(int(document["snapshot"]["version"]), str(document["snapshot"]["key"])),
                deltas=tuple(ObjectRef(int(d["version"]), str(d["key"])) for d in document["deltas"]),
                lineage=str(document["lineage"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactCorrupt(f"the catalog pointer does not parse: {exc}") from exc
        if pointer.snapshot.version > pointer.version:
            raise ArtifactCorrupt("the catalog pointer's snapshot is newer than its version")
        return pointer

    def deltas_after(self, version: int) -> list[ObjectRef] | None:
        """The deltas from `version` + 1 to this version, or None when the pointer no longer lists all."""
        needed = [d for d in self.deltas if d.version > version]
        if [d.version for d in needed] != list(range(version + 1, self.version + 1)):
            return None
        return needed


def _check_format(document: Any, what: str) -> None:
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ArtifactCorrupt(f"{what} is not {FORMAT}")


def _value_key(value: AttributeValue) -> tuple[str, AttributeValue]:
    # True == 1 to a dict: keyed by type too, so a boolean never becomes a number on the way through.
    return (type(value).__name__, value)


def _coded(values: Sequence[AttributeValue | None]) -> dict[str, Any]:
    """A categorical column: distinct values once, each item a code (-1: none)."""
    code_of: dict[tuple[str, AttributeValue], int] = {}
    table: list[AttributeValue] = []
    codes: list[int] = []
    for value in values:
        if value is None:
            codes.append(-1)
            continue
        key = _value_key(value)
        code = code_of.get(key)
        if code is None:
            code = code_of[key] = len(table)
            table.append(value)
        codes.append(code)
    return {"values": table, "codes": codes}


def _decoded(column: dict[str, Any], items: Sequence[str]) -> dict[str, AttributeValue]:
    table = [sys.intern(v) if isinstance(v, str) else v for v in column["values"]]
    codes = column["codes"]
    if len(codes) != len(items):
        raise ArtifactCorrupt("a catalog column's length is not the item count")
    return {item_id: table[code] for item_id, code in zip(items, codes, strict=True) if code >= 0}


def encode_snapshot(snapshot: CatalogSnapshot, version: int) -> bytes:
    """Every item as columns over the artifact's own item order (sorted ids): ids once, categories and
    attributes dictionary-coded, stock a bitmap. Not the model's vocabulary order: the artifact outlives
    model versions and holds items no model knows yet (new items before the catalog refresh)."""
    items = sorted(snapshot.item_ids)
    out_of_stock = np.fromiter((i in snapshot.out_of_stock for i in items), dtype=bool, count=len(items))
    document = {
        "format": FORMAT,
        "kind": "snapshot",
        "version": version,
        "items": items,
        "out_of_stock": base64.b64encode(np.packbits(out_of_stock).tobytes()).decode(),
        "category": _coded([snapshot.category_of.get(i) for i in items]),
        "price": [snapshot.price_of.get(i) for i in items],
        "title": [snapshot.title_of.get(i) for i in items],
        "attributes": {
            name: _coded([values.get(i) for i in items]) for name, values in snapshot.attributes.items()
        },
    }
    return gzip.compress(json.dumps(document, separators=(",", ":")).encode(), compresslevel=6)


def _document(body: bytes, what: str, kind: str, version: int) -> dict[str, Any]:
    try:
        document = json.loads(gzip.decompress(body))
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise ArtifactCorrupt(f"{what} does not decode: {exc}") from exc
    _check_format(document, what)
    if document.get("kind") != kind or document.get("version") != version:
        raise ArtifactCorrupt(f"{what} is not the {kind} of version {version}")
    assert isinstance(document, dict)
    return document


def decode_snapshot(body: bytes, version: int, what: str = "the catalog snapshot") -> CatalogSnapshot:
    document = _document(body, what, "snapshot", version)
    try:
        items = [sys.intern(i) for i in document["items"]]
        bits = np.unpackbits(np.frombuffer(base64.b64decode(document["out_of_stock"]), dtype=np.uint8))
        if (
            len(document["price"]) != len(items)
            or len(document["title"]) != len(items)
            or len(bits) < len(items)
        ):
            raise ArtifactCorrupt(f"{what}: a column's length is not the item count")
        category_of = _decoded(document["category"], items)
        attributes = {sys.intern(n): _decoded(c, items) for n, c in document["attributes"].items()}
        return CatalogSnapshot(
            version,
            frozenset(i for i, bit in zip(items, bits[: len(items)].tolist(), strict=True) if bit),
            {k: v for k, v in category_of.items() if isinstance(v, str)},
            {i: float(p) for i, p in zip(items, document["price"], strict=True) if p is not None},
            {n: c for n, c in attributes.items() if c},
            frozenset(items),
            {i: t for i, t in zip(items, document["title"], strict=True) if t},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactCorrupt(f"{what} does not parse: {exc}") from exc


def _row_json(row: CatalogRow) -> dict[str, Any]:
    return {
        "category": row.category,
        "price": row.price,
        "out_of_stock": row.out_of_stock,
        "title": row.title,
        "attributes": dict(row.attributes),
    }


def encode_delta(changes: CatalogChanges, version: int) -> bytes:
    document = {
        "format": FORMAT,
        "kind": "delta",
        "version": version,
        "upserts": {item_id: _row_json(row) for item_id, row in sorted(changes.upserts.items())},
        "removes": sorted(changes.removes),
    }
    return gzip.compress(json.dumps(document, separators=(",", ":")).encode())


def decode_delta(body: bytes, version: int, what: str = "a catalog delta") -> CatalogChanges:
    document = _document(body, what, "delta", version)
    try:
        upserts = {
            sys.intern(item_id): CatalogRow(
                category=sys.intern(row["category"]) if row["category"] is not None else None,
                price=float(row["price"]) if row["price"] is not None else None,
                out_of_stock=bool(row["out_of_stock"]),
                title=row["title"],
                attributes={
                    sys.intern(n): sys.intern(v) if isinstance(v, str) else v
                    for n, v in row["attributes"].items()
                },
            )
            for item_id, row in document["upserts"].items()
        }
        return CatalogChanges(upserts, frozenset(str(i) for i in document["removes"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ArtifactCorrupt(f"{what} does not parse: {exc}") from exc
