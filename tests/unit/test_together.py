"""Bought together and cart completion, by hand on tiny inputs (docs/bought-together.md)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nextpick.adapters import model_artifacts
from nextpick.adapters import model_registry as registry
from nextpick.adapters.memory import InMemoryCatalog, InMemoryStateRepository, StaticModelSource
from nextpick.domain.events import CatalogItem, EventType
from nextpick.domain.ranking import RecommendOptions
from nextpick.domain.requests import RequestLimits, parse_body
from nextpick.domain.rules import RuleSet
from nextpick.domain.together import PartnerTable, blend, check_table
from nextpick.domain.together_service import CartBody, TogetherService
from nextpick.domain.trending import ALL_CATEGORIES, LiveTrending, TrendingWindow, bucket_key
from nextpick.errors import InvalidRequest, MissingReference, ModelIntegrityError
from nextpick_training.event_log import LogRecord
from nextpick_training.together import COUNTS, PartnerScoring, partner_table, purchase_orders, split_orders
from tests.unit.numpy_model import NumpyModel

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)

# --- the co-purchase computation ----------------------------------------------------------------------


def test_orders_split_by_the_history_order_rule() -> None:
    # 0, 300, 700: each within 600 s of the last purchase: one order; 1400 is 700 s later: a new one.
    purchases = [(0.0, 1), (300.0, 2), (700.0, 3), (700.0, 2), (1400.0, 4)]
    assert split_orders(purchases) == [[1, 2, 3], [4]]


def _record(user: str, item: str, seconds: float, event_type: EventType = EventType.PURCHASE) -> LogRecord:
    moment = NOW + timedelta(seconds=seconds)
    return LogRecord(f"{user}-{item}-{seconds}", user, item, event_type, 1.0, moment, moment)


def test_purchase_orders_are_per_shopper_and_only_purchases_of_known_items() -> None:
    records = [
        _record("u1", "b", 100),
        _record("u1", "a", 0),
        _record("u2", "a", 50),  # another shopper at the same time: another order
        _record("u1", "c", 200, EventType.VIEW),  # not a purchase
        _record("u1", "zz", 150),  # not in the vocabulary
        _record("u2", "c", 5000),
    ]
    orders = purchase_orders(records, {"a": 1, "b": 2, "c": 3})
    assert sorted(orders) == [[1], [1, 2], [3]]


# n(1)=3, n(2)=3, n(3)=4, n(4)=2; c(1,2)=2, c(1,3)=1, c(3,4)=2, c(2,3)=1.
ORDERS = [[1, 2], [1, 2], [1, 3], [3, 4], [3, 4], [3, 2]]


def _rows(table: PartnerTable) -> dict[int, list[tuple[int, float]]]:
    return {
        i: [(int(p), round(float(s), 4)) for p, s in zip(*table.of(i), strict=True)]
        for i in range(1, table.rows)
    }


def test_plain_counts_by_hand() -> None:
    table = partner_table(ORDERS, 5, COUNTS)
    assert _rows(table) == {
        1: [(2, 2.0), (3, 1.0)],
        2: [(1, 2.0), (3, 1.0)],
        3: [(4, 2.0), (1, 1.0), (2, 1.0)],  # a tie goes to the lower index
        4: [(3, 2.0)],
    }


def test_lift_divides_by_the_partners_orders() -> None:
    table = partner_table(ORDERS, 5, PartnerScoring(beta=1.0, shrink=0.0, min_support=1, prior=0.0))
    assert _rows(table) == {
        1: [(2, round(2 / 3, 4)), (3, 0.25)],
        2: [(1, round(2 / 3, 4)), (3, 0.25)],
        3: [(4, 1.0), (1, round(1 / 3, 4)), (2, round(1 / 3, 4))],
        4: [(3, 0.5)],
    }


def test_min_support_and_top_n() -> None:
    table = partner_table(ORDERS, 5, PartnerScoring(beta=0.5, shrink=10.0, min_support=2, prior=0.0, top_n=1))
    assert table.partners.shape == (5, 1)
    assert {i: [p for p, _ in row] for i, row in _rows(table).items()} == {1: [2], 2: [1], 3: [4], 4: [3]}
    assert table.scores[1, 0] == pytest.approx(2 / np.sqrt(3 + 10))


def test_an_order_of_one_item_or_no_orders_gives_no_partners() -> None:
    table = partner_table([[1], [2]], 3, COUNTS)
    assert not table.partners.any() and not table.scores.any()


def test_rows_beyond_the_table_have_no_partners() -> None:
    table = partner_table(ORDERS, 5, COUNTS)
    assert len(table.of(9)[0]) == 0 and len(table.of(0)[0]) == 0


@pytest.mark.parametrize(
    ("partners", "scores"),
    [
        (np.array([[0, 0], [1, 0]], np.int32), np.array([[0, 0], [1, 0]], np.float32)),  # its own partner
        (np.array([[0, 0], [2, 0]], np.int32), np.array([[0, 0], [1, 0]], np.float32)),  # outside
        (np.array([[0, 0], [0, 0]], np.int32), np.array([[0, 0], [1, 0]], np.float32)),  # score on padding
        (np.array([[1], [0]], np.int64), np.array([[1], [0]], np.float32)),  # dtype
    ],
)
def test_a_malformed_table_is_refused(partners: np.ndarray, scores: np.ndarray) -> None:
    with pytest.raises(ValueError):
        check_table(partners, scores)


def test_the_artifact_round_trips_and_corrupt_bytes_are_an_integrity_error() -> None:
    table = partner_table(ORDERS, 5, COUNTS)
    body = model_artifacts.encode_partner_table(table)
    again = model_artifacts.decode_partner_table(body)
    assert np.array_equal(again.partners, table.partners) and np.array_equal(again.scores, table.scores)
    entry = model_artifacts.bought_together_entry(body, COUNTS.as_dict())
    assert entry["shape"] == [5, 20] and entry["sha256"] == registry.sha256_hex(body)
    for corrupt in (b"not an npz", body[: len(body) // 2]):
        with pytest.raises(ModelIntegrityError):
            model_artifacts.decode_partner_table(corrupt)


# --- the blend ----------------------------------------------------------------------------------------


def test_blend_is_the_log_of_the_mixture_by_hand() -> None:
    model = np.log(np.array([1e-9, 0.5, 0.25, 0.25], np.float64)).astype(np.float32)
    exclude = np.array([1, 0, 0, 0], np.float32)
    partners = np.array([0, 0, 0, 1.0])
    blended = blend(model, exclude, partners, 0.3)
    assert blended[0] <= -1e9
    assert blended[1:] == pytest.approx(np.log([0.7 * 0.5, 0.7 * 0.25, 0.7 * 0.25 + 0.3]), abs=1e-5)
    # weight 0, or no partner: the model's order (renormalised over the allowed items)
    assert blend(model, exclude, np.zeros(4), 0.3)[1:] == pytest.approx(np.log([0.5, 0.25, 0.25]), abs=1e-5)
    assert blend(model, exclude, partners, 0.0)[1:] == pytest.approx(np.log([0.5, 0.25, 0.25]), abs=1e-5)


def test_the_partner_distribution_averages_each_cart_items_normalised_row() -> None:
    table = partner_table(ORDERS, 5, COUNTS)
    mass = table.distribution([1, 4, 9], 5)  # 9 is beyond the table: no row, not counted
    # row 1: 2 -> 2/3, 3 -> 1/3; row 4: 3 -> 1; averaged over the two rows.
    assert mass == pytest.approx([0, 0, 1 / 3, (1 / 3 + 1) / 2, 0])


# --- the cart body ------------------------------------------------------------------------------------


def _cart_error(body: object) -> list[str]:
    with pytest.raises(InvalidRequest) as refused:
        parse_body(CartBody, json.dumps(body), RequestLimits())
    return [error["field"] for error in refused.value.errors]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"items": []}, "items"),
        ({"items": [f"i{n}" for n in range(51)]}, "items"),
        ({"items": ["a", "a"]}, "items"),
        ({"items": ["a b"]}, "items[0]"),
        ({"items": ["a"], "user_id": ""}, "user_id"),
        ({"items": ["a"], "cart": 1}, "cart"),
        ({}, "items"),
    ],
)
def test_a_bad_cart_body_names_its_field(body: object, field: str) -> None:
    assert _cart_error(body)[0] == field


@given(st.lists(st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True), min_size=1, max_size=50))
def test_any_list_of_ids_is_valid_exactly_when_distinct(items: list[str]) -> None:
    if len(set(items)) == len(items):
        assert parse_body(CartBody, json.dumps({"items": items}), RequestLimits()).items == tuple(items)
    else:
        assert _cart_error({"items": items}) == ["items"]


# --- the service --------------------------------------------------------------------------------------


class _Counts:
    def __init__(self, counts: dict[str, float]) -> None:
        self.counts = counts

    def read(self, buckets: Sequence[str]) -> dict[str, dict[str, float]]:
        key = bucket_key(ALL_CATEGORIES, NOW)
        return {key: self.counts} if key in buckets else {}


ITEMS = ["a", "b", "c", "d", "e"]  # indices 1..5


def _service(
    catalog: list[CatalogItem], trending: dict[str, float] | None = None
) -> tuple[TogetherService, NumpyModel, InMemoryStateRepository]:
    model = NumpyModel(ITEMS, history_slots=4)
    # a: b, c, d; b: a; e: nothing
    model.partner_table = partner_table([[1, 2], [1, 2], [1, 3], [1, 3], [1, 4]], 6, COUNTS)
    shop = InMemoryCatalog(catalog)
    states = InMemoryStateRepository()
    live = LiveTrending(_Counts(trending or {}), shop, TrendingWindow(24, 6.0), clock=lambda: NOW)
    service = TogetherService(states, StaticModelSource(model), shop, live, clock=lambda: NOW)
    return service, model, states


CATALOG = [
    CatalogItem(item_id="a", category="snacks", price=2.0, stock=5),
    CatalogItem(item_id="b", category="drinks", price=2.0, stock=0),  # out of stock
    CatalogItem(item_id="c", category="drinks", price=2.0, stock=3),
    CatalogItem(item_id="d", category="snacks", price=2.0, stock=3),
    CatalogItem(item_id="e", category="snacks", price=2.0, stock=3),
    CatalogItem(item_id="f", category="snacks", price=2.0, stock=3),  # not in the model yet
]


def test_bought_together_gives_the_partners_in_stock_best_first() -> None:
    service, _, _ = _service(CATALOG)
    picks = service.bought_together("a", RecommendOptions(k=10))
    assert (picks.source, [(r.item_id, r.score) for r in picks.items]) == ("model", [("c", 2.0), ("d", 1.0)])


def test_bought_together_applies_the_rules() -> None:
    service, _, _ = _service(CATALOG)
    only_snacks = RuleSet(filter='category == "snacks"')
    assert [
        r.item_id for r in service.bought_together("a", RecommendOptions(10, rules=only_snacks)).items
    ] == ["d"]
    assert [r.item_id for r in service.bought_together("a", RecommendOptions(1)).items] == ["c"]
    cart = RuleSet(exclude_items=("c",))
    assert [r.item_id for r in service.bought_together("a", RecommendOptions(10, rules=cart)).items] == ["d"]


def test_no_partner_left_falls_back_to_trending_in_the_items_category() -> None:
    # e has no row; f is not in the model at all; b's one partner (a) is its query... a is in stock.
    service, _, _ = _service(CATALOG, {"a": 5.0, "c": 9.0, "d": 2.0, "e": 7.0, "f": 1.0})
    for item in ("e", "f"):
        picks = service.bought_together(item, RecommendOptions(k=10))
        assert picks.source == "fallback"
        expected = [i for i in ("e", "a", "d", "f") if i != item]  # snacks only, c is a drink
        assert [r.item_id for r in picks.items] == expected


def test_an_unknown_item_is_a_missing_reference() -> None:
    service, _, _ = _service(CATALOG)
    with pytest.raises(MissingReference) as missing:
        service.bought_together("nope", RecommendOptions())
    assert missing.value.field == "item_id"
    with pytest.raises(MissingReference) as missing:
        service.cart(("a", "nope"), None, RecommendOptions())
    assert missing.value.field == "items[1]"


def test_the_cart_never_recommends_its_items_and_writes_nothing() -> None:
    service, model, states = _service(CATALOG)
    answer = service.cart(("a", "d"), "u1", RecommendOptions(k=10))
    returned = [r.item_id for r in answer.recommendations]
    assert returned and not {"a", "d", "b"} & set(returned)  # the cart, and b is out of stock
    assert states.writes == 0 and states.reads == 1
    # the cart is in the history the model saw, as add_to_cart (the fold serving uses)
    assert model.last_history is not None
    assert set(model.last_history[0][:2].tolist()) == {1, 4}


def test_the_cart_blend_moves_partners_up() -> None:
    service, _, _ = _service(CATALOG)
    service.blend_weight_new, service.blend_weight = 0.0, 0.9  # an anonymous cart takes the first
    alone = {r.item_id: r.score for r in service.cart(("a",), None, RecommendOptions(k=10)).recommendations}
    service.blend_weight_new, service.blend_weight = 0.9, 0.0
    blended = {r.item_id: r.score for r in service.cart(("a",), None, RecommendOptions(k=10)).recommendations}
    assert set(alone) == set(blended) == {"c", "d", "e"}
    # c and d are a's partners: with the blend both gain on e, which is not a partner
    assert blended["c"] - blended["e"] > alone["c"] - alone["e"]
    assert blended["d"] - blended["e"] > alone["d"] - alone["e"]


def test_prior_breaks_ties_by_popularity_and_fills_short_rows() -> None:
    # n(1)=3, n(2)=3, n(3)=4, n(4)=2, N = 12 slots; prior 1 adds n(j)/12 to every count.
    table = partner_table(ORDERS, 5, PartnerScoring(beta=0.0, shrink=0.0, min_support=1, prior=1.0, top_n=3))
    rows = _rows(table)
    # 3's partners 1 and 2 tie on c = 1 and on n: the index decides; 4 (c=2) first
    assert [p for p, _ in rows[3]] == [4, 1, 2]
    assert rows[3][0][1] == pytest.approx(2 + 2 / 12, abs=1e-4)
    # 4 was bought with 3 only: its row is filled with the most bought items (c = 0, score n/12)
    assert rows[4] == [(3, round(2 + 4 / 12, 4)), (1, 0.25), (2, 0.25)]
