"""Shadow scoring (issue 13, docs/variants.md): a model scored on live traffic and logged, never served.

After a shopper's answer is built, a sampled share of requests (the shadow's `sample_rate`, decided by
the answer's recommendation id) is ranked again by the shadow model from the same stored state (replayed
through the shadow's own `update`, as a retrain replays it) and logged as an impression with
`shadow=True` and the served answer's recommendation id. The served answer is already built and is
never touched: the shadow's picks go to the impression log only. Any failure of the shadow (its
scoring or the log) is counted and swallowed: it can never fail or change a request.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from nextpick.domain.events import Recommendation
from nextpick.domain.impressions import Impression, Surface
from nextpick.domain.ports import ImpressionLog, ModelSource, RankingModel
from nextpick.domain.variants import in_shadow_sample, shadow_of


class ShadowReport(Protocol):
    """Where shadow scoring reports its cost and its failures (metrics and logs, in an adapter)."""

    def scored(self, variant: str, milliseconds: float) -> None: ...

    def failed(self, variant: str, error: Exception) -> None: ...


class NoShadowReport:
    def scored(self, variant: str, milliseconds: float) -> None:
        return None

    def failed(self, variant: str, error: Exception) -> None:
        return None


@dataclass(frozen=True)
class ServedAnswer:
    """What of a served answer the shadow's impression repeats."""

    recommendation_id: str
    surface: Surface
    user_id: str


@dataclass
class ShadowScoring:
    models: ModelSource
    impressions: ImpressionLog
    report: ShadowReport
    clock: Callable[[], datetime]

    def score(self, served: ServedAnswer, rank: Callable[[RankingModel], Sequence[Recommendation]]) -> bool:
        """Rank with the shadow model if one is loaded and this answer is sampled, and log its picks.
        `rank` ranks the request's shopper with a given model (the served path's own ranking).
        Returns whether the shadow scored (for tests and the benchmark); never raises."""
        try:
            shadow = shadow_of(self.models)
            if shadow is None or not in_shadow_sample(shadow.shadow, served.recommendation_id):
                return False
        except Exception as error:  # a model source in trouble: no shadow for this request
            self.report.failed("shadow", error)
            return False
        started = time.perf_counter()
        try:
            picks = rank(shadow.model)
            impression = Impression(
                recommendation_id=served.recommendation_id,
                surface=served.surface,
                user_id=served.user_id,
                model_version=shadow.model.version,
                variant=shadow.shadow.name,
                items=[pick.item_id for pick in picks],
                served_at=self.clock(),
                shadow=True,
            )
            self.impressions.record([impression])
        except Exception as error:  # the shadow is never allowed to fail a request
            self.report.failed(shadow.shadow.name, error)
            return False
        self.report.scored(shadow.shadow.name, (time.perf_counter() - started) * 1000)
        return True
