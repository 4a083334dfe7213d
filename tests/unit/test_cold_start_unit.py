"""A shopper with no events (docs/trending.md, "A new shopper's answer"): live trending first, the model's
trending list for the places left and whenever the live list has nothing or cannot be read, stock,
category and rules applied; promoted picks name their promotion (docs/rules.md)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from nextpick.adapters.memory import InMemoryCatalog, InMemoryStateRepository, StaticModelSource
from nextpick.domain.events import CatalogItem
from nextpick.domain.ranking import ColdStart, RecommendOptions
from nextpick.domain.rules import Promotion, RuleSet
from nextpick.domain.service import Recommender
from nextpick.domain.trending import LiveTrending, TrendingWindow
from nextpick.errors import StorageUnavailable
from tests.unit.numpy_model import NumpyModel
from tests.unit.test_state_and_service import NOW, event

HOUR = "_all#2026-11-28T12"
# The model's list (vocabulary index, score): item-7, item-3, item-12, item-1, item-5.
MODEL_TRENDING = [(7, 90.0), (3, 80.0), (12, 70.0), (1, 60.0), (5, 50.0)]


class Buckets:
    """The trending table: the stored buckets, every read asked, and a fault to raise on demand."""

    def __init__(self, stored: dict[str, dict[str, float]]) -> None:
        self.stored = stored
        self.reads = 0
        self.fault: Exception | None = None

    def read(self, buckets: Sequence[str]) -> dict[str, dict[str, float]]:
        self.reads += 1
        if self.fault is not None:
            raise self.fault
        return {key: self.stored[key] for key in buckets if key in self.stored}


@pytest.fixture
def catalog(items: list[str]) -> InMemoryCatalog:
    """item-n: category "odd" or "even" by n, 3 in stock; item-4 sold out."""
    catalog = InMemoryCatalog(
        [
            CatalogItem(item_id=i, category="odd" if n % 2 else "even", price=1, stock=3)
            for n, i in enumerate(items, 1)
        ]
    )
    catalog.put_items([CatalogItem(item_id="item-4", category="even", price=1, stock=0)])
    return catalog


def shop(
    items: list[str], catalog: InMemoryCatalog, stored: dict[str, dict[str, float]]
) -> tuple[Recommender, Buckets, list[float]]:
    counts = Buckets(stored)
    elapsed = [0.0]
    live = LiveTrending(
        counts, catalog, TrendingWindow(2, 6.0), clock=lambda: NOW, monotonic=lambda: elapsed[0]
    )
    recommender = Recommender(
        states=InMemoryStateRepository(),
        models=StaticModelSource(NumpyModel(items, trending=MODEL_TRENDING)),
        catalog=catalog,
        clock=lambda: NOW,
        trending=live,
    )
    return recommender, counts, elapsed


def listed(recommender: Recommender, **options: object) -> tuple[list[tuple[str, float]], ColdStart | None]:
    answer = recommender.recommendations("stranger", RecommendOptions(**options))  # type: ignore[arg-type]
    return [(r.item_id, r.score) for r in answer.recommendations], answer.cold_start


def test_live_trending_comes_first_and_the_models_list_fills_the_rest(
    items: list[str], catalog: InMemoryCatalog
) -> None:
    # item-9 the best live item; item-4 sold out; "brand-new" unknown to the model (no vocabulary index).
    live = {"item-2": 3.0, "item-9": 5.0, "item-4": 50.0, "brand-new": 40.0}
    recommender, _, _ = shop(items, catalog, {HOUR: live})
    picks, source = listed(recommender, k=4)
    # Live first by live score, then the model's list (item-7, item-3, ...) by its own score.
    assert picks == [("item-9", 5.0), ("item-2", 3.0), ("item-7", 90.0), ("item-3", 80.0)]
    assert source is ColdStart.LIVE_TRENDING
    picks, source = listed(recommender, k=3, category="odd")
    assert picks == [("item-9", 5.0), ("item-7", 90.0), ("item-3", 80.0)]
    assert source is ColdStart.LIVE_TRENDING


def test_an_empty_or_ineligible_live_list_answers_with_the_models_list(
    items: list[str], catalog: InMemoryCatalog
) -> None:
    recommender, _, _ = shop(items, catalog, {})
    assert listed(recommender, k=2) == ([("item-7", 90.0), ("item-3", 80.0)], ColdStart.MODEL_TRENDING)
    # Only even items trend live: a page of odd items gets the model's list, and says so.
    recommender, _, _ = shop(items, catalog, {HOUR: {"item-2": 3.0, "item-4": 9.0}})
    assert listed(recommender, k=2, category="odd") == (
        [("item-7", 90.0), ("item-3", 80.0)],
        ColdStart.MODEL_TRENDING,
    )


def test_a_trending_table_fault_answers_with_the_models_list_and_is_not_retried_at_once(
    items: list[str], catalog: InMemoryCatalog
) -> None:
    recommender, counts, elapsed = shop(items, catalog, {HOUR: {"item-9": 5.0}})
    counts.fault = StorageUnavailable("nextpick-trending: ThrottlingException")
    assert listed(recommender, k=2) == ([("item-7", 90.0), ("item-3", 80.0)], ColdStart.LIVE_UNAVAILABLE)
    elapsed[0] = 29.0
    assert listed(recommender, k=2)[1] is ColdStart.LIVE_UNAVAILABLE
    assert counts.reads == 1  # within 30 s of the failure: not asked again
    counts.fault = None
    elapsed[0] = 30.0
    assert listed(recommender, k=2) == ([("item-9", 5.0), ("item-7", 90.0)], ColdStart.LIVE_TRENDING)
    assert counts.reads == 2


def test_live_reads_are_reused_and_a_shopper_with_events_reads_none(
    items: list[str], catalog: InMemoryCatalog
) -> None:
    recommender, counts, elapsed = shop(items, catalog, {HOUR: {"item-9": 5.0}})
    listed(recommender, k=2)
    elapsed[0] = 59.0
    listed(recommender, k=3)
    assert counts.reads == 1  # LiveTrending's per-container read, reused for 60 s
    (user,) = recommender.track([event(1, "item-9", user="regular")], RecommendOptions(k=3)).users
    assert user.cold_start is None and counts.reads == 1


def test_rules_apply_to_the_live_list_and_promoted_picks_name_their_promotion(
    items: list[str], catalog: InMemoryCatalog
) -> None:
    recommender, _, _ = shop(items, catalog, {HOUR: {"item-9": 5.0, "item-2": 3.0, "item-11": 2.0}})
    rules = RuleSet(
        promotions=(Promotion(name="storefront", slots=1, items=("item-15", "item-16")),),
        exclude_items=("item-2",),
    )
    answer = recommender.recommendations("stranger", RecommendOptions(k=3, rules=rules))
    # One place for the promotion (neither trends: ties by vocabulary index, item-15 first), scored 0;
    # item-2 excluded; the live item-9 and item-11 fill the rest.
    assert [(r.item_id, r.score, r.promotion) for r in answer.recommendations] == [
        ("item-9", 5.0, None),
        ("item-11", 2.0, None),
        ("item-15", 0.0, "storefront"),
    ]
    assert answer.as_json()["recommendations"] == [
        {"item_id": "item-9", "score": 5.0},
        {"item_id": "item-11", "score": 2.0},
        {"item_id": "item-15", "score": 0.0, "promotion": "storefront"},
    ]
    assert answer.as_json()["cold_start"] == "live_trending"


def test_without_live_trending_the_models_list_answers_as_before(items: list[str]) -> None:
    recommender = Recommender(
        states=InMemoryStateRepository(),
        models=StaticModelSource(NumpyModel(items, trending=MODEL_TRENDING)),
        catalog=InMemoryCatalog(),
        clock=lambda: NOW,
    )
    assert listed(recommender, k=2) == ([("item-7", 90.0), ("item-3", 80.0)], ColdStart.MODEL_TRENDING)
