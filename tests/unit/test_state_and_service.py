from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from nextpick.adapters.memory import InMemoryCatalog, InMemoryStateRepository, StaticModelSource
from nextpick.domain.events import CatalogItem, TrackedEvent
from nextpick.domain.ranking import RecommendOptions
from nextpick.domain.service import Recommender, ServiceConfig
from nextpick.domain.state import EventStatus, StateLimits, UserState, apply_events, event_key, vector_for
from nextpick.errors import ConcurrentUpdate, InvalidInput, VersionConflict
from tests.unit.numpy_model import NumpyModel

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def event(
    n: int, item: str = "item-1", kind: str = "view", user: str = "u1", **extra: object
) -> TrackedEvent:
    return TrackedEvent.model_validate(
        {"event_id": f"e{n}", "user_id": user, "item_id": item, "event_type": kind, "timestamp": NOW, **extra}
    )


def service(
    model: NumpyModel | None, catalog: InMemoryCatalog | None = None, **config: object
) -> Recommender:
    return Recommender(
        states=InMemoryStateRepository(),
        models=StaticModelSource(model),
        catalog=catalog or InMemoryCatalog(),
        config=ServiceConfig(**config),  # type: ignore[arg-type]
        clock=lambda: NOW,
    )


def test_fold_matches_the_hand_computed_state(model: NumpyModel) -> None:
    state, statuses = apply_events(
        UserState.new("u1"), [event(1, "item-2"), event(2, "item-3", "purchase")], model, StateLimits(), NOW
    )
    e = model.embeddings
    expected = 0.5 * (1.0 * e[2]) + 3.0 * e[3]
    assert statuses == [EventStatus.ACCEPTED, EventStatus.ACCEPTED]
    assert state.vector is not None
    assert np.allclose(state.vector, expected)
    assert state.model_version == "v1"
    assert state.purchased == ("item-3",)
    assert [json.loads(r)["event_id"] for r in state.outbox] == ["e1", "e2"]


def test_duplicates_change_nothing(model: NumpyModel) -> None:
    first, _ = apply_events(UserState.new("u1"), [event(1)], model, StateLimits(), NOW)
    again, statuses = apply_events(first, [event(1)], model, StateLimits(), NOW)
    assert statuses == [EventStatus.DUPLICATE]
    assert again is first
    within, statuses = apply_events(UserState.new("u1"), [event(1), event(1)], model, StateLimits(), NOW)
    assert statuses == [EventStatus.ACCEPTED, EventStatus.DUPLICATE]
    assert len(within.recent) == 1


def test_lists_are_bounded_most_recent_kept(model: NumpyModel) -> None:
    limits = StateLimits(recent_events=3, processed_ids=4, purchased_items=2)
    events = [event(n, f"item-{n}", "purchase") for n in range(1, 7)]
    state, _ = apply_events(UserState.new("u1"), events, model, limits, NOW)
    assert [r.item_id for r in state.recent] == ["item-4", "item-5", "item-6"]
    assert state.processed_keys == tuple(event_key(f"e{n}") for n in range(3, 7))
    assert state.purchased == ("item-5", "item-6")


def test_state_from_another_model_version_is_rebuilt_from_recent_events(items: list[str]) -> None:
    old, new = NumpyModel(items, version="v1", seed=1), NumpyModel(items, version="v2", seed=2)
    state, _ = apply_events(
        UserState.new("u1"), [event(1, "item-4"), event(2, "item-5")], old, StateLimits(), NOW
    )
    rebuilt = vector_for(state, new)
    direct, _ = apply_events(
        UserState.new("u1"), [event(1, "item-4"), event(2, "item-5")], new, StateLimits(), NOW
    )
    assert direct.vector is not None and state.vector is not None
    assert np.allclose(rebuilt, direct.vector)
    assert not np.allclose(rebuilt, state.vector)


def test_events_before_the_first_model_are_kept_and_folded_later(model: NumpyModel) -> None:
    state, _ = apply_events(UserState.new("u1"), [event(1, "item-2")], None, StateLimits(), NOW)
    assert state.vector is None and state.model_version is None and len(state.recent) == 1
    assert np.allclose(vector_for(state, model), model.embeddings[2])


def test_track_answers_with_fresh_recommendations_excluding_purchases(model: NumpyModel) -> None:
    svc = service(model)
    result = svc.track([event(1, "item-3", "purchase")], RecommendOptions(k=5))
    (user,) = result.users
    assert result.results[0].status is EventStatus.ACCEPTED
    assert user.model_version == "v1" and len(user.recommendations) == 5
    assert "item-3" not in [r.item_id for r in user.recommendations]
    scores = model.embeddings @ (3.0 * model.embeddings[3])
    scores[[0, 3]] = -np.inf
    assert [r.item_id for r in user.recommendations] == [f"item-{i}" for i in np.argsort(-scores)[:5]]
    repurchase = svc.recommendations("u1", RecommendOptions(k=1, exclude_purchased=False))
    assert repurchase.recommendations[0].item_id == "item-3"  # its own embedding scores highest


