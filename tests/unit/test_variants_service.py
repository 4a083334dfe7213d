"""Serving with variants and a shadow (issue 13, docs/variants.md), on real LiteRT models (the tiny
models of tests/conftest.py) and the in-memory adapters:

* shadow scoring never changes an answer or a stored state, and a failing shadow never fails a request;
* a shopper's state is always folded by the model of the variant that served them, however often the
  variant alternates."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pytest

from nextpick.adapters.litert_model import LiteRTModel
from nextpick.adapters.memory import (
    InMemoryCatalog,
    InMemoryImpressionLog,
    InMemoryStateRepository,
    StaticModelSource,
)
from nextpick.adapters.model_registry import MANIFEST_FORMAT
from nextpick.domain.events import CatalogItem, TrackedEvent
from nextpick.domain.impressions import CONTROL_VARIANT, Surface
from nextpick.domain.ports import ModelStatus, RankingModel
from nextpick.domain.ranking import RecommendOptions
from nextpick.domain.service import Recommender, UserRecommendations
from nextpick.domain.shadow import ShadowScoring
from nextpick.domain.state import fold
from nextpick.domain.variants import Assignment, Shadow, ShadowModel
from tests.conftest import TinyModel

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
OPTIONS = RecommendOptions(k=5)


def litert(tiny: TinyModel, version: str) -> LiteRTModel:
    return LiteRTModel(tiny.tflite, {"format": MANIFEST_FORMAT, "version": version, **tiny.manifest_fields()})


@pytest.fixture(scope="module")
def control(tiny_model: TinyModel) -> LiteRTModel:
    return litert(tiny_model, "v1")


@pytest.fixture(scope="module")
def challenger(tiny_model_v2: TinyModel) -> LiteRTModel:
    return litert(tiny_model_v2, "v2")


@pytest.fixture(scope="module")
def catalog_items(tiny_model: TinyModel) -> list[CatalogItem]:
    return [
        CatalogItem(item_id=item, category=category, stock=1, price=10)
        for item, category in tiny_model.category_of.items()
    ]


@dataclass
class ScriptedVariants:
    """A model source with an experiment: each user's variant is whatever `variant_of` says now."""

    models: dict[str, RankingModel]
    variant_of: dict[str, str] = field(default_factory=dict)
    shadow_model: ShadowModel | None = None

    def current(self) -> RankingModel | None:
        return self.models[CONTROL_VARIANT]

    @property
    def status(self) -> ModelStatus:
        return ModelStatus.LIVE

    def assign(self, user_id: str) -> Assignment:
        name = self.variant_of.get(user_id, CONTROL_VARIANT)
        return Assignment(name, self.models[name])

    def shadow(self) -> ShadowModel | None:
        return self.shadow_model


class Report:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures: list[str] = []

    def scored(self, variant: str, milliseconds: float) -> None:
        self.latencies.append(milliseconds)

    def failed(self, variant: str, error: Exception) -> None:
        self.failures.append(type(error).__name__)


class Exploding:
    """A shadow model that loads but fails when it ranks (a bad signature, a resource limit)."""

    def __init__(self, model: LiteRTModel) -> None:
        self._model = model

    def __getattr__(self, name: str) -> object:
        return getattr(self._model, name)

    def rank(self, *args: object, **kwargs: object) -> np.ndarray:
        raise RuntimeError("the shadow's interpreter failed")


def recommender(models: object, items: list[CatalogItem], shadow: ShadowScoring | None = None) -> Recommender:
    return Recommender(
        states=InMemoryStateRepository(),
        models=models,  # type: ignore[arg-type]
        catalog=InMemoryCatalog(items),
        clock=lambda: NOW,
        shadow=shadow,
    )


def tracked(n: int, user: str, item: str, kind: str = "view") -> TrackedEvent:
    return TrackedEvent.model_validate(
        {"event_id": f"e-{user}-{n}", "user_id": user, "item_id": item, "event_type": kind, "timestamp": NOW}
    )


def session(service: Recommender, users: int = 12) -> list[UserRecommendations]:
    """A few events per shopper through `track` (the POST /events path), then each shopper's read."""
    answers: list[UserRecommendations] = []
    for u in range(users):
        user = f"shopper-{u}"
        for n in range(3):
            item = f"item-{(u * 5 + n * 7) % 24 + 1}"
            answers.extend(
                service.track([tracked(n, user, item, "purchase" if n == 2 else "view")], OPTIONS).users
            )
        answers.append(service.recommendations(user, OPTIONS))
    answers.append(service.recommendations("never-seen", OPTIONS))  # a new shopper: trending
    return answers


def picks(answers: list[UserRecommendations]) -> list[list[tuple[str, float]]]:
    return [[(r.item_id, r.score) for r in a.recommendations] for a in answers]


