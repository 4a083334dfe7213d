"""The scheduled event-log compaction (`EventLogCompactionFunction`, issue 9): one run of
`domain/compaction.LogCompaction` per invocation, every `LogCompactionSchedule`.

A run out of time (a log too large for one invocation) checkpoints and answers `partial`; the next
scheduled run resumes. A failure raises: the schedule's next run retries from the checkpoint, which is
safe because a run is idempotent, and `LogCompactionErrorsAlarm` reports it."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.domain.compaction import LogCompaction
from nextpick.handlers import wiring

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="Nextpick")


def compact(compaction: LogCompaction, context: LambdaContext) -> dict[str, Any]:
    """One run, its metrics and its log line (counts only)."""
    result = compaction.run(context.get_remaining_time_in_millis)
    metrics.add_metric(name="LogLinesErased", unit=MetricUnit.Count, value=result.lines_erased)
    metrics.add_metric(name="LogObjectsRewritten", unit=MetricUnit.Count, value=result.objects_rewritten)
    metrics.add_metric(name="LogBytesRead", unit=MetricUnit.Bytes, value=result.bytes_read)
    # Counts only: the log holds shoppers' ids, the function's own log does not.
    logger.info("event log compacted", extra={"compaction": result.as_dict()})
    return result.as_dict()


# The JSON-lines log only; the deployed function runs the retrain image's
# `nextpick_training.compaction_handler`, which reads Parquet objects too (issue 14).
@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return compact(wiring.log_compaction(), context)
