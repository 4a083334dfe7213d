"""The scheduled event-log compaction as deployed (`EventLogCompactionFunction`, the retrain image):
`nextpick.handlers.log_compactor`'s run with the Parquet codec (issue 14).

The log's objects are Parquet since issue 14 and rewriting one needs a Parquet library; the serving
zip has none (and its layer stays small), the retrain image has DuckDB. So the compaction runs here,
with the same plan (`nextpick.domain.compaction`), the same S3 side (`adapters/s3_event_log.py`) and
the same metrics; only the reading and filtering of one object differ (`ParquetLogCodec`), and
JSON-lines objects (before the switch, Firehose's error records) are filtered as before."""

from __future__ import annotations

from datetime import timedelta
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.adapters.s3_event_log import S3EventLog
from nextpick.domain.compaction import LogCompaction
from nextpick.handlers.log_compactor import compact, logger, metrics, tracer
from nextpick.settings import get_settings
from nextpick_training.parquet_log import ParquetLogCodec


@cache
def log_compaction() -> LogCompaction:
    settings = get_settings()
    return LogCompaction(
        S3EventLog(settings.model_bucket_name),
        retention=timedelta(days=settings.event_log_retention_days),
        codec=ParquetLogCodec(),
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return compact(log_compaction(), context)