def test_shadow_scoring_never_changes_an_answer_or_a_state(
    control: LiteRTModel, challenger: LiteRTModel, catalog_items: list[CatalogItem]
) -> None:
    plain = recommender(StaticModelSource(control), catalog_items)
    log, report = InMemoryImpressionLog(), Report()
    shadowed_source = ScriptedVariants(
        {CONTROL_VARIANT: control}, shadow_model=ShadowModel(Shadow("shadow", "v2", 1.0), challenger)
    )
    shadowed = recommender(
        shadowed_source,
        catalog_items,
        ShadowScoring(shadowed_source, log, report, clock=lambda: NOW),
    )
    without, with_shadow = session(plain), session(shadowed)

    assert picks(with_shadow) == picks(without) and all(picks(without))
    assert [a.variant for a in with_shadow] == [CONTROL_VARIANT] * len(with_shadow)
    for u in range(12):
        a, b = plain.states.load(f"shopper-{u}"), shadowed.states.load(f"shopper-{u}")
        assert a.model_version == b.model_version == "v1" and a.recent == b.recent
        assert a.vector is not None and b.vector is not None and np.array_equal(a.vector, b.vector)
    # Every answer was shadow-scored and logged under its own recommendation id, never served.
    assert [i.recommendation_id for i in log.impressions] == [a.recommendation_id for a in with_shadow]
    assert {(i.shadow, i.variant, i.model_version) for i in log.impressions} == {(True, "shadow", "v2")}
    assert [i.surface for i in log.impressions[:4]] == [Surface.EVENTS] * 3 + [Surface.USER]
    assert len(report.latencies) == len(with_shadow) and not report.failures
    # The shadow's picks are the challenger's own ranking of the same shoppers.
    as_control = session(recommender(StaticModelSource(challenger), catalog_items))
    assert [list(i.items) for i in log.impressions] == [[item for item, _ in p] for p in picks(as_control)]
    assert picks(as_control) != picks(without)


def test_a_failing_shadow_never_fails_a_request(
    control: LiteRTModel, challenger: LiteRTModel, catalog_items: list[CatalogItem]
) -> None:
    source = ScriptedVariants(
        {CONTROL_VARIANT: control},
        shadow_model=ShadowModel(Shadow("shadow", "v2", 1.0), Exploding(challenger)),  # type: ignore[arg-type]
    )
    log, report = InMemoryImpressionLog(), Report()
    answers = session(
        recommender(source, catalog_items, ShadowScoring(source, log, report, clock=lambda: NOW))
    )
    assert picks(answers) == picks(session(recommender(StaticModelSource(control), catalog_items)))
    assert report.failures == ["RuntimeError"] * len(answers) and log.impressions == []


class CountingExplains:
    """A model that counts its `explain` calls (the +17 ms part of an explained answer)."""

    def __init__(self, model: LiteRTModel) -> None:
        self._model = model
        self.explains = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self._model, name)

    def explain(self, *args: object, **kwargs: object) -> object:
        self.explains += 1
        return self._model.explain(*args, **kwargs)  # type: ignore[arg-type]


def test_an_explained_answer_does_not_explain_the_shadow_picks(
    control: LiteRTModel, challenger: LiteRTModel, catalog_items: list[CatalogItem]
) -> None:
    served, shadow = CountingExplains(control), CountingExplains(challenger)
    source = ScriptedVariants(
        {CONTROL_VARIANT: served},  # type: ignore[dict-item]
        shadow_model=ShadowModel(Shadow("shadow", "v2", 1.0), shadow),  # type: ignore[arg-type]
    )
    log = InMemoryImpressionLog()
    service = recommender(source, catalog_items, ShadowScoring(source, log, Report(), clock=lambda: NOW))
    service.track([tracked(0, "shopper-1", "item-3", "purchase")], OPTIONS)
    answer = service.recommendations("shopper-1", RecommendOptions(k=5, explain=True))

    assert answer.recommendations and any(r.because for r in answer.recommendations)
    assert served.explains == 1 and shadow.explains == 0
    # The shadow still ranked and logged this answer.
    assert [i.recommendation_id for i in log.impressions][-1] == answer.recommendation_id


def test_a_shadow_sampled_at_zero_costs_nothing(
    control: LiteRTModel, challenger: LiteRTModel, catalog_items: list[CatalogItem]
) -> None:
    source = ScriptedVariants(
        {CONTROL_VARIANT: control}, shadow_model=ShadowModel(Shadow("shadow", "v2", 0.0), challenger)
    )
    log, report = InMemoryImpressionLog(), Report()
    session(recommender(source, catalog_items, ShadowScoring(source, log, report, clock=lambda: NOW)))
    assert log.impressions == [] and report.latencies == []


def test_a_shopper_alternating_between_variants_is_always_folded_by_the_serving_model(
    control: LiteRTModel, challenger: LiteRTModel, catalog_items: list[CatalogItem]
) -> None:
    models: dict[str, RankingModel] = {CONTROL_VARIANT: control, "challenger": challenger}
    source = ScriptedVariants(models)
    service = recommender(source, catalog_items)
    schedule = ["control", "challenger", "challenger", "control", "challenger", "control", "control"]
    for n, variant in enumerate(schedule):
        source.variant_of["shopper-1"] = variant
        (answer,) = service.track([tracked(n, "shopper-1", f"item-{3 * n + 1}")], OPTIONS).users
        state = service.states.load("shopper-1")
        model = models[variant]
        assert answer.variant == variant and answer.model_version == model.version
        assert state.model_version == model.version
        # The stored vector is the whole recent history folded by this model: no mix of the two.
        assert state.vector is not None
        np.testing.assert_allclose(state.vector, fold(model, None, state.recent), rtol=1e-5, atol=1e-6)
        # ...so the answer is the one a shop running only this model would give.
        alone = recommender(StaticModelSource(model), catalog_items)
        alone.track([tracked(m, "shopper-1", f"item-{3 * m + 1}") for m in range(n + 1)], OPTIONS)
        assert [r.item_id for r in answer.recommendations] == [
            r.item_id for r in alone.recommendations("shopper-1", OPTIONS).recommendations
        ]
    # The read path ranks with the variant too, and writes nothing.
    source.variant_of["shopper-1"] = "challenger"
    writes = service.states.writes  # type: ignore[attr-defined]
    read = service.recommendations("shopper-1", OPTIONS)
    assert read.variant == "challenger" and read.model_version == "v2"
    assert service.states.writes == writes  # type: ignore[attr-defined]
