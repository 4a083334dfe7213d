"""The two things nextpick does for a shop: take events (and answer with fresh picks), and answer
with picks for a user. Wires the ports together; knows nothing of AWS."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from nextpick.domain.events import AnyEvent, Recommendation, check_not_in_future
from nextpick.domain.explanations import explain_picks
from nextpick.domain.impressions import CONTROL_VARIANT, Impression, Surface, new_recommendation_id
from nextpick.domain.ports import CatalogSource, ModelSource, ModelStatus, RankingModel, StateRepository
from nextpick.domain.ranking import ColdStart, MaskCache, RecommendOptions, cold_start_top_k, top_k
from nextpick.domain.search import SearchIndexCache, resolve_searches
from nextpick.domain.shadow import ServedAnswer, ShadowScoring
from nextpick.domain.state import EventStatus, StateLimits, UserState, apply_events, vector_for
from nextpick.domain.trending import LiveTrending
from nextpick.domain.variants import Assignment, model_for
from nextpick.errors import ConcurrentUpdate, VersionConflict


@dataclass(frozen=True)
class EventResult:
    event_id: str
    user_id: str
    status: EventStatus


@dataclass(frozen=True)
class UserRecommendations:
    user_id: str
    model_version: str | None
    recommendations: list[Recommendation]
    # Whether the model is the live one, a fallback, or absent (docs/design.md, "Model faults").
    model_status: ModelStatus = ModelStatus.LIVE
    # Time spent building the mask, scoring the catalog and picking the top K (for metrics).
    rank_ms: float = 0.0
    # A shopper without events: which trending list answered (docs/trending.md); None: the model ranked.
    cold_start: ColdStart | None = None
    # What ties later clicks and purchases to this answer (docs/attribution.md), and the A/B variant
    # whose model produced it (CONTROL_VARIANT when no test is configured).
    recommendation_id: str = field(default_factory=new_recommendation_id)
    variant: str = CONTROL_VARIANT

    def as_json(self) -> dict[str, object]:
        return {
            "user_id": self.user_id,
            "recommendation_id": self.recommendation_id,
            "model_version": self.model_version,
            "variant": self.variant,
            "model_status": self.model_status.value,
            "cold_start": self.cold_start.value if self.cold_start is not None else None,
            "recommendations": [r.model_dump() for r in self.recommendations],
        }

    def impression(self, surface: Surface, served_at: datetime) -> Impression:
        """The answer as the impression log records it (an anonymous cart has no user)."""
        return Impression(
            recommendation_id=self.recommendation_id,
            surface=surface,
            user_id=self.user_id or None,
            model_version=self.model_version,
            variant=self.variant,
            items=[r.item_id for r in self.recommendations],
            served_at=served_at,
        )


@dataclass(frozen=True)
class TrackResult:
    results: list[EventResult]
    users: list[UserRecommendations]


@dataclass(frozen=True)
class ServiceConfig:
    limits: StateLimits = field(default_factory=StateLimits)
    max_write_attempts: int = 5
    # Under contention, another attempt starts only if at least this much of the invocation's time is
    # left: ranking and answering take a few ms, the reserve covers a slow write (timeouts are 5 s).
    retry_reserve_ms: int = 1000
    exclude_purchased_default: bool = True
    max_future_skew: timedelta = timedelta(minutes=5)


def jittered_backoff(attempt: int) -> None:
    """Full-jitter exponential backoff between optimistic-lock retries (2 ms doubling, capped at 50 ms),
    so writers contending for one user spread out instead of colliding again in lockstep."""
    time.sleep(random.uniform(0, min(0.05, 0.002 * 2**attempt)))


@dataclass
class Recommender:
    states: StateRepository
    models: ModelSource
    catalog: CatalogSource
    config: ServiceConfig = field(default_factory=ServiceConfig)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    backoff: Callable[[int], None] = jittered_backoff
    # Live trending (GET /trending's source): a new shopper's first list; None: the model's list only.
    trending: LiveTrending | None = None
    # Shared by every ranking service of a container (wiring.candidate_masks): one build per (model, snapshot).
    masks: MaskCache = field(default_factory=MaskCache)
    # A shadow model scored on a sample of the answers and logged, never served (docs/variants.md).
    shadow: ShadowScoring | None = None
    _search: SearchIndexCache = field(default_factory=SearchIndexCache)

    def track(
        self,
        events: list[AnyEvent],
        options: RecommendOptions,
        time_left_ms: Callable[[], int] | None = None,
    ) -> TrackResult:
        """Apply events (one read + one conditional write per user in the request) and answer with
        each user's fresh recommendations. Nothing is written if any event is invalid.

        `time_left_ms` (Lambda's `get_remaining_time_in_millis`) bounds the optimistic-lock retries:
        none starts with less than `retry_reserve_ms` left, so contention ends in a 409, not a timeout."""
        results, states, assignments = self._apply(events, time_left_ms)
        users = [self._answer(state, assignments[state.user_id], options, Surface.EVENTS) for state in states]
        return TrackResult(results=results, users=users)

    def ingest(
        self, events: list[AnyEvent], time_left_ms: Callable[[], int] | None = None
    ) -> list[EventResult]:
        """`track` for callers that need no answer (the bus): the same writes, no ranking."""
        return self._apply(events, time_left_ms)[0]

    def _apply(
        self,
        events: list[AnyEvent],
        time_left_ms: Callable[[], int] | None = None,
    ) -> tuple[list[EventResult], list[UserState], dict[str, Assignment]]:
        """Each user's events applied, each folded by the model of the user's variant (model_for);
        the results in request order, each user's new state and variant."""
        now = self.clock()
        check_not_in_future(events, now, self.config.max_future_skew)
        # Once per request, before any write: every attempt (and every later replay) folds the same
        # resolution, whatever the catalog does meanwhile.
        events = resolve_searches(events, lambda: self._search.get(self.catalog.snapshot()))
        by_user: dict[str, list[AnyEvent]] = {}
        for event in events:
            by_user.setdefault(event.user_id, []).append(event)
        status_of: dict[tuple[str, int], EventStatus] = {}
        states: list[UserState] = []
        assignments: dict[str, Assignment] = {}
        for user_id, user_events in by_user.items():
            assignment = assignments[user_id] = model_for(self.models, user_id)
            state, statuses = self._apply_with_retry(
                user_id, user_events, assignment.model, now, time_left_ms
            )
            for position, status in enumerate(statuses):
                status_of[(user_id, position)] = status
            states.append(state)
        positions: dict[str, int] = {}
        results = []
        for event in events:
            position = positions.get(event.user_id, 0)
            positions[event.user_id] = position + 1
            results.append(EventResult(event.event_id, event.user_id, status_of[(event.user_id, position)]))
        return results, states, assignments

    def recommendations(self, user_id: str, options: RecommendOptions) -> UserRecommendations:
        """Read-only: one strongly consistent read, no write (a stale state is rebuilt in memory)."""
        assignment = model_for(self.models, user_id)
        return self._answer(self.states.load(user_id), assignment, options, Surface.USER)

    def _answer(
        self, state: UserState, assignment: Assignment, options: RecommendOptions, surface: Surface
    ) -> UserRecommendations:
        """The served answer of the user's variant, then (sampled) the shadow's, which is only logged."""
        served = self._recommend(state, assignment.model, options, self.models.status, assignment.variant)
        if self.shadow is not None and assignment.model is not None:
            # The shadow's picks are logged, never shown: explaining them would only cost time
            # (about +17 ms per answer at 10k items, docs/explanations.md).
            shadow_options = replace(options, explain=False)
            self.shadow.score(
                ServedAnswer(served.recommendation_id, surface, state.user_id),
                lambda model: self._recommend(state, model, shadow_options).recommendations,
            )
        return served

    def _apply_with_retry(
        self,
        user_id: str,
        events: list[AnyEvent],
        model: RankingModel | None,
        now: datetime,
        time_left_ms: Callable[[], int] | None = None,
    ) -> tuple[UserState, list]:
        attempts = 0
        for attempt in range(self.config.max_write_attempts):
            if attempt:
                if time_left_ms is not None and time_left_ms() < self.config.retry_reserve_ms:
                    break
                self.backoff(attempt)
            attempts += 1
            state = self.states.load(user_id)
            # The log records' `received_at` is read after the state: a write that lands after an
            # erasure read the erasure's marker, so its events are stamped after `erased_at` and
            # survive the tombstone rule (domain/erasure.py), as a returning shopper's new life.
            received_at = max(now, self.clock())
            new_state, statuses = apply_events(state, events, model, self.config.limits, received_at)
            if new_state is state:  # every event was a duplicate: nothing to write
                return state, statuses
            try:
                return self.states.save(new_state), statuses
            except VersionConflict:
                continue  # someone else wrote this user first: re-read and fold again
        # No user id in the message: a raised error's message is logged and traced (the bus), and the
        # caller knows whose events it sent.
        raise ConcurrentUpdate(
            f"a shopper's state changed concurrently on every attempt ({attempts}); retry the call"
        )

    def _recommend(
        self,
        state: UserState,
        model: RankingModel | None,
        options: RecommendOptions,
        status: ModelStatus = ModelStatus.LIVE,
        variant: str = CONTROL_VARIANT,
    ) -> UserRecommendations:
        if model is None:
            return UserRecommendations(state.user_id, None, [], status, variant=variant)
        vector: np.ndarray = vector_for(state, model)
        masks = self.masks.get(model, self.catalog.snapshot())
        exclude_purchased = (
            self.config.exclude_purchased_default
            if options.exclude_purchased is None
            else options.exclude_purchased
        )
        started = time.perf_counter()
        if state.is_new:
            # A trending table that cannot be read costs the answer nothing but its live part.
            live = self.trending.scores_or_none() if self.trending is not None else {}
            cold = cold_start_top_k(model, masks, options.k, options.category, options.rules, live)
            if cold is not None:
                picks, source = cold
                rank_ms = (time.perf_counter() - started) * 1000
                return UserRecommendations(
                    state.user_id, model.version, picks, status, rank_ms, source, variant=variant
                )
        history = (
            state.history.model_input(model.item_index, self.clock().timestamp(), model.history_slots)
            if model.history_slots
            else None
        )
        picks = top_k(
            model,
            vector,
            masks,
            state.purchased,
            options.k,
            exclude_purchased,
            options.category,
            history,
            options.rules,
        )
        if options.explain and history is not None:
            picks = explain_picks(model, vector, history, state.recent, picks)
        rank_ms = (time.perf_counter() - started) * 1000
        return UserRecommendations(state.user_id, model.version, picks, status, rank_ms, variant=variant)
