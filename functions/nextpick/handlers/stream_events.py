"""Kinesis Data Streams: shopper events from a shop's high-volume producers, partitioned by `user_id`.

Each record's data is what `POST /events` takes (one event, or {"events": [...]}), held to the same
validation (`nextpick.domain.requests`, the API's limits and messages). All of one user's events in
the batch are folded into **one** state write (`domain/stream_batch.py`), in record order, without
ranking (nobody reads the answer). docs/kinesis.md has the rules; in short:

* A record that is not a valid event (not JSON, breaks the contract, stamped in the future) is a
  poison record: retrying cannot fix it, so it is parked with its raw data in the rejected-records
  queue, counted (`StreamRecordsRejected`) and logged by field names only, and the shard moves on.
  If it cannot be parked, it is reported as a failure instead, so it is never dropped.
* A user's write that fails (throttling, contention that outlasts the retries) is reported in
  `batchItemFailures` with the sequence number of the first record of that write: Lambda resumes the
  shard there (the lowest one reported), so that record and every later one come again. What was
  already applied is de-duplicated by `event_id` (the state keeps its processed keys).

Not Powertools' `process_partial_response`: its batch processor hands records over one at a time, and
the fold needs the whole batch grouped by user first. The response has the same shape, and
Powertools' `KinesisStreamEvent` reads the records."""

from __future__ import annotations

import binascii
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.domain.events import check_not_in_future
from nextpick.domain.requests import parse_events
from nextpick.domain.stream_batch import StreamRecord, UserWrite, batch_item_failures, plan_writes
from nextpick.errors import InvalidInput, InvalidRequest, RequestProblem
from nextpick.handlers import wiring

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="Nextpick")


def _validated(record: KinesisStreamRecord) -> StreamRecord:
    """The record's events, or InvalidRequest/InvalidInput if the record is poison."""
    try:
        data = record.kinesis.data_as_bytes()
    except (binascii.Error, ValueError):
        raise InvalidRequest.of("data", "is not base64", RequestProblem.MALFORMED) from None
    events = parse_events(data, wiring.request_limits()).events
    recommender = wiring.recommender()
    check_not_in_future(events, recommender.clock(), recommender.config.max_future_skew)
    return StreamRecord(record.kinesis.sequence_number, tuple(events))


def _park(record: KinesisStreamRecord, errors: list[dict[str, str]]) -> bool:
    """Send a poison record to the rejected-records queue; False if that failed (then it is retried)."""
    try:
        wiring.rejected_records().park(
            {
                "reason": "rejected",
                "errors": errors,
                "eventSourceARN": record.event_source_arn,
                "sequenceNumber": record.kinesis.sequence_number,
                "approximateArrivalTimestamp": record.kinesis.approximate_arrival_timestamp,
                "data": record.kinesis.data,
            }
        )
    except Exception as error:  # any failure: the record must then be retried, not dropped
        logger.error("a rejected record could not be parked", extra={"error": type(error).__name__})
        return False
    return True


def _apply(writes: list[UserWrite], context: LambdaContext) -> str | None:
    """One user's writes in order; the sequence number to resume at if one fails, else None."""
    recommender = wiring.recommender()
    for write in writes:
        try:
            results = recommender.ingest(list(write.events), context.get_remaining_time_in_millis)
        except Exception as error:  # retried from this write's first record; later writes wait for it
            # The error's type only: a message may name a table or carry a stored value.
            logger.error("a user's stream write failed", extra={"error": type(error).__name__})
            metrics.add_metric(name="StreamWritesFailed", unit=MetricUnit.Count, value=1)
            return write.first_sequence_number
        accepted = sum(1 for r in results if r.status == "accepted")
        metrics.add_metric(name="EventsAccepted", unit=MetricUnit.Count, value=accepted)
        metrics.add_metric(name="EventsDuplicate", unit=MetricUnit.Count, value=len(results) - accepted)
    return None


# Nothing of a record's content is logged or traced: a rejected record's field names only, never its
# values (docs/operations.md, "Personal data in logs and traces").
@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    valid: list[StreamRecord] = []
    failed: list[str] = []
    rejected = 0
    for record in KinesisStreamEvent(event).records:
        try:
            valid.append(_validated(record))
        except InvalidRequest as error:
            logger.warning("rejected stream record", extra={"errors": error.loggable_errors})
            parked = _park(record, error.loggable_errors)
        except InvalidInput as error:
            errors = [{"field": error.field, "message": error.message}]
            logger.warning("rejected stream record", extra={"errors": errors})
            parked = _park(record, errors)
        else:
            continue
        if parked:
            rejected += 1
        else:
            failed.append(record.kinesis.sequence_number)
    metrics.add_metric(name="StreamRecordsRejected", unit=MetricUnit.Count, value=rejected)
    for user_writes in plan_writes(valid, wiring.request_limits().max_batch_log_bytes):
        resume_at = _apply(user_writes, context)
        if resume_at is not None:
            failed.append(resume_at)
    return {"batchItemFailures": batch_item_failures(failed)}
