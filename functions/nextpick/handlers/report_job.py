"""The scheduled `nextpick report` (docs/attribution.md): the last REPORT_WINDOW_DAYS of impressions,
attributed from the event log, written to the model bucket under `reports/` (JSON and markdown, and
`reports/latest.json`). No TensorFlow, no model: the log's lines and arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.adapters.s3_report import S3ReportStore
from nextpick.domain.report import online_report, render_markdown
from nextpick.settings import get_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="Nextpick")


@cache
def report_store() -> S3ReportStore:
    return S3ReportStore(get_settings().model_bucket_name)


def run_report(now: datetime, days: int, store: S3ReportStore | None = None) -> dict[str, Any]:
    """The report over [now - days, now], stored; what was written."""
    store = store or report_store()
    start = now - timedelta(days=days)
    report = online_report(store.read_report_lines(start), start, now, now)
    keys = store.write_report(report, render_markdown(report), now.strftime("%Y-%m-%d"))
    return {"status": "written", "keys": keys, "impressions": report["log"]["impressions"]}


def report(context: LambdaContext, store: S3ReportStore | None = None) -> dict[str, Any]:
    """One scheduled run (this module's handler and the retrain image's, which reads Parquet)."""
    result = run_report(datetime.now(UTC), get_settings().report_window_days, store)
    metrics.add_metric(name="ReportImpressions", unit=MetricUnit.Count, value=result["impressions"])
    logger.info("online report written", extra=result)
    return result


# The answer holds counts and keys, never a user or item id; the report itself holds neither.
@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return report(context)
