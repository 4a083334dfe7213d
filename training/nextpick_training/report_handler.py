"""The scheduled online report as deployed (`OnlineReportFunction`, the retrain image):
`nextpick.handlers.report_job`'s run over the Parquet event log (issues 13 and 14).

The log's objects are Parquet since issue 14; the serving zip has no Parquet reader, the retrain image
has DuckDB. The report reads each object as JSON lines (`parquet_log.json_lines_of`: a Parquet
object's rows as the records `log_record()` wrote; JSON-lines objects from before the switch as they
are), so the attribution and the statistics (`nextpick.domain.report`) are the serving code's own."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.adapters.s3_report import S3ReportStore
from nextpick.handlers.report_job import logger, metrics, report, tracer
from nextpick.settings import get_settings
from nextpick_training.parquet_log import json_lines_of


def decode_log_object(body: bytes) -> list[bytes]:
    """One log object, Parquet or JSON lines (gzip accepted), as lines."""
    from nextpick.adapters.s3_report import log_lines

    return log_lines(json_lines_of(body))


@cache
def report_store() -> S3ReportStore:
    return S3ReportStore(get_settings().model_bucket_name, decode=decode_log_object)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return report(context, report_store())
