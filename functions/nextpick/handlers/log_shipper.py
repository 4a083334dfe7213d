"""DynamoDB stream of the state table -> event log (Firehose -> S3).

Every state write carries, in its `outbox` attribute, the log records of the events it accepted; this
function ships them. The outboxes of the whole stream batch go out in one append (one PutRecordBatch
for up to 500 events and 4 MiB, one Firehose record per event: docs/event-log.md) rather than one call per stream record.
If the append fails, every record with an outbox is reported as a batch item failure, so Lambda
retries the batch: the log is at least once, and the retrain reader de-duplicates by `(user_id, event_id)`.

Not `process_partial_response`: Powertools' batch processor handles records one by one, which is
exactly the one-call-per-record pattern this function avoids; the partial-failure response has the
same shape (`batchItemFailures`, with `ReportBatchItemFailures` on the event source mapping).

Once the batch is logged, its events are added to the live trending buckets (docs/trending.md): one
UpdateItem per hour bucket touched (per 50 distinct items). Trending is best-effort and the log is not:
a trending failure is logged and counted (`TrendingUpdateFailed`), never reported as a batch failure,
because a retried batch would be logged again for the sake of a counter."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.adapters.dynamodb_state import stream_record_outbox
from nextpick.adapters.dynamodb_trending import EXPIRY_AFTER_HOUR, DynamoDbTrending
from nextpick.adapters.firehose_log import FirehoseEventLog
from nextpick.domain.trending import aggregate, bucket_hour
from nextpick.errors import StorageUnavailable
from nextpick.settings import get_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="Nextpick")


@cache
def event_log() -> FirehoseEventLog:
    return FirehoseEventLog(get_settings().event_log_stream_name)


@cache
def trending() -> DynamoDbTrending:
    settings = get_settings()
    return DynamoDbTrending(settings.trending_table_name, settings.trending_max_items_per_bucket)


def update_trending(lines: list[str]) -> None:
    """Add the batch's events to their hour buckets; any failure is reported, not raised."""
    dropped = 0
    try:
        for bucket, counts in aggregate(lines).items():
            expires_at = int((bucket_hour(bucket) + EXPIRY_AFTER_HOUR).timestamp())
            dropped += trending().add(bucket, expires_at, counts)
    except Exception:
        # Any failure (throttling, a missing table, a malformed record): the log already has the events.
        logger.exception("trending update failed; the batch stays shipped")
        metrics.add_metric(name="TrendingUpdateFailed", unit=MetricUnit.Count, value=1)
    if dropped:
        metrics.add_metric(name="TrendingItemsDropped", unit=MetricUnit.Count, value=dropped)


# Neither the answer (stream positions) nor an error is traced: the records carry user and item ids.
@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    outboxes = [
        (record["dynamodb"]["SequenceNumber"], stream_record_outbox(record)) for record in event["Records"]
    ]
    lines = [line for _, outbox in outboxes for line in outbox]
    try:
        event_log().append(lines)
    except StorageUnavailable:
        # Reported, not raised: Lambda retries the batch just the same, without an error trace per try.
        logger.exception("event log append failed; the batch will be retried", extra={"lines": len(lines)})
        # The ShipperFailures alarm watches this: a retried batch is not an error to Lambda.
        metrics.add_metric(name="EventLogAppendFailed", unit=MetricUnit.Count, value=1)
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq, outbox in outboxes if outbox]}
    metrics.add_metric(name="EventsLogged", unit=MetricUnit.Count, value=len(lines))
    update_trending(lines)
    return {"batchItemFailures": []}