def test_out_of_stock_and_category_filters(model: NumpyModel, items: list[str]) -> None:
    catalog = InMemoryCatalog(
        [
            CatalogItem(item_id=i, category="a" if n % 2 else "b", price=1, stock=0 if n < 5 else 3)
            for n, i in enumerate(items)
        ]
    )
    svc = service(model, catalog)
    picks = svc.recommendations("u1", RecommendOptions(k=100)).recommendations
    assert {r.item_id for r in picks} == set(items[5:])
    picks = svc.recommendations("u1", RecommendOptions(k=100, category="a")).recommendations
    assert {r.item_id for r in picks} == {i for n, i in enumerate(items) if n >= 5 and n % 2}
    catalog.put_items([CatalogItem(item_id=items[7], category="b", price=1, stock=0)])
    assert items[7] not in {
        r.item_id for r in svc.recommendations("u1", RecommendOptions(k=100)).recommendations
    }


def test_no_model_yet_answers_an_empty_list() -> None:
    result = service(None).track([event(1)], RecommendOptions())
    assert result.users[0].model_version is None and result.users[0].recommendations == []


def test_one_read_and_one_write_per_user_per_request(model: NumpyModel) -> None:
    svc = service(model)
    repo = svc.states
    assert isinstance(repo, InMemoryStateRepository)
    svc.track([event(1), event(2, user="u2"), event(3), event(1)], RecommendOptions())
    assert (repo.reads, repo.writes) == (2, 2)
    svc.track([event(1)], RecommendOptions())  # a pure duplicate writes nothing
    assert (repo.reads, repo.writes) == (3, 2)


def test_future_event_rejects_the_request_and_writes_nothing(model: NumpyModel) -> None:
    svc = service(model)
    late = event(2, timestamp=NOW + timedelta(hours=1))
    with pytest.raises(InvalidInput):
        svc.track([event(1), late], RecommendOptions())
    assert svc.states.load("u1").version == 0


def test_lost_optimistic_lock_is_retried_then_given_up(model: NumpyModel) -> None:
    class AlwaysConflicts(InMemoryStateRepository):
        def save(self, state: UserState) -> UserState:
            raise VersionConflict(state.user_id)

    svc = service(model, max_write_attempts=3)
    svc.states = AlwaysConflicts()
    with pytest.raises(ConcurrentUpdate):
        svc.track([event(1)], RecommendOptions())
    assert svc.states.reads == 3


def test_concurrent_events_for_one_user_lose_nothing(model: NumpyModel) -> None:
    svc = service(model, max_write_attempts=1000, limits=StateLimits(recent_events=500, processed_ids=500))
    threads = [
        threading.Thread(
            target=lambda t=t: [svc.track([event(t * 100 + n)], RecommendOptions()) for n in range(20)]
        )
        for t in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = svc.states.load("u1")
    assert len(state.processed_keys) == len(set(state.processed_keys)) == 160
    assert state.version == 160


def test_a_shopper_without_events_sees_trending_then_personal_picks(items: list[str]) -> None:
    """Before the first event: the model's trending list (in stock, in the category). From the first
    event on: the personal ranking."""
    trending = [(7, 9.0), (3, 8.0), (12, 7.0), (1, 6.0), (5, 5.0)]
    model = NumpyModel(items, trending=trending)
    catalog = InMemoryCatalog(
        [
            CatalogItem(item_id=i, category="odd" if n % 2 else "even", price=1, stock=3)
            for n, i in enumerate(items, 1)
        ]
    )
    catalog.put_items([CatalogItem(item_id="item-3", category="odd", price=1, stock=0)])  # sold out
    svc = service(model, catalog)
    new = svc.recommendations("stranger", RecommendOptions(k=3)).recommendations
    assert [(r.item_id, r.score) for r in new] == [("item-7", 9.0), ("item-12", 7.0), ("item-1", 6.0)]
    odd = svc.recommendations("stranger", RecommendOptions(k=3, category="odd")).recommendations
    assert [r.item_id for r in odd] == ["item-7", "item-1", "item-5"]
    (user,) = svc.track([event(1, "item-9", user="stranger")], RecommendOptions(k=3)).users
    scores = model.embeddings @ model.embeddings[9]
    scores[[0, 3]] = -np.inf
    assert [r.item_id for r in user.recommendations] == [f"item-{i}" for i in np.argsort(-scores)[:3]]
