"""What Lambda's event sources do, for the local stack: background threads that invoke the functions the
template wires to the bus, to the state table's stream and to the schedule.

* `BusDispatcher`: EventBridge rule -> function. moto matches events put on the bus against the rules'
  patterns (real semantics) and delivers them to a local queue per rule (stack._attach_rule_queues);
  this thread invokes the rule's function with each event. A failing invocation is retried as the
  function's `EventInvokeConfig` says (Lambda's asynchronous retries), then the event goes to its
  on-failure destination, as Lambda's failure record.
* `StreamDispatcher`: DynamoDB stream -> function (an event source mapping): reads every shard from
  the stream's trim horizon, applies the mapping's filter criteria, invokes with batches of at most
  `BatchSize` records, retries from the first reported failure up to `MaximumRetryAttempts`, then sends
  the batch's stream positions to the on-failure destination and moves on.
* `KinesisDispatcher`: the same for a Kinesis stream (records in Lambda's Kinesis shape).
* `Scheduler`: the function's Schedule event, every `every` seconds and on demand (`fire`).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from nextpick_local.standin.functions import FunctionError

log = logging.getLogger("nextpick_local.standin.dispatch")

Invoke = Callable[[str, dict[str, Any]], Any]
STREAM_POLL_SECONDS = 0.5


class Worker:
    """A daemon thread calling `poll` until stopped."""

    def __init__(self, name: str) -> None:
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll()
            except Exception as error:
                if self.stopping.is_set():
                    return  # shutting down: a run cut short is expected
                # The stand-in must outlive a hiccup (e.g. moto busy); the next poll tries again.
                # One line, no traceback: the console is the developer's.
                reason = " ".join(str(error).split())[:300]
                log.warning(
                    "%s: poll failed (%s: %s); trying again", self._thread.name, type(error).__name__, reason
                )
                self.stopping.wait(1.0)

    def poll(self) -> None:
        raise NotImplementedError


def eventbridge_event(delivered: dict[str, Any], account_id: str) -> dict[str, Any]:
    """The event as EventBridge hands it to Lambda. moto's delivery to a queue drops `version` and
    `account` and adds its own `ingestion-time`; Powertools' EventBridge model requires the former."""
    event = {key: value for key, value in delivered.items() if key != "ingestion-time"}
    return {"version": "0", "account": account_id, **event}


@dataclass(frozen=True)
class AsyncInvokeConfig:
    """A function's `EventInvokeConfig`: how Lambda retries an asynchronous invocation that fails,
    and where the event goes when every attempt failed (None: it is dropped)."""

    function_arn: str
    max_retries: int = 2
    on_failure_queue_url: str | None = None


def failure_record(
    event: dict[str, Any], error: BaseException, config: AsyncInvokeConfig, attempts: int
) -> str:
    """The message Lambda sends to an asynchronous invocation's on-failure destination."""
    cause = error.__cause__ or error
    return json.dumps(
        {
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"{config.function_arn}:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": attempts,
            },
            "requestPayload": event,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {"errorMessage": str(cause), "errorType": type(cause).__name__},
        }
    )


class BusDispatcher(Worker):
    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        function: str,
        invoke: Invoke,
        account_id: str,
        config: AsyncInvokeConfig,
    ) -> None:
        super().__init__(f"bus->{function}")
        self._account_id = account_id
        self._sqs = sqs
        self._queue_url = queue_url
        self._function = function
        self._invoke = invoke
        self._config = config

    def poll(self) -> None:
        response = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            AttributeNames=["ApproximateReceiveCount"],
        )
        for message in response.get("Messages", []):
            attempt = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
            event = eventbridge_event(json.loads(message["Body"]), self._account_id)
            try:
                self._invoke(self._function, event)
            except Exception as error:
                if attempt <= self._config.max_retries:
                    continue  # visible again after the queue's visibility timeout: Lambda's retry
                self._give_up(event, error, attempt)
            self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _give_up(self, event: dict[str, Any], error: Exception, attempts: int) -> None:
        destination = self._config.on_failure_queue_url
        log.error(
            "%s: event %s failed %d times; %s",
            self._function,
            event.get("id"),
            attempts,
            "sent to the on-failure destination" if destination else "dropped (no on-failure destination)",
        )
        if destination:
            record = failure_record(event, error, self._config, attempts)
            self._sqs.send_message(QueueUrl=destination, MessageBody=record)


