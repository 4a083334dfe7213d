"""Shadow scoring's cost and failures as Powertools metrics and logs (docs/variants.md), and a bounded
in-memory impression log for a container with no impression adapter wired.

Nothing personal is logged: a failure names the shadow variant and the error's type, never a user id,
an item or the error's message (which could quote either)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from nextpick.domain.impressions import Impression

logger = Logger(child=True)
# Powertools metrics instances share one metric set: the handler that runs the request flushes them.
metrics = Metrics(namespace="Nextpick")


class PowertoolsShadowReport:
    def scored(self, variant: str, milliseconds: float) -> None:
        metrics.add_metric(name="ShadowScoringLatency", unit=MetricUnit.Milliseconds, value=milliseconds)

    def failed(self, variant: str, error: Exception) -> None:
        metrics.add_metric(name="ShadowScoringFailed", unit=MetricUnit.Count, value=1)
        logger.warning(
            "shadow scoring failed; the answer was served without it",
            extra={"shadow_variant": variant, "error_type": type(error).__name__},
        )


class BoundedImpressionLog:
    """Keeps the last `capacity` impressions in memory (tests, the benchmark, and a container whose
    impression adapter is not wired): bounded, so a warm container never grows with traffic."""

    def __init__(self, capacity: int = 1000) -> None:
        self._records: deque[Impression] = deque(maxlen=capacity)
        self._lock = threading.Lock()

    def record(self, impressions: Sequence[Impression]) -> None:
        with self._lock:
            self._records.extend(impressions)

    @property
    def records(self) -> list[Impression]:
        with self._lock:
            return list(self._records)
