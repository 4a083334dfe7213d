"""Search and review events (issue 12): their validation, a search's resolution against the catalog,
and their fold, which must equal the encoding docs/model-contract.md states ("Search and review events")."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextpick.adapters.memory import InMemoryCatalog, InMemoryStateRepository, StaticModelSource
from nextpick.domain.catalog import snapshot_of
from nextpick.domain.events import (
    CONTRACT_FIELD_NAMES,
    EventType,
    ReviewEvent,
    SearchEvent,
    Step,
    TrackedEvent,
    stored_event,
)
from nextpick.domain.privacy import PrivacyRequests
from nextpick.domain.ranking import RecommendOptions
from nextpick.domain.requests import RequestLimits, parse_events
from nextpick.domain.search import MAX_MATCHED_ITEMS, SearchIndex, resolve_searches, words
from nextpick.domain.service import Recommender
from nextpick.domain.state import StateLimits, UserState, apply_events, fold
from nextpick.domain.trending import aggregate
from nextpick.errors import InvalidRequest
from tests.unit.numpy_model import NumpyModel

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
BASE = {"event_id": "e1", "user_id": "u1", "timestamp": "2026-11-28T12:00:00Z"}


def fields_of(body: dict[str, Any]) -> list[str]:
    with pytest.raises(InvalidRequest) as refused:
        parse_events(json.dumps(body), RequestLimits())
    return [error["field"] for error in refused.value.errors]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({**BASE, "event_type": "search"}, ["query"]),
        ({**BASE, "event_type": "search", "query": ""}, ["query"]),
        ({**BASE, "event_type": "search", "query": "x" * 201}, ["query"]),
        ({**BASE, "event_type": "search", "query": "shoes\x00"}, ["query"]),
        ({**BASE, "event_type": "search", "query": "shoes", "item_id": "i1"}, ["item_id"]),
        ({**BASE, "event_type": "search", "query": "shoes", "clicked_items": ["a"] * 2}, ["clicked_items"]),
        (
            {**BASE, "event_type": "search", "query": "q", "clicked_items": [f"i{n}" for n in range(21)]},
            ["clicked_items"],
        ),
        ({**BASE, "event_type": "search", "query": "q", "clicked_items": ["a/b"]}, ["clicked_items[0]"]),
        ({**BASE, "event_type": "search", "query": "q", "matched_items": ["a"]}, ["matched_items"]),
        ({**BASE, "event_type": "review", "item_id": "i1"}, ["rating"]),
        ({**BASE, "event_type": "review", "item_id": "i1", "rating": 6}, ["rating"]),
        ({**BASE, "event_type": "review", "rating": 4}, ["item_id"]),
        ({**BASE, "event_type": "review", "item_id": "i1", "rating": 4, "text": "x" * 2001}, ["text"]),
        ({**BASE, "event_type": "review", "item_id": "i1", "rating": 4, "text": "bad\x1b[31m"}, ["text"]),
        ({**BASE, "event_type": "review", "item_id": "i1", "rating": 4, "text": "a\r\nb"}, ["text"]),
        ({**BASE, "event_type": "view"}, ["item_id"]),
        ({**BASE, "event_type": "teleport", "item_id": "i1"}, ["event_type"]),
        ({"events": [{**BASE, "event_type": "search"}]}, ["events[0].query"]),
        ({"events": [{**BASE, "event_type": "review", "item_id": "i", "rating": 0}]}, ["events[0].rating"]),
    ],
)
def test_errors_name_the_field_of_the_shape_sent(body: dict[str, Any], fields: list[str]) -> None:
    assert fields_of(body) == fields


def test_unknown_event_types_are_told_every_type_there_is() -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_events(json.dumps({**BASE, "event_type": "teleport", "item_id": "i1"}), RequestLimits())
    assert "'search'" in refused.value.errors[0]["message"]
    assert "'review'" in refused.value.errors[0]["message"]


def test_valid_search_and_review_parse_with_unicode_and_newlines() -> None:
    search = {**BASE, "event_type": "search", "query": "Schuhe für Läufer 跑鞋", "clicked_items": ["i1"]}
    review = {**BASE, "event_id": "e2", "event_type": "review", "item_id": "i1", "rating": 4}
    (parsed,) = parse_events(json.dumps(search), RequestLimits()).events
    assert isinstance(parsed, SearchEvent) and parsed.matched_items is None
    text = "Great.\nWould buy again — ★★★★"
    batch = parse_events(json.dumps({"events": [search, {**review, "text": text}]}), RequestLimits())
    assert isinstance(batch.events[1], ReviewEvent) and batch.events[1].text == text


def test_the_logged_field_allow_list_knows_the_new_fields() -> None:
    assert {"query", "clicked_items", "text", "matched_items", "rating"} <= CONTRACT_FIELD_NAMES


CATALOG: list[tuple[str, str, str, dict[str, str | int | float | bool]]] = [
    # item, category, title, attributes
    ("s1", "shoes", "Trail running shoe", {"brand": "acme"}),
    ("s2", "shoes", "Road running shoe", {"brand": "zoom"}),
    ("s3", "shoes", "Leather boot", {"brand": "acme"}),
    ("b1", "books", "Running for beginners", {"format": "paperback"}),
    ("b2", "books", "The garden book", {}),
    ("g1", "garden", "Hose", {"brand": "acme", "weight": 3.5}),
]


def catalog_items() -> list[Any]:
    from nextpick.domain.events import CatalogItem

    return [
        CatalogItem(item_id=i, category=c, title=t, price=10.0, stock=0 if i == "s2" else 5, attributes=a)
        for i, c, t, a in CATALOG
    ]


def index() -> SearchIndex:
    return SearchIndex.build(snapshot_of(1, catalog_items()))


def test_words_casefold_and_drop_stop_words_and_single_characters() -> None:
    assert words("Running SHOES for a 5k") == {"running", "shoes", "5k"}


def test_resolution_is_by_matched_words_then_item_id_hand_checked() -> None:
    searchable = index()
    # "running": s1, s2 (title), b1 (title); "shoes": s1, s2, s3 (category); "acme": s1, s3, g1 (brand).
    assert searchable.resolve("running shoes") == ("s1", "s2", "b1", "s3")
    assert searchable.resolve("acme running shoes") == ("s1", "s2", "s3", "b1", "g1")
    assert searchable.resolve("acme running shoes", limit=2) == ("s1", "s2")
    assert searchable.resolve("garden") == ("b2", "g1")  # a title word and a category
    assert searchable.resolve("paperback") == ("b1",)  # an attribute value
    assert searchable.resolve("3") == ()  # numbers are banded: a digit never matches a weight
    assert searchable.resolve("the for and") == ()
    assert searchable.resolve("submarine") == ()
    assert MAX_MATCHED_ITEMS == 5


def test_resolution_is_deterministic_whatever_the_catalog_order() -> None:
    forward = SearchIndex.build(snapshot_of(1, catalog_items()))
    backward = SearchIndex.build(snapshot_of(1, list(reversed(catalog_items()))))
    assert forward == backward
    assert forward.resolve("acme shoes") == backward.resolve("acme shoes") == ("s1", "s3", "g1", "s2")


def search(event_id: str = "e1", query: str = "running shoes", clicks: tuple[str, ...] = ()) -> SearchEvent:
    return SearchEvent.model_validate(
        {**BASE, "event_id": event_id, "event_type": "search", "query": query, "clicked_items": list(clicks)}
    )


def test_a_search_folds_as_its_documented_views_and_clicks() -> None:
    resolved = search(clicks=("s2",)).resolved(("s1", "s2", "b1", "s3"))
    assert resolved.steps() == (
        Step("s1", EventType.VIEW, 0.25, observed=False),
        Step("s2", EventType.VIEW, 0.25, observed=False),
        Step("b1", EventType.VIEW, 0.25, observed=False),
        Step("s3", EventType.VIEW, 0.25, observed=False),
        Step("s2", EventType.CLICK, 1.0),
    )
    assert search().resolved(()).steps() == ()
    with pytest.raises(ValueError, match="resolved"):
        search().steps()


def test_a_review_folds_as_a_rate_of_rating_over_five() -> None:
    review = ReviewEvent.model_validate(
        {**BASE, "event_type": "review", "item_id": "s1", "rating": 3, "text": "ok"}
    )
    assert review.steps() == (Step("s1", EventType.RATE, 0.6),)
    rate = TrackedEvent.model_validate({**BASE, "event_type": "rate", "item_id": "s1", "rating": 3})
    assert review.steps() == rate.steps()


def test_the_stored_resolution_round_trips_through_the_log_record() -> None:
    resolved = search(clicks=("s3",)).resolved(("s1", "b1"))
    record = json.loads(json.dumps(resolved.log_record(NOW)))
    assert record["matched_items"] == ["s1", "b1"] and record["query"] == "running shoes"
    record.pop("received_at")
    back = stored_event(record)
    assert isinstance(back, SearchEvent) and back.steps() == resolved.steps()
    with pytest.raises(ValueError, match="matched_items"):
        stored_event({k: v for k, v in record.items() if k != "matched_items"})


@pytest.fixture
def shop_model() -> NumpyModel:
    return NumpyModel([i for i, *_ in CATALOG])


def test_service_resolves_once_and_stores_the_resolution_in_recent_and_the_log(
    shop_model: NumpyModel,
) -> None:
    catalog = InMemoryCatalog(catalog_items())
    states = InMemoryStateRepository()
    service = Recommender(states, StaticModelSource(shop_model), catalog, clock=lambda: NOW)
    service.track([search(clicks=("b2",))], RecommendOptions(k=3))
    # The catalog changes afterwards: nothing already folded moves.
    catalog.put_items([c.model_copy(update={"title": "Submarine"}) for c in catalog_items()])
    state = service.states.load("u1")
    assert [(e.item_id, e.event_type.value, e.strength) for e in state.recent] == [
        ("s1", "view", 0.25),
        ("s2", "view", 0.25),
        ("b1", "view", 0.25),
        ("s3", "view", 0.25),
        ("b2", "click", 1.0),
    ]
    stored = states.read_stored("u1")
    assert stored is not None
    (line,) = stored.last_write_records
    assert json.loads(line)["matched_items"] == ["s1", "s2", "b1", "s3"]
    expected = fold(shop_model, None, state.recent)
    assert state.vector is not None and np.allclose(state.vector, expected)
    # The export carries the query (personal data held on the item) for the shopper to see.
    exported = PrivacyRequests(states).export("u1")
    assert exported["state"]["last_write_events"][0]["query"] == "running shoes"


def test_a_search_matching_nothing_is_accepted_logged_and_moves_nothing(shop_model: NumpyModel) -> None:
    state, statuses = apply_events(
        UserState.new("u1"), [search(query="submarine").resolved(())], shop_model, StateLimits(), NOW
    )
    assert [s.value for s in statuses] == ["accepted"]
    assert state.recent == () and state.is_new and len(state.processed_keys) == 1
    assert state.vector is not None and not state.vector.any()
    assert json.loads(state.outbox[0])["matched_items"] == []
    again, statuses = apply_events(
        state, [search(query="submarine").resolved(())], shop_model, StateLimits(), NOW
    )
    assert [s.value for s in statuses] == ["duplicate"] and again is state


def test_resolve_searches_reads_the_index_only_for_a_search() -> None:
    calls: list[int] = []

    def lazy() -> SearchIndex:
        calls.append(1)
        return index()

    view = TrackedEvent.model_validate({**BASE, "event_type": "view", "item_id": "s1"})
    assert resolve_searches([view], lazy) == [view] and calls == []
    (resolved,) = resolve_searches([search(query="paperback")], lazy)
    assert isinstance(resolved, SearchEvent) and resolved.matched_items == ("b1",) and calls == [1]


def test_trending_counts_a_searchs_clicks_and_a_reviews_rating_not_its_matches() -> None:
    lines = [
        json.dumps(search(clicks=("b2",)).resolved(("s1", "s2")).log_record(NOW)),
        json.dumps(
            ReviewEvent.model_validate(
                {**BASE, "event_id": "e2", "event_type": "review", "item_id": "g1", "rating": 2}
            ).log_record(NOW)
        ),
    ]
    (counts,) = aggregate(lines).values()
    assert counts == {"b2": 0.75, "g1": 1.0}


ITEM_IDS = [i for i, *_ in CATALOG]


@settings(max_examples=60, deadline=None)
@given(
    matched=st.lists(st.sampled_from(ITEM_IDS), unique=True, max_size=MAX_MATCHED_ITEMS),
    clicks=st.lists(st.sampled_from(ITEM_IDS), unique=True, max_size=4),
    before=st.lists(
        st.tuples(st.sampled_from(ITEM_IDS), st.sampled_from(["view", "click", "purchase"])), max_size=3
    ),
)
def test_a_searchs_fold_equals_folding_its_documented_views_and_clicks(
    matched: list[str], clicks: list[str], before: list[tuple[str, str]]
) -> None:
    model = NumpyModel(ITEM_IDS)
    prior = [
        TrackedEvent.model_validate({**BASE, "event_id": f"p{n}", "event_type": kind, "item_id": item})
        for n, (item, kind) in enumerate(before)
    ]
    start, _ = apply_events(UserState.new("u1"), prior, model, StateLimits(), NOW)
    with_search, _ = apply_events(
        start, [search(clicks=tuple(clicks)).resolved(matched)], model, StateLimits(), NOW
    )
    documented = [
        *(
            TrackedEvent.model_validate({**BASE, "event_id": f"v{n}", "event_type": "view", "item_id": item})
            for n, item in enumerate(matched)
        ),
        *(
            TrackedEvent.model_validate({**BASE, "event_id": f"c{n}", "event_type": "click", "item_id": item})
            for n, item in enumerate(clicks)
        ),
    ]
    by_hand = start.vector if start.vector is not None else np.zeros(model.state_dim, np.float32)
    for item in matched:
        by_hand = model.update(by_hand, model.item_index(item), EventType.VIEW.code, 1.0 / len(matched))
    for item in clicks:
        by_hand = model.update(by_hand, model.item_index(item), EventType.CLICK.code, 1.0)
    assert with_search.vector is not None
    assert np.allclose(with_search.vector, by_hand)
    # Clicks alone are exactly the click events they stand for.
    if not matched and clicks:
        as_clicks, _ = apply_events(start, documented, model, StateLimits(), NOW)
        assert as_clicks.vector is not None and np.allclose(with_search.vector, as_clicks.vector)
        assert with_search.history.entries.keys() == as_clicks.history.entries.keys()


def test_erasure_and_the_log_export_cover_a_query_and_a_review_text() -> None:
    from datetime import timedelta

    from nextpick.domain.erasure import Erasure, Tombstones, erase_lines, user_lines

    query_line = json.dumps(search(query="private query").resolved(("s1",)).log_record(NOW))
    review = ReviewEvent.model_validate(
        {
            **BASE,
            "event_id": "e2",
            "event_type": "review",
            "item_id": "s1",
            "rating": 1,
            "text": "private text",
        }
    )
    other = ReviewEvent.model_validate(
        {**BASE, "event_id": "e3", "user_id": "u2", "event_type": "review", "item_id": "s1", "rating": 5}
    )
    body = "\n".join(
        [query_line, json.dumps(review.log_record(NOW)), json.dumps(other.log_record(NOW))]
    ).encode()
    exported = b"\n".join(user_lines(body, "u1"))
    assert b"private query" in exported and b"private text" in exported and b"u2" not in exported
    tombstones = Tombstones()
    tombstones.add(Erasure("u1", NOW + timedelta(minutes=1)))
    result = erase_lines(body, tombstones)
    assert result.erased == 2 and result.body is not None
    assert b"private" not in result.body and b'"u2"' in result.body