def lambda_json(value: Any) -> Any:
    """A stream record as boto3 parses it -> as Lambda delivers it (binary base64, times as epoch)."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, dict):
        return {key: lambda_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [lambda_json(item) for item in value]
    return value


class StreamDispatcher(Worker):
    # The on-failure record's key for the batch's stream positions (Lambda's name for DynamoDB streams).
    BATCH_INFO = "DDBStreamBatchInfo"

    def __init__(
        self,
        streams: Any,
        sqs: Any,
        stream_arn: str,
        function: str,
        mapping: Mapping[str, Any],
        invoke: Invoke,
        on_failure_queue_url: str | None,
    ) -> None:
        super().__init__(f"stream->{function}")
        from moto.events.models import EventPattern  # the same pattern language as Lambda filters

        self._streams = streams
        self._sqs = sqs
        self.stream_arn = stream_arn
        self.function = function
        self._invoke = invoke
        self._batch_size = int(mapping.get("BatchSize", 100))
        self._max_retries = int(mapping.get("MaximumRetryAttempts", -1))
        self._filters = [
            EventPattern.load(f["Pattern"]) for f in mapping.get("FilterCriteria", {}).get("Filters", [])
        ]
        self._on_failure_queue_url = on_failure_queue_url
        self._iterators: dict[str, str] = {}
        self._starting_position = str(mapping.get("StartingPosition", "TRIM_HORIZON"))

    def poll(self) -> None:
        shards = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=self._starting_position
                )["ShardIterator"]
            response = self._streams.get_records(
                ShardIterator=self._iterators[shard_id], Limit=self._batch_size
            )
            self._iterators[shard_id] = response["NextShardIterator"]
            records = [
                {**lambda_json(record), "eventSourceARN": self.stream_arn} for record in response["Records"]
            ]
            if records:
                self._deliver(shard_id, records)
        self.stopping.wait(STREAM_POLL_SECONDS)

    def _deliver(self, shard_id: str, records: list[dict[str, Any]]) -> None:
        # Records filtered out are dropped by the event source mapping, never seen by the function.
        batch = [r for r in records if not self._filters or any(f.matches_event(r) for f in self._filters)]  # type: ignore[arg-type]
        attempt = 0
        while batch and not self.stopping.is_set():
            failed_from = self._invoke_batch(batch)
            if failed_from is None:
                return
            batch = batch[failed_from:]
            attempt += 1
            if 0 <= self._max_retries < attempt:
                self._give_up(shard_id, batch)
                return
            self.stopping.wait(min(5.0, 0.5 * attempt))

    def _invoke_batch(self, batch: list[dict[str, Any]]) -> int | None:
        """None if the whole batch succeeded, else the position to retry from."""
        try:
            response = self._invoke(self.function, {"Records": batch})
        except FunctionError as error:
            # The function's own failure (its log has the details): one line here, and a retry.
            log.warning("%s: stream batch failed (%s); retrying", self.function, error)
            return 0
        except Exception:
            log.exception("%s: stream batch failed", self.function)
            return 0
        failures = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
        positions = [i for i, r in enumerate(batch) if self.sequence_number(r) in failures]
        return min(positions) if positions else None

    @staticmethod
    def sequence_number(record: Mapping[str, Any]) -> str:
        return str(record["dynamodb"]["SequenceNumber"])

    def _give_up(self, shard_id: str, batch: list[dict[str, Any]]) -> None:
        log.error("%s: %d stream records failed after every retry", self.function, len(batch))
        if self._on_failure_queue_url is None:
            return
        info = {
            "requestContext": {
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": self._max_retries + 1,
            },
            self.BATCH_INFO: {
                "shardId": shard_id,
                "startSequenceNumber": self.sequence_number(batch[0]),
                "endSequenceNumber": self.sequence_number(batch[-1]),
                "streamArn": self.stream_arn,
                "batchSize": len(batch),
            },
        }
        self._sqs.send_message(QueueUrl=self._on_failure_queue_url, MessageBody=json.dumps(info))


class KinesisDispatcher(StreamDispatcher):
    """A Kinesis stream -> function mapping: the same batching, retry and on-failure rules as a
    DynamoDB stream's, with Kinesis's API and Lambda's Kinesis record shape. One batch per shard at a
    time (the mapping's `ParallelizationFactor` is not emulated: it changes throughput, not order)."""

    BATCH_INFO = "KinesisBatchInfo"

    def poll(self) -> None:
        shards = self._streams.describe_stream(StreamARN=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id not in self._iterators:
                self._iterators[shard_id] = self._streams.get_shard_iterator(
                    StreamARN=self.stream_arn, ShardId=shard_id, ShardIteratorType=self._starting_position
                )["ShardIterator"]
            response = self._streams.get_records(
                ShardIterator=self._iterators[shard_id], Limit=self._batch_size, StreamARN=self.stream_arn
            )
            self._iterators[shard_id] = response["NextShardIterator"]
            records = [self._lambda_record(shard_id, r) for r in response["Records"]]
            if records:
                self._deliver(shard_id, records)
        self.stopping.wait(STREAM_POLL_SECONDS)

    def _lambda_record(self, shard_id: str, record: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": record["PartitionKey"],
                "sequenceNumber": record["SequenceNumber"],
                "data": base64.b64encode(record["Data"]).decode(),
                "approximateArrivalTimestamp": record["ApproximateArrivalTimestamp"].timestamp(),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{shard_id}:{record['SequenceNumber']}",
            "eventName": "aws:kinesis:record",
            "eventSourceARN": self.stream_arn,
        }

    @staticmethod
    def sequence_number(record: Mapping[str, Any]) -> str:
        return str(record["kinesis"]["sequenceNumber"])


def scheduled_event(
    rule_arn: str, account_id: str, region: str, now: datetime | None = None
) -> dict[str, Any]:
    """The classic EventBridge "Scheduled Event" a Schedule event source delivers."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class ScheduleBusy(RuntimeError):
    """A scheduled run is still going; a second one is not started."""


class Scheduler(Worker):
    def __init__(
        self, function: str, make_event: Callable[[], dict[str, Any]], invoke: Invoke, every: float
    ) -> None:
        super().__init__(f"schedule->{function}")
        self._function = function
        self._make_event = make_event
        self._invoke = invoke
        self._every = every
        self._running = threading.Lock()
        self.last_result: Any = None

    def fire(self) -> Any:
        """Invoke the function now with a scheduled event; its result. Raises ScheduleBusy if a run
        is in progress (the template allows no retries, so nothing queues up either)."""
        if not self._running.acquire(blocking=False):
            raise ScheduleBusy(f"{self._function} is already running")
        try:
            self.last_result = self._invoke(self._function, self._make_event())
            return self.last_result
        finally:
            self._running.release()

    def poll(self) -> None:
        if self.stopping.wait(self._every):
            return
        try:
            self.fire()
        except ScheduleBusy:
            log.warning("%s: previous scheduled run still going; skipped", self._function)

    def start(self) -> None:
        if self._every > 0:
            super().start()
