"""Shadow scoring's cost and failures as Powertools metrics and logs (docs/variants.md), and a bounded
in-memory impression log for a container with no impression adapter wired.

Nothing personal is logged: a failure names the shadow variant and the error's type, never a user id,
an item or the error's message (which could quote either)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

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
