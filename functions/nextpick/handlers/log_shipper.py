"""DynamoDB stream of the state table -> event log (Firehose -> S3).

Every state write carries, in its `outbox` attribute, the log records of the events it accepted; this
function ships them. A stream record whose outbox could not be appended is reported as a batch item
failure, so Lambda retries from it: the log is at least once, and the retrain reader de-duplicates by
`event_id`."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.adapters.firehose_log import FirehoseEventLog
from nextpick.settings import get_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# A batch that failed entirely is reported like a partial one (every sequence number), not raised:
# Lambda retries it the same way, without an error trace per batch while Firehose is down.
processor = BatchProcessor(event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)


@cache
def event_log() -> FirehoseEventLog:
    return FirehoseEventLog(get_settings().event_log_stream_name)


def ship(record: DynamoDBRecord) -> None:
    if record.event_name is DynamoDBRecordEventName.REMOVE:
        return
    # Read the raw attribute: deserializing the whole image (vector, ids) would be wasted work.
    image = record.raw_event.get("dynamodb", {}).get("NewImage", {})
    outbox = [value["S"] for value in image.get("outbox", {}).get("L", ())]
    if outbox:
        event_log().append(outbox)
        metrics.add_metric(name="EventsLogged", unit=MetricUnit.Count, value=len(outbox))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return dict(
        process_partial_response(event=event, record_handler=ship, processor=processor, context=context)
    )
