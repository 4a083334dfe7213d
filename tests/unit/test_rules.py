"""Business rules on small, hand-checked catalogs (docs/rules.md); tests/unit/test_rules_properties.py
checks the same engine against a brute-force reference on random catalogs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from nextpick.adapters.memory import InMemoryCatalog, InMemoryStateRepository, StaticModelSource
from nextpick.domain.catalog import snapshot_of
from nextpick.domain.events import CatalogItem, TrackedEvent
from nextpick.domain.ranking import CandidateMasks, MaskCache, RecommendOptions, top_k, trending_top_k
from nextpick.domain.rules import Pin, Promotion, RuleSet, rules_from
from nextpick.domain.service import Recommender
from nextpick.errors import InvalidRequest
from tests.unit.numpy_model import NumpyModel
from tests.unit.rules_reference import FixedScores


def catalog_item(item_id: str, category: str, price: float, stock: int = 5, **attributes: Any) -> CatalogItem:
    return CatalogItem(item_id=item_id, category=category, price=price, stock=stock, attributes=attributes)


# i1 scores 10, i2 9, ..., i10 1. i3 is out of stock; i10 is not in the catalog at all.
CATALOG = [
    catalog_item("i1", "shoes", 30, brand="acme", color="red"),
    catalog_item("i2", "shoes", 60, brand="zeta", color="blue"),
    catalog_item("i3", "hats", 20, stock=0, brand="acme"),
    catalog_item("i4", "hats", 15, brand="zeta", color="red"),
    catalog_item("i5", "socks", 5, brand="acme", color="red", size=10),
    catalog_item("i6", "socks", 8, size="10", organic=True),
    catalog_item("i7", "shoes", 45, brand="acme", size=10.0),
    catalog_item("i8", "hats", 70, brand="zeta", organic=False),
    catalog_item("i9", "socks", 12, brand="acme", size=12),
]
ITEMS = [f"i{n}" for n in range(1, 11)]


@pytest.fixture
def model() -> FixedScores:
    return FixedScores(ITEMS, [float(11 - n) for n in range(1, 11)])


@pytest.fixture
def masks(model: FixedScores) -> CandidateMasks:
    return CandidateMasks.build(model, snapshot_of(1, CATALOG))


def ranked(
    model: FixedScores, masks: CandidateMasks, k: int = 10, rules: RuleSet | None = None, **options: Any
) -> list[str]:
    picks = top_k(
        model,
        np.zeros(2, np.float32),
        masks,
        options.get("purchased", ()),
        k,
        options.get("exclude_purchased", True),
        options.get("category"),
        rules=rules,
    )
    return [pick.item_id for pick in picks]


def rules(**fields: Any) -> RuleSet:
    return RuleSet.model_validate(fields)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("price >= 10 and price < 50", ["i1", "i4", "i7", "i9"]),
        ('brand in ("acme")', ["i1", "i5", "i7", "i9"]),
        # `not in` and `!=` are the exact negations: an item without a brand (i6, i10) passes them.
        ('brand not in ("acme")', ["i2", "i4", "i6", "i8", "i10"]),
        ('brand != "acme"', ["i2", "i4", "i6", "i8", "i10"]),
        ('category not in ("shoes", "socks")', ["i4", "i8", "i10"]),
        ('category == "hats"', ["i4", "i8"]),
        ('attributes.color == "red" and not (price > 20)', ["i4", "i5"]),
        # Numbers equal numbers whatever their JSON form; the string "10" is not the number 10.
        ("attributes.size == 10", ["i5", "i7"]),
        ('attributes.size == "10"', ["i6"]),
        ("attributes.size >= 10", ["i5", "i7", "i9"]),
        ("attributes.size in (12, '10')", ["i6", "i9"]),
        ("attributes.organic == true", ["i6"]),
        ("attributes.organic != true", ["i1", "i2", "i4", "i5", "i7", "i8", "i9", "i10"]),
        ('attributes.missing == "x"', []),
        ("not (price < 10)", ["i1", "i2", "i4", "i7", "i8", "i9", "i10"]),  # i10 has no price
        ("price < 10 or price > 50", ["i2", "i5", "i6", "i8"]),
        ('item_id in ("i9", "i3", "nope")', ["i9"]),  # i3 is out of stock
        ('item_id != "i1" and price > 40', ["i2", "i7", "i8"]),
    ],
)
def test_a_filter_keeps_exactly_the_matching_in_stock_items(
    model: FixedScores, masks: CandidateMasks, expression: str, expected: list[str]
) -> None:
    assert ranked(model, masks, rules=rules(filter=expression)) == expected


def test_diversity_caps_each_category_and_leaves_uncategorised_items_alone(
    model: FixedScores, masks: CandidateMasks
) -> None:
    assert ranked(model, masks, k=4, rules=rules(max_per_category=1)) == ["i1", "i4", "i5", "i10"]
    assert ranked(model, masks, k=6, rules=rules(max_per_category=2)) == ["i1", "i2", "i4", "i5", "i6", "i8"]
    # One category page with a cap of 2: two items, however many the category holds.
    assert ranked(model, masks, k=10, rules=rules(max_per_category=2), category="socks") == ["i5", "i6"]


def test_a_promotion_takes_its_slots_by_score_and_merges_by_score(
    model: FixedScores, masks: CandidateMasks
) -> None:
    sale = Promotion(name="sale", slots=2, items=("i8", "i9", "i6", "i3", "unknown"))
    # 2 organic (i1, i2) + the promotion's best 2 in stock (i6, i8), merged by score.
    assert ranked(model, masks, k=4, rules=rules(promotions=[sale])) == ["i1", "i2", "i6", "i8"]
    # A promoted item that would be shown anyway counts as promoted: no duplicate, no extra slot.
    assert ranked(model, masks, k=7, rules=rules(promotions=[sale])) == [
        "i1",
        "i2",
        "i4",
        "i5",
        "i6",
        "i7",
        "i8",
    ]
    # The filter and the cart apply to promotions too; a promotion by filter alone.
    assert ranked(
        model, masks, k=3, rules=rules(promotions=[sale], filter="price < 65", exclude_items=["i6"])
    ) == ["i1", "i2", "i9"]
    by_filter = Promotion(name="zeta", slots=1, filter='brand == "zeta" and price > 60')
    assert ranked(model, masks, k=3, rules=rules(promotions=[by_filter])) == ["i1", "i2", "i8"]
    both = Promotion(name="both", slots=3, items=("i2", "i5", "i9"), filter='brand == "acme"')
    assert ranked(model, masks, k=3, rules=rules(promotions=[both])) == ["i1", "i5", "i9"]


def test_promotions_in_order_never_share_an_item_and_obey_the_cap(
    model: FixedScores, masks: CandidateMasks
) -> None:
    first = Promotion(name="first", slots=1, items=("i9", "i8"))
    second = Promotion(name="second", slots=2, items=("i9", "i8", "i7"))
    assert ranked(model, masks, k=4, rules=rules(promotions=[first, second])) == ["i1", "i7", "i8", "i9"]
    # The cap binds promoted picks as well: the pinned shoe (i1) fills shoes, so i7 cannot be promoted.
    capped = rules(pinned=[Pin(item_id="i1", position=1)], promotions=[second], max_per_category=1)
    assert ranked(model, masks, k=3, rules=capped) == ["i1", "i8", "i9"]
    # Promotions come before organic places: with one per category, organic gets what is left (socks).
    assert ranked(model, masks, k=3, rules=rules(promotions=[second], max_per_category=1)) == [
        "i5",
        "i7",
        "i8",
    ]
    # Slots beyond K: the promotion takes what there is room for.
    assert ranked(model, masks, k=2, rules=rules(promotions=[second])) == ["i7", "i8"]


def test_pins_hold_their_positions_respect_stock_and_count_for_diversity(
    model: FixedScores, masks: CandidateMasks
) -> None:
    pins = [Pin(item_id="i9", position=1), Pin(item_id="i2", position=3)]
    assert ranked(model, masks, k=4, rules=rules(pinned=pins)) == ["i9", "i1", "i2", "i4"]
    # Out of stock, in the cart, unknown to the model or past k: not placed; the list closes up.
    gone = [Pin(item_id="i3", position=1), Pin(item_id="i4", position=2), Pin(item_id="x", position=3)]
    assert ranked(model, masks, k=3, rules=rules(pinned=gone, exclude_items=["i4"])) == ["i1", "i2", "i5"]
    assert ranked(model, masks, k=2, rules=rules(pinned=[Pin(item_id="i9", position=3)])) == ["i1", "i2"]
    # A pin past the end of a short list follows the last item.
    short = rules(filter='price > 65 or item_id == "i1"', pinned=[Pin(item_id="i1", position=5)])
    assert ranked(model, masks, k=10, rules=short) == ["i8", "i1"]
    # A pinned shoe counts: with one shoe allowed, no other shoe is shown.
    assert ranked(
        model, masks, k=3, rules=rules(pinned=[Pin(item_id="i7", position=2)], max_per_category=1)
    ) == [
        "i4",
        "i7",
        "i5",
    ]
    # A pinned item is never also a promoted or an organic pick.
    promoted = Promotion(name="p", slots=1, items=("i9",))
    assert ranked(model, masks, k=3, rules=rules(pinned=[pins[0]], promotions=[promoted])) == [
        "i9",
        "i1",
        "i2",
    ]


def test_cart_items_purchases_and_the_category_option_are_never_shown(
    model: FixedScores, masks: CandidateMasks
) -> None:
    cart = rules(exclude_items=["i1", "i2", "unknown"])
    assert ranked(model, masks, k=3, rules=cart) == ["i4", "i5", "i6"]
    assert ranked(model, masks, k=3, rules=cart, purchased=("i4",)) == ["i5", "i6", "i7"]
    assert ranked(model, masks, k=3, rules=cart, purchased=("i4",), exclude_purchased=False) == [
        "i4",
        "i5",
        "i6",
    ]
    assert ranked(model, masks, k=9, rules=cart, category="shoes") == ["i7"]


def test_everything_at_once_in_the_documented_order(model: FixedScores, masks: CandidateMasks) -> None:
    everything = rules(
        filter="price < 65",  # drops i8; i3 is out of stock
        exclude_items=["i2"],
        pinned=[Pin(item_id="i6", position=2)],
        promotions=[Promotion(name="sale", slots=1, items=("i9", "i8"))],
        max_per_category=1,
    )
    # pinned i6 (socks) -> promoted i9 refused (socks full) -> organic: i1 (shoes), i4 (hats); i10 has
    # no price, so `price < 65` is false for it: three items for four places.
    assert ranked(model, masks, k=4, rules=everything) == ["i1", "i6", "i4"]


def test_ties_go_to_the_earlier_vocabulary_item() -> None:
    model = FixedScores(["a", "b", "c", "d", "e"], [1.0, 2.0, 2.0, 1.0, 2.0])
    masks = CandidateMasks.build(model, snapshot_of(1, []))
    assert ranked(model, masks, k=4, rules=RuleSet()) == ["b", "c", "e", "a"]
    promoted = Promotion(name="p", slots=1, items=("d", "a"))
    assert ranked(model, masks, k=3, rules=rules(promotions=[promoted])) == ["b", "c", "a"]


def test_filters_compile_once_per_model_version_and_snapshot(model: FixedScores) -> None:
    cache = MaskCache()
    masks = cache.get(model, snapshot_of(1, CATALOG))
    mask = masks.columns.filter_mask("price < 20")
    assert masks.columns.filter_mask("price < 20") is mask and not mask.flags.writeable
    assert cache.get(model, snapshot_of(1, CATALOG)).columns is masks.columns
    changed = cache.get(model, snapshot_of(2, [*CATALOG[:-1], catalog_item("i9", "socks", 30)]))
    assert changed.columns is not masks.columns
    assert mask[9] and not changed.columns.filter_mask("price < 20")[9]
    newer = FixedScores(ITEMS, [1.0] * 10, version="v2")
    assert cache.get(newer, snapshot_of(2, CATALOG)).columns is not changed.columns


def test_rule_sets_are_json_with_bounded_lists_and_forbid_unknown_fields() -> None:
    stored = rules(
        filter='brand in ("acme")',
        promotions=[{"name": "sale", "slots": 2, "items": ["i1", "i2"]}],
        max_per_category=3,
        pinned=[{"item_id": "i5", "position": 1}],
    )
    assert RuleSet.model_validate_json(stored.model_dump_json()) == stored
    with_cart = stored.with_excluded(("i9", "i9", "i8"))
    assert with_cart.exclude_items == ("i9", "i8") and with_cart.filter == stored.filter
    with pytest.raises(InvalidRequest) as raised:
        with_cart.with_excluded(tuple(f"c{n}" for n in range(499)))
    assert [error["field"] for error in raised.value.errors] == ["exclude_items"]
    with pytest.raises(InvalidRequest) as raised:
        rules_from({"pinned": [{"item_id": "a", "position": 1}, {"item_id": "a", "position": 2}]})
    assert raised.value.errors == [{"field": "pinned", "message": "Value error, an item is pinned twice"}]
    refused = [
        ({"filters": "price < 1"}, "filters"),
        ({"max_per_category": 0}, "max_per_category"),
        ({"pinned": [{"item_id": "a", "position": 0}]}, "pinned.0.position"),
        ({"pinned": [{"item_id": "a", "position": 1}, {"item_id": "a", "position": 2}]}, "pinned twice"),
        ({"pinned": [{"item_id": "a", "position": 1}, {"item_id": "b", "position": 1}]}, "same position"),
        ({"promotions": [{"name": "p", "slots": 1}]}, "needs items, a filter, or both"),
        ({"promotions": [{"name": "p", "slots": 1, "items": ["a"]}] * 2}, "same name"),
        ({"promotions": [{"name": "p/q", "slots": 1, "items": ["a"]}]}, "promotions.0.name"),
        ({"exclude_items": ["a"] * 501}, "exclude_items"),
        ({"pinned": [{"item_id": f"a{n}", "position": n + 1} for n in range(21)]}, "pinned"),
    ]
    for data, fragment in refused:
        with pytest.raises(ValidationError, match=fragment.replace(".", r"\.")):
            RuleSet.model_validate(data)


NOW = datetime(2026, 11, 30, tzinfo=UTC)


def test_the_service_applies_rules_and_without_them_answers_as_before(items: list[str]) -> None:
    model = NumpyModel(items)
    catalog = InMemoryCatalog([catalog_item(i, "a" if n % 2 else "b", float(n)) for n, i in enumerate(items)])
    svc = Recommender(InMemoryStateRepository(), StaticModelSource(model), catalog, clock=lambda: NOW)
    event = TrackedEvent(event_id="e1", user_id="u1", item_id="item-3", event_type="view", timestamp=NOW)  # type: ignore[arg-type]
    plain = svc.track([event], RecommendOptions(k=8)).users[0].recommendations
    assert svc.recommendations("u1", RecommendOptions(k=8, rules=RuleSet())).recommendations == plain
    cart = tuple(r.item_id for r in plain[:2])
    ruled = svc.recommendations(
        "u1",
        RecommendOptions(k=8, rules=RuleSet(filter="price >= 4", exclude_items=cart, max_per_category=3)),
    ).recommendations
    expected = [r for r in svc.recommendations("u1", RecommendOptions(k=20)).recommendations]
    expected = [r for r in expected if r.item_id not in cart and items.index(r.item_id) >= 4]
    by_category: dict[str, int] = {}
    kept = []
    for r in expected:
        category = "a" if items.index(r.item_id) % 2 else "b"
        if by_category.get(category, 0) < 3:
            by_category[category] = by_category.get(category, 0) + 1
            kept.append(r)
    assert ruled == kept[:8] and len(ruled) == 6


def test_a_new_shopper_gets_trending_under_the_rules(items: list[str]) -> None:
    trending = [(7, 9.0), (3, 8.0), (12, 7.0), (1, 6.0), (5, 5.0)]
    model = NumpyModel(items, trending=trending)
    catalog = InMemoryCatalog(
        [catalog_item(i, "a" if n < 10 else "b", float(n)) for n, i in enumerate(items)]
    )
    masks = CandidateMasks.build(model, catalog.snapshot())
    plain = trending_top_k(model, masks, 3, None)
    assert trending_top_k(model, masks, 3, None, RuleSet()) == plain
    assert [r.item_id for r in plain] == ["item-7", "item-3", "item-12"]
    pinned = RuleSet(
        pinned=(Pin(item_id="item-20", position=2),), exclude_items=("item-3",), filter="price > 1"
    )
    picks = trending_top_k(model, masks, 5, None, pinned)
    # Off the trending list, a pinned item still shows, with a trending score of 0; organic places come
    # from the list only (item-1 costs 0, item-3 is in the cart), so the list ends short of k.
    assert [(r.item_id, r.score) for r in picks] == [
        ("item-7", 9.0),
        ("item-20", 0.0),
        ("item-12", 7.0),
        ("item-5", 5.0),
    ]
