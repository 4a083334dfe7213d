"""The rules engine against a brute-force reference (tests/unit/rules_reference.py) on random catalogs:
random prices, brands, categories, attributes and stock, random scores (with ties), random rule sets."""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nextpick.domain import rules as rules_module
from nextpick.domain.catalog import snapshot_of
from nextpick.domain.events import CatalogItem
from nextpick.domain.filters import And, Comparison, FieldRef, Membership, Node, Not, Or, parse_filter, render
from nextpick.domain.ranking import CandidateMasks, top_k, trending_top_k
from nextpick.domain.rules import RuleSet
from tests.unit.rules_reference import FixedScores, Reference, Request, matches

CATEGORIES = ["a", "b", "c"]
BRANDS = ["acme", "zeta", "Acme"]
PRICES = [0.0, 5.0, 9.99, 10.0, 20.0, 50.0]
# Strings, numbers of both JSON forms, booleans: equality must tell them apart as documented.
COLORS: list[Any] = ["red", "blue", "1", 1, 1.0, 2.5, True, False]
SCORES = [-3.0, 0.0, 0.5, 1.0, 2.0]  # few values: ties are common


@st.composite
def catalogs(draw: st.DrawFn) -> tuple[list[str], dict[str, CatalogItem]]:
    size = draw(st.integers(1, 30))
    items = [f"i{n}" for n in range(size)]
    catalog = {}
    for item_id in items:
        if not draw(st.booleans()) and draw(st.booleans()):
            continue  # about a quarter of the items: known to the model, not to the catalog
        attributes: dict[str, Any] = {}
        if draw(st.booleans()):
            attributes["brand"] = draw(st.sampled_from(BRANDS))
        if draw(st.booleans()):
            attributes["color"] = draw(st.sampled_from(COLORS))
        catalog[item_id] = CatalogItem(
            item_id=item_id,
            category=draw(st.sampled_from(CATEGORIES)),
            price=draw(st.sampled_from(PRICES)),
            stock=draw(st.sampled_from([0, 3, 3, 3])),
            attributes=attributes,
        )
    return items, catalog


def conditions(items: list[str]) -> st.SearchStrategy[Node]:
    ids = st.sampled_from([*items, "unknown"])
    colors = st.sampled_from(
        [c if isinstance(c, str) else float(c) for c in COLORS if not isinstance(c, bool)] + [True, False]
    )
    numbers = st.sampled_from([0.0, 1.0, 2.5, 9.99, 10.0, 20.0])
    price, category, brand, color = (
        FieldRef("price"),
        FieldRef("category"),
        FieldRef("attribute", "brand"),
        FieldRef("attribute", "color"),
    )
    equality = st.sampled_from(["==", "!="])
    ordering = st.sampled_from(["==", "!=", "<", "<=", ">", ">="])
    return st.one_of(
        st.builds(Comparison, st.just(price), ordering, st.sampled_from([*PRICES, 7.5])),
        st.builds(
            Membership, st.just(price), st.lists(numbers, min_size=1, max_size=3).map(tuple), st.booleans()
        ),
        st.builds(Comparison, st.just(category), equality, st.sampled_from([*CATEGORIES, "z"])),
        st.builds(
            Membership,
            st.just(category),
            st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2).map(tuple),
            st.booleans(),
        ),
        st.builds(Comparison, st.just(brand), equality, st.sampled_from(BRANDS)),
        st.builds(
            Membership,
            st.just(brand),
            st.lists(st.sampled_from(BRANDS), min_size=1, max_size=2).map(tuple),
            st.booleans(),
        ),
        st.builds(Comparison, st.just(color), equality, colors),
        st.builds(Comparison, st.just(color), st.sampled_from(["<", ">="]), numbers),
        st.builds(
            Membership, st.just(color), st.lists(colors, min_size=1, max_size=3).map(tuple), st.booleans()
        ),
        st.builds(Comparison, st.just(FieldRef("item_id")), equality, ids),
        st.builds(
            Membership,
            st.just(FieldRef("item_id")),
            st.lists(ids, min_size=1, max_size=3).map(tuple),
            st.booleans(),
        ),
    )


def filters(items: list[str]) -> st.SearchStrategy[Node]:
    return st.recursive(
        conditions(items),
        lambda inner: st.one_of(
            st.builds(Not, inner),
            st.lists(inner, min_size=2, max_size=3).map(lambda ops: And(tuple(ops))),
            st.lists(inner, min_size=2, max_size=3).map(lambda ops: Or(tuple(ops))),
        ),
        max_leaves=6,
    )


