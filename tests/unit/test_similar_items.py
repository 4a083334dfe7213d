"""Similar items in the domain (docs/similar.md): the model's cosine neighbours under stock and the business
rules, live trending in the item's category when the model cannot answer, 404 for an unknown item. The
model is tests/unit/numpy_model.py with hand-placed 2-d vectors, so every order is checkable by eye."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import pytest

from nextpick.adapters.memory import InMemoryCatalog, StaticModelSource
from nextpick.domain.events import CatalogItem
from nextpick.domain.rules import RuleSet
from nextpick.domain.similar_items import NeighbourSource, SimilarItems
from nextpick.domain.trending import LiveTrending, TrendingWindow, bucket_key
from nextpick.errors import MissingReference
from tests.unit.numpy_model import NumpyModel

NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
# Shoes at angles 0, 10, 20, 30, 40 degrees; books at 90, 80, 70 degrees; a shoe at 60 degrees.
ANGLES = {"s1": 0, "s2": 10, "s3": 20, "s4": 30, "s5": 40, "b1": 90, "b2": 80, "b3": 70, "s6": 60}
CATEGORY = {item: "shoes" if item.startswith("s") else "books" for item in ANGLES}
PRICE = {
    "s1": 10.0,
    "s2": 20.0,
    "s3": 30.0,
    "s4": 40.0,
    "s5": 50.0,
    "b1": 5.0,
    "b2": 6.0,
    "b3": 7.0,
    "s6": 60.0,
}
OUT_OF_STOCK = {"s3"}


def model(has_similar: bool = True) -> NumpyModel:
    m = NumpyModel(list(ANGLES), dim=2, version="m-7", has_similar=has_similar)
    for index, angle in enumerate(ANGLES.values(), start=1):
        m.embeddings[index] = [math.cos(math.radians(angle)), math.sin(math.radians(angle))]
    return m


def catalog(extra: Sequence[CatalogItem] = ()) -> InMemoryCatalog:
    items = [
        CatalogItem(item_id=i, category=CATEGORY[i], price=PRICE[i], stock=0 if i in OUT_OF_STOCK else 4)
        for i in ANGLES
    ]
    return InMemoryCatalog([*items, *extra])


class Counts:
    """One hour bucket of live trending, held in memory."""

    def __init__(self, counts: dict[str, float]) -> None:
        self.stored = {bucket_key("_all", NOW): counts}

    def read(self, buckets: Sequence[str]) -> dict[str, dict[str, float]]:
        return {key: self.stored[key] for key in buckets if key in self.stored}


# Trending now: s6 most, then b1, s4, s3 (out of stock), s2, new-shoe, s1.
TRENDING = {"s6": 9.0, "b1": 8.0, "s4": 7.0, "s3": 6.0, "s2": 5.0, "new-shoe": 4.5, "s1": 4.0}


def service(m: NumpyModel | None, shop: InMemoryCatalog | None = None) -> SimilarItems:
    shop = shop or catalog()
    live = LiveTrending(Counts(TRENDING), shop, TrendingWindow(24, 6.0), clock=lambda: NOW)
    return SimilarItems(StaticModelSource(m), shop, live)


def ids(answer: object) -> list[str]:
    return [item.item_id for item in answer.items]  # type: ignore[attr-defined]


def test_neighbours_are_the_models_cosines_best_first_never_the_item_or_out_of_stock() -> None:
    found = service(model()).similar("s2", k=4)
    # From s2 (10 degrees): s1 and s3 are 10 away, but s3 is out of stock; then s4 (20), s5 (30).
    assert found.source is NeighbourSource.MODEL and found.model_version == "m-7"
    assert ids(found) == ["s1", "s4", "s5", "s6"]
    assert [item.score for item in found.items] == pytest.approx(
        [math.cos(math.radians(d)) for d in (10, 20, 30, 50)], abs=1e-6
    )
    assert found.as_json()["source"] == "model"


def test_k_caps_the_list_and_a_large_k_returns_every_allowed_item_once() -> None:
    assert len(service(model()).similar("s1", k=2).items) == 2
    everything = ids(service(model()).similar("s1", k=100))
    assert sorted(everything) == sorted(set(ANGLES) - {"s1", "s3"})


def test_rules_apply_as_on_recommendations() -> None:
    rules = RuleSet(filter="price >= 20", max_per_category=2, exclude_items=("s4",))
    found = service(model()).similar("s1", k=3, rules=rules)
    # s2 (10 deg), [s3 out of stock, s4 excluded], s5 (40): shoes are full at 2, s6 is refused, and the
    # books are under the price floor.
    assert ids(found) == ["s2", "s5"]
    books = RuleSet(filter='category == "books"')
    assert ids(service(model()).similar("s1", k=2, rules=books)) == ["b3", "b2"]


def test_a_model_without_the_signature_falls_back_to_trending_in_the_items_category() -> None:
    m = model(has_similar=False)
    found = service(m).similar("s2", k=10)
    assert found.source is NeighbourSource.FALLBACK and found.model_version == "m-7"
    # Trending shoes, in stock, not s2 itself: s6, s4, s1 (s3 is out of stock; new-shoe not in the catalog).
    assert ids(found) == ["s6", "s4", "s1"]
    assert [item.score for item in found.items] == pytest.approx([9.0, 7.0, 4.0])


def test_an_item_the_model_does_not_know_yet_falls_back_and_rules_still_apply() -> None:
    shop = catalog([CatalogItem(item_id="new-shoe", category="shoes", price=99.0, stock=1)])
    m = model()
    found = service(m, shop).similar("new-shoe", k=10)
    assert found.source is NeighbourSource.FALLBACK and m.similar_calls == 0
    assert ids(found) == ["s6", "s4", "s2", "s1"]
    ruled = service(m, shop).similar(
        "new-shoe", k=10, rules=RuleSet(filter="price < 50", exclude_items=("s2",), max_per_category=1)
    )
    assert ids(ruled) == ["s4"]


def test_no_model_yet_falls_back_with_no_version() -> None:
    found = service(None).similar("b2", k=5)
    assert found.source is NeighbourSource.FALLBACK and found.model_version is None
    assert ids(found) == ["b1"]


def test_an_item_the_catalog_does_not_know_is_missing_reference_naming_item_id() -> None:
    m = model()
    with pytest.raises(MissingReference) as raised:
        service(m).similar("no-such-item", k=5)
    assert raised.value.field == "item_id" and m.similar_calls == 0


def test_the_exclude_mask_the_model_sees_holds_stock_and_the_item() -> None:
    seen: list[np.ndarray] = []
    m = model()
    original = m.similar

    def spy(item: int, exclude: np.ndarray) -> np.ndarray | None:
        seen.append(exclude.copy())
        return original(item, exclude)

    m.similar = spy  # type: ignore[method-assign]
    service(m).similar("s1", k=3)
    (exclude,) = seen
    assert exclude[m.item_index("s1")] == 1.0 and exclude[m.item_index("s3")] == 1.0 and exclude[0] == 1.0
    assert exclude.sum() == 3.0
