"""Catalog changes and the artifact's formats, property-tested: applying the changes between two
catalogs to the first gives the second, applying them again changes nothing, and a snapshot or delta
survives its encoding unchanged (the artifact's bitmaps and coded columns included)."""

from __future__ import annotations

import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextpick.adapters.catalog_artifact_format import (
    ArtifactCorrupt,
    ArtifactPointer,
    ObjectRef,
    decode_delta,
    decode_snapshot,
    encode_delta,
    encode_snapshot,
)
from nextpick.domain.catalog import CatalogSnapshot, SnapshotBuilder
from nextpick.domain.catalog_changes import CatalogRow, apply_changes, diff, last_word, net_changes, row_of

ids = st.sampled_from([f"item-{n}" for n in range(12)])
values = st.one_of(
    st.booleans(), st.integers(-5, 5), st.floats(-10, 10, allow_nan=False), st.sampled_from(["a", "b", "1"])
)
rows = st.builds(
    CatalogRow.of,
    st.one_of(st.none(), st.sampled_from(["coffee", "tea"])),
    st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
    st.one_of(st.none(), st.integers(-1, 3)),
    st.dictionaries(st.sampled_from(["brand", "grams", "organic"]), values, max_size=3),
    st.one_of(st.none(), st.just(""), st.sampled_from(["Dark roast", "Sencha"])),
)
catalogs = st.dictionaries(ids, rows, max_size=8)


def snapshot(catalog: dict[str, CatalogRow], snapshot_id: int = 1) -> CatalogSnapshot:
    builder = SnapshotBuilder()
    for item_id, row in catalog.items():
        stock = 0 if row.out_of_stock else None
        builder.add(item_id, row.category, row.price, stock, row.attributes, row.title)
    return builder.build(snapshot_id)


def typed(row: CatalogRow | None) -> object:
    """The row with each attribute value's type, in name order (== alone has True == 1)."""
    assert row is not None
    attributes = sorted((name, type(value).__name__, value) for name, value in row.attributes.items())
    return (row.category, row.price, row.out_of_stock, row.title, attributes)


@settings(max_examples=200, deadline=None)
@given(catalogs, catalogs)
def test_applying_the_diff_gives_the_target_and_applying_it_again_changes_nothing(
    before: dict[str, CatalogRow], after: dict[str, CatalogRow]
) -> None:
    old, new = snapshot(before), snapshot(after)

    changes = diff(old, new)
    applied = apply_changes(old, changes, 2)

    assert applied.same_content(new)
    assert not diff(applied, new)
    for item_id in new.item_ids:  # attribute types too: True is not 1 to the filters
        assert typed(row_of(applied, item_id)) == typed(row_of(new, item_id))
    assert snapshot(before).same_content(old)  # the old snapshot is left as it was
    rows_of = lambda s: {i: typed(row_of(s, i)) for i in s.item_ids}  # noqa: E731
    assert bool(changes) == (rows_of(old) != rows_of(new))


@settings(max_examples=200, deadline=None)
@given(catalogs, catalogs)
def test_snapshots_and_deltas_survive_their_encoding(
    before: dict[str, CatalogRow], after: dict[str, CatalogRow]
) -> None:
    old, new = snapshot(before), snapshot(after)
    changes = diff(old, new)

    decoded = decode_snapshot(encode_snapshot(old, 7), 7)
    assert decoded.same_content(old) and decoded.snapshot_id == 7
    assert decode_delta(encode_delta(changes, 8), 8) == changes
    for item_id in old.item_ids:  # types too: True stays a bool, 1 an int, 1.0 a float
        assert typed(row_of(decoded, item_id)) == typed(row_of(old, item_id))


def test_the_last_word_of_a_batch_wins_and_a_row_equal_to_the_snapshot_is_no_change() -> None:
    base = snapshot({"a": CatalogRow.of("coffee", 4.0, 5)})
    latest = last_word(
        [
            ("a", CatalogRow.of("coffee", 4.0, 0)),
            ("b", CatalogRow.of("tea", 1.0, 1)),
            ("a", CatalogRow.of("coffee", 4.0, 9)),
        ]
    )

    assert latest == {"b": CatalogRow.of("tea", 1.0, 1), "a": CatalogRow.of("coffee", 4.0, 9)}
    assert net_changes(base, latest).upserts.keys() == {"b"}
    assert net_changes(base, {"c": None, "a": None}).removes == {"a"}


@pytest.mark.parametrize(
    ("body", "version"),
    [
        (b"not gzip", 1),
        (gzip.compress(b"[1, 2]"), 1),
        (gzip.compress(json.dumps({"format": "other/1", "kind": "snapshot", "version": 1}).encode()), 1),
        (encode_snapshot(snapshot({"a": CatalogRow.of("coffee", 1.0, 1)}), 1), 2),
        (encode_delta(diff(CatalogSnapshot.empty(), snapshot({"a": CatalogRow()})), 1), 1),
    ],
)
def test_an_artifact_object_that_is_not_the_named_snapshot_is_corrupt(body: bytes, version: int) -> None:
    with pytest.raises(ArtifactCorrupt):
        decode_snapshot(body, version)


def test_a_pointer_lists_the_deltas_a_container_needs_or_says_it_cannot() -> None:
    deltas = tuple(ObjectRef(v, f"d{v}") for v in (2, 3, 4, 5))
    pointer = ArtifactPointer(5, ObjectRef(3, "s3"), deltas, lineage="0f3a")

    assert [d.key for d in pointer.deltas_after(3) or []] == ["d4", "d5"]
    assert pointer.deltas_after(5) == []
    assert pointer.deltas_after(0) is None  # delta 1 is no longer listed: read the snapshot
    assert ArtifactPointer.decode(pointer.encode()) == pointer
    with pytest.raises(ArtifactCorrupt):
        ArtifactPointer.decode(b'{"format": "nextpick-catalog/1", "version": 1}')
