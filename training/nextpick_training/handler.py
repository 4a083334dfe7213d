"""The retrain Lambda (`RetrainFunction`, container image): a plain scheduled event runs one whole
`run_retrain`; a step payload (`{"step": "query"|"train"|"evaluate"|"publish"|"record", ...}`, the
state machine's tasks, docs/retrain.md "Steps") runs that one step and answers its output, raising on
failure so that the state machine's Retry / Catch see it.

For the plain schedule:

The function never raises for an outcome it expects: `published`, `rejected` and `skipped` are normal
results, and `failed` is logged with its error and *returned*, not raised. This is deliberate: the
schedule invokes the function asynchronously, and Lambda retries a raising asynchronous invocation
(twice by default). A retry of a half-done run would train again for up to 15 minutes on the same
data to reach, at best, the same decision; the next scheduled run supersedes a failed one anyway,
and the `Retrain*` metrics plus `runs/<timestamp>.json` make failures visible. Because the pointer
switch is the last write of a publish, a failure at any point leaves the live model as it was.
Only a Lambda timeout, an out-of-memory kill or invalid settings still raise; the function's
`EventInvokeConfig.MaximumRetryAttempts: 0` (and the schedule's `RetryPolicy.MaximumRetryAttempts: 0`)
keep those from being retried as well. A retry would be safe, only wasteful.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick_training import steps
from nextpick_training.pipeline import RetrainResult, RetrainStatus, run_retrain
from nextpick_training.settings import get_training_settings

# The template sets POWERTOOLS_SERVICE_NAME / POWERTOOLS_METRICS_NAMESPACE; the fallbacks keep the
# handler usable when it is imported before the environment is (tests, the local stack).
logger = Logger(service=os.getenv("POWERTOOLS_SERVICE_NAME") or "nextpick")
tracer = Tracer(service=os.getenv("POWERTOOLS_SERVICE_NAME") or "nextpick")
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE") or "Nextpick")


@dataclass(frozen=True)
class Clients:
    s3: Any
    events: Any
    dynamodb: Any = None


_clients: Clients | None = None


def clients() -> Clients:
    """boto3 clients, built on first use and reused for the life of the container."""
    global _clients
    if _clients is None:
        import boto3

        _clients = Clients(
            s3=boto3.client("s3"), events=boto3.client("events"), dynamodb=boto3.client("dynamodb")
        )
    return _clients


def reset_clients() -> None:
    """Forget the cached clients (tests, or after a credentials change)."""
    global _clients
    _clients = None


def _emit_metrics(result: RetrainResult) -> None:
    metrics.add_dimension(name="status", value=result.status.value)
    metrics.add_metric(name="RetrainRuns", unit=MetricUnit.Count, value=1)
    metrics.add_metric(
        name="RetrainSeconds", unit=MetricUnit.Seconds, value=result.durations.get("total", 0.0)
    )
    if result.counts:
        metrics.add_metric(name="RetrainEvents", unit=MetricUnit.Count, value=result.counts.get("events", 0))
        metrics.add_metric(
            name="RetrainMalformedLines", unit=MetricUnit.Count, value=result.counts.get("malformed", 0)
        )
    if result.candidate_metrics:
        metrics.add_metric(
            name="CandidateNdcgAt10",
            unit=MetricUnit.NoUnit,
            value=result.candidate_metrics.get("ndcg@10", 0.0),
        )
    if result.live_metrics:
        metrics.add_metric(
            name="LiveNdcgAt10", unit=MetricUnit.NoUnit, value=result.live_metrics.get("ndcg@10", 0.0)
        )


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A step payload (`{"step": ...}`, the state machine's tasks) runs that step and answers its output;
    any other event (the plain schedule) runs the whole retrain."""
    if isinstance(event, dict) and "step" in event:
        return _run_step(event)
    settings = get_training_settings()
    aws = clients()
    result = run_retrain(aws.s3, aws.events, settings, datetime.now(UTC), aws.dynamodb)
    summary = result.model_dump(mode="json", exclude={"error"})
    if result.status is RetrainStatus.FAILED:
        logger.error("retrain failed", extra={"result": summary, "error": result.error})
    else:
        logger.info(f"retrain {result.status.value}", extra={"result": summary})
    _emit_metrics(result)
    return result.model_dump(mode="json")


def _run_step(event: dict[str, Any]) -> dict[str, Any]:
    # run_step checks the payload before it reads or writes anything (StepPayloadError names the field).
    settings = get_training_settings()
    aws = clients()
    output = steps.run_step(event, steps.StepClients(aws.s3, aws.events, aws.dynamodb), settings)
    logger.info(f"step {event['step']} done", extra={"output": _summary(output)})
    if event["step"] == "record":
        _emit_metrics(RetrainResult.model_validate(output))
    return output


def _summary(output: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in output.items() if k != "error"}