@st.composite
def rule_sets(draw: st.DrawFn, items: list[str]) -> tuple[RuleSet, Node | None]:
    ids = st.sampled_from([*items, "unknown"])
    tree = draw(st.none() | filters(items))
    promotions = []
    for n in range(draw(st.integers(0, 2))):
        members = draw(st.lists(ids, max_size=8, unique=True))
        promotion_filter = draw(st.none() | conditions(items)) if members else draw(conditions(items))
        promotions.append(
            {
                "name": f"p{n}",
                "slots": draw(st.integers(1, 4)),
                "items": members,
                "filter": render(promotion_filter) if promotion_filter is not None else None,
            }
        )
    pinned = draw(st.lists(ids, max_size=3, unique=True))
    positions = draw(st.lists(st.integers(1, 12), min_size=len(pinned), max_size=len(pinned), unique=True))
    rules = RuleSet.model_validate(
        {
            "filter": render(tree) if tree is not None else None,
            "promotions": promotions,
            "max_per_category": draw(st.none() | st.integers(1, 3)),
            "pinned": [{"item_id": i, "position": p} for i, p in zip(pinned, positions, strict=True)],
            "exclude_items": draw(st.lists(ids, max_size=4)),
        }
    )
    return rules, tree


@st.composite
def requests(draw: st.DrawFn) -> tuple[Request, Node | None]:
    items, catalog = draw(catalogs())
    rules, tree = draw(rule_sets(items))
    scores = [0.0, *draw(st.lists(st.sampled_from(SCORES), min_size=len(items), max_size=len(items)))]
    request = Request(
        items=items,
        catalog=catalog,
        scores=scores,
        rules=rules,
        k=draw(st.integers(1, 15)),
        category=draw(st.none() | st.sampled_from(CATEGORIES)),
        purchased=tuple(draw(st.lists(st.sampled_from(items), max_size=3))),
    )
    return request, tree


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(requests(), st.booleans())
def test_the_engine_picks_what_the_brute_force_reference_picks(
    drawn: tuple[Request, Node | None], one_at_a_time: bool
) -> None:
    request, tree = drawn
    # The text the rule set holds parses back to the tree the reference interprets.
    if tree is not None:
        assert request.rules.filter is not None and parse_filter(request.rules.filter) == tree
    model = FixedScores(request.items, request.scores[1:])
    masks = CandidateMasks.build(model, snapshot_of(1, request.catalog.values()))
    # Rounds of one candidate: the many-round path a large catalog with a binding cap takes.
    rounds = (1, 1) if one_at_a_time else (rules_module.ROUND_FACTOR, rules_module.ROUND_MINIMUM)
    with mock.patch.multiple(rules_module, ROUND_FACTOR=rounds[0], ROUND_MINIMUM=rounds[1]):
        picks = top_k(
            model,
            np.zeros(2, np.float32),
            masks,
            request.purchased,
            request.k,
            True,
            request.category,
            rules=request.rules,
        )
    expected = Reference(request, tree).top_k()
    assert [(p.item_id, p.score) for p in picks] == expected
    # What the documentation promises of every answer, whatever the rules.
    shown = [p.item_id for p in picks]
    assert len(shown) == len(set(shown)) <= request.k
    for item_id in shown:
        item = request.catalog.get(item_id)
        assert item is None or item.stock > 0
        assert item_id not in request.rules.exclude_items and item_id not in request.purchased
        assert tree is None or matches(tree, item_id, item)


@PROPERTY_SETTINGS
@given(requests(), st.data())
def test_a_new_shoppers_trending_answer_matches_the_reference(
    drawn: tuple[Request, Node | None], data: st.DataObject
) -> None:
    request, tree = drawn
    listed = data.draw(st.lists(st.sampled_from(request.items), unique=True, max_size=10))
    trending = [
        (request.items.index(i) + 1, float(data.draw(st.sampled_from([1.0, 2.0, 3.5])))) for i in listed
    ]
    model = FixedScores(request.items, [0.0] * len(request.items))
    model.trending = tuple(sorted(trending, key=lambda pair: -pair[1]))
    masks = CandidateMasks.build(model, snapshot_of(1, request.catalog.values()))
    picks = trending_top_k(model, masks, request.k, request.category, request.rules)
    scores = [0.0] * (len(request.items) + 1)
    for index, score in trending:
        scores[index] = score
    new_shopper = Request(
        request.items,
        request.catalog,
        scores,
        request.rules,
        request.k,
        request.category,
        (),
        frozenset(listed),
    )
    assert [(p.item_id, p.score) for p in picks] == Reference(new_shopper, tree).top_k()


@settings(max_examples=200, deadline=None)
@given(catalogs(), st.data())
def test_a_compiled_filter_is_the_item_by_item_interpretation(
    drawn: tuple[list[str], dict[str, CatalogItem]], data: st.DataObject
) -> None:
    items, catalog = drawn
    tree = data.draw(filters(items))
    model = FixedScores(items, [0.0] * len(items))
    columns = CandidateMasks.build(model, snapshot_of(1, catalog.values())).columns
    mask = columns.filter_mask(render(tree))
    assert [bool(mask[n + 1]) for n in range(len(items))] == [matches(tree, i, catalog.get(i)) for i in items]
