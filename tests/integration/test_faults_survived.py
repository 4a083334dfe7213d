"""Faults injected and survived (issue 10, part 3), under moto with the template's resources.

Faults are injected at the HTTP layer of botocore (`before-send`), so botocore's own retries (standard
mode, 3 attempts) see them exactly as they would see DynamoDB's: a short burst is absorbed, a lasting
one reaches the code. Each test asserts that nothing accepted is lost or applied twice, and that what
cannot be processed lands where an operator finds it (a 503/409 the caller retries, the bus DLQ, the
stream's failure queue). Lambda's retry machinery for the bus and the stream is the local stack's
(`nextpick_local.standin.dispatch`), configured from template.yaml."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from nextpick.adapters.dynamodb_state import DynamoDbStateRepository, decode_state
from nextpick.adapters.firehose_log import MAX_BATCH_RECORDS, FirehoseEventLog
from nextpick.domain.events import EventType, TrackedEvent
from nextpick.domain.state import StateLimits, UserState, apply_events
from nextpick.handlers import api, bus, log_shipper, wiring
from nextpick.settings import get_settings
from nextpick_local.standin.aws_resources import Stack, load_template
from nextpick_local.standin.dispatch import AsyncInvokeConfig, BusDispatcher, StreamDispatcher
from nextpick_training.event_log import LogStats
from nextpick_training.window_query import read_window_duckdb
from tests.integration.serving import FakeLambdaContext, proxy_event, sample_event
from tests.integration.spy import Spy

NOW = datetime.now(UTC).replace(microsecond=0)
DYNAMODB_ERRORS = {
    # DynamoDB's own answers: code, HTTP status.
    "throttled": ("ProvisionedThroughputExceededException", 400),
    "5xx": ("InternalServerError", 500),
}


# ------------------------------------------------------------------------------------------ injection


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def dynamodb_error(url: str, code: str, status: int) -> AWSResponse:
    body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code}).encode()
    headers = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "injected"}
    return AWSResponse(url, status, headers, _Body(body))  # type: ignore[arg-type]


def neutralise(request: Any) -> None:
    """botocore calls *every* `before-send` handler and uses the first answer: ours comes first (it is
    the more specific), but moto's still runs. Pointing the request at a table that does not exist
    makes moto's run a no-op, so an injected fault really means "DynamoDB did not apply it"."""
    body = json.loads(request.body)
    body["TableName"] = "fault-injected-no-such-table"
    request.body = json.dumps(body).encode()


@dataclass
class Injector:
    """`before-send` faults for every client made from the default boto3 session (the adapters' own
    LazyClients included). `faults[operation]` decides per attempt: an AWSResponse (the request is
    not applied), or None to let the request through to moto."""

    faults: dict[str, Callable[[Any], AWSResponse | None]] = field(default_factory=dict)
    attempts: Counter[str] = field(default_factory=Counter)
    # Operations whose request moto applies even when the answer is an injected error.
    applied_anyway: set[str] = field(default_factory=set)

    def __call__(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        self.attempts[operation] += 1
        fault = self.faults.get(operation)
        answer = fault(request) if fault is not None else None
        if answer is not None and operation not in self.applied_anyway:
            neutralise(request)
        return answer

    def fail(self, operation: str, kind: str, times: int | None = None) -> None:
        """Answer `operation` with DynamoDB's `kind` error, `times` times (None: until cleared)."""
        code, status = DYNAMODB_ERRORS[kind]
        left = [times]

        def fault(request: Any) -> AWSResponse | None:
            if left[0] is not None:
                if left[0] == 0:
                    return None
                left[0] -= 1
            return dynamodb_error(request.url, code, status)

        self.faults[operation] = fault


@pytest.fixture
def inject(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Injector]:
    """A fresh default session (every adapter client is built from it) with the injector attached,
    and the API and bus functions' environment from template.yaml."""
    for name, value in stack.env("ApiFunction").items():
        monkeypatch.setenv(name, value)
    injector = Injector()
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    boto3.DEFAULT_SESSION.events.register("before-send.dynamodb", injector)  # type: ignore[arg-type]
    wiring.reset()
    yield injector
    wiring.reset()
    boto3.DEFAULT_SESSION = None


def event(n: int, user: str = "shopper-1", item: str = "item-2") -> dict[str, Any]:
    return {
        "event_id": f"evt-{user}-{n}",
        "user_id": user,
        "item_id": item,
        "event_type": "view",
        "timestamp": (NOW - timedelta(minutes=30) + timedelta(seconds=n)).isoformat(),
    }


class Context(FakeLambdaContext):
    """A Lambda context whose remaining time is what the test says, call by call."""

    def __init__(self, remaining_ms: list[int] | None = None) -> None:
        self._remaining = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        if not self._remaining:
            return 10_000
        return self._remaining.pop(0) if len(self._remaining) > 1 else self._remaining[0]


def post(body: Any, context: FakeLambdaContext | None = None) -> tuple[int, dict[str, str], Any]:
    response = api.lambda_handler(proxy_event("POST", "/events", body), context or Context())
    headers = {name: values[-1] for name, values in (response.get("multiValueHeaders") or {}).items()}
    headers.update(response.get("headers") or {})
    return response["statusCode"], headers, json.loads(response["body"])


def clean_client(service: str) -> Any:
    """A client without the injector (its own session): what the test reads to check the outcome."""
    return boto3.Session().client(service)  # type: ignore[call-overload]


def stored(stack: Stack, user: str = "shopper-1") -> UserState | None:
    item = (
        clean_client("dynamodb")
        .get_item(TableName=stack.state_table, Key={"user_id": {"S": user}}, ConsistentRead=True)
        .get("Item")
    )
    return decode_state(item) if item else None


def stream_outbox_lines(stack: Stack) -> list[str]:
    """Every outbox line of every record on the state table's stream: what the log will receive."""
    dynamodb, streams = clean_client("dynamodb"), clean_client("dynamodbstreams")
    arn = dynamodb.describe_table(TableName=stack.state_table)["Table"]["LatestStreamArn"]
    lines: list[str] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for record in streams.get_records(ShardIterator=iterator)["Records"]:
            outbox = record["dynamodb"].get("NewImage", {}).get("outbox", {}).get("L", [])
            lines.extend(value["S"] for value in outbox)
    return lines


def logged_event_ids(stack: Stack) -> list[str]:
    return [json.loads(line)["event_id"] for line in stream_outbox_lines(stack)]


# ------------------------------------------------------------------------------------------ DynamoDB


@pytest.mark.parametrize("kind", DYNAMODB_ERRORS)
@pytest.mark.parametrize("operation", ["GetItem", "PutItem"])
def test_a_lasting_dynamodb_fault_answers_503_with_retry_after_and_the_retry_applies_once(
    inject: Injector, stack: Stack, operation: str, kind: str
) -> None:
    inject.fail(operation, kind)
    status, headers, body = post(event(1))
    assert status == 503 and headers.get("Retry-After") == "1", body
    assert inject.attempts[operation] >= 3  # botocore's standard retries tried, then gave up
    assert stored(stack) is None and stream_outbox_lines(stack) == []

    inject.faults.clear()
    status, _, body = post(event(1))  # the caller retries, as Retry-After says
    assert (status, body["status"]) == (200, "accepted")
    again = post(event(1))[2]  # and a duplicate delivery changes nothing
    assert again["status"] == "duplicate"
    assert stored(stack).processed_keys and logged_event_ids(stack) == ["evt-shopper-1-1"]  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", DYNAMODB_ERRORS)
@pytest.mark.parametrize("operation", ["GetItem", "PutItem"])
def test_a_short_dynamodb_burst_is_absorbed_by_botocore_retries(
    inject: Injector, stack: Stack, operation: str, kind: str
) -> None:
    inject.fail(operation, kind, times=2)
    status, _, body = post(event(1))
    assert (status, body["status"]) == (200, "accepted")
    assert inject.attempts[operation] == 3
    assert logged_event_ids(stack) == ["evt-shopper-1-1"]


def test_a_write_applied_whose_answer_is_lost_is_not_applied_twice(inject: Injector, stack: Stack) -> None:
    """DynamoDB applies the conditional write, then the answer is a 500: botocore sends the same write
    again, its condition (the version read) fails, and the service re-reads and finds the event done."""
    inject.fail("PutItem", "5xx", times=1)
    inject.applied_anyway.add("PutItem")  # moto applies the write; its answer is replaced by a 500
    status, _, body = post(event(1))
    assert status == 200 and body["status"] in ("accepted", "duplicate")
    state = stored(stack)
    assert state is not None and state.version == 1
    assert logged_event_ids(stack) == ["evt-shopper-1-1"]


class LambdaTimeout(BaseException):
    """Lambda stopping the invocation: nothing in the function can catch it."""


def test_a_timeout_between_the_state_write_and_the_answer_loses_and_doubles_nothing(
    inject: Injector, stack: Stack
) -> None:
    def after_write(**_: Any) -> None:
        raise LambdaTimeout

    session = boto3.DEFAULT_SESSION
    assert session is not None
    session.events.register("after-call.dynamodb.PutItem", after_write, unique_id="timeout")
    with pytest.raises(LambdaTimeout):
        post({"events": [event(1), event(2)]})  # the caller sees a 504 and sends the batch again
    session.events.unregister("after-call.dynamodb.PutItem", unique_id="timeout")
    wiring.reset()  # a new container

    status, _, body = post({"events": [event(1), event(2), event(3)]})
    assert status == 200
    assert [r["status"] for r in body["results"]] == ["duplicate", "duplicate", "accepted"]
    assert body["users"][0]["recommendations"] == [] or body["users"][0]["model_status"] == "live"
    assert sorted(logged_event_ids(stack)) == [f"evt-shopper-1-{n}" for n in (1, 2, 3)]
    assert stored(stack).version == 2  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------ contention


def test_contention_is_retried_within_the_time_left_then_409_with_retry_after(
    inject: Injector, stack: Stack
) -> None:
    inject.faults["PutItem"] = lambda request: AWSResponse(
        request.url,
        400,
        {"Content-Type": "application/x-amz-json-1.0"},  # type: ignore[arg-type]
        _Body(b'{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException"}'),
    )
    # Plenty of time: every attempt the settings allow (another writer always wins).
    status, headers, body = post(event(1))
    assert (status, headers.get("Retry-After")) == (409, "1"), body
    assert inject.attempts["PutItem"] == get_settings().max_write_attempts

    # 5 s and 3 s left before the 2nd and 3rd attempts, 0.9 s before the 4th: it would not finish
    # within the reserve for ranking and answering, so it is not started.
    inject.attempts.clear()
    status, headers, body = post(event(1), Context([5_000, 3_000, 900]))
    assert (status, headers.get("Retry-After")) == (409, "1")
    assert inject.attempts["PutItem"] == 3
    assert stored(stack) is None and stream_outbox_lines(stack) == []


def test_contention_that_clears_within_the_budget_applies_both_writers_once(
    inject: Injector, stack: Stack
) -> None:
    rival = DynamoDbStateRepository(stack.state_table, client=boto3.Session().client("dynamodb"))
    rival_event = TrackedEvent.model_validate(event(50))
    wins = [2]

    def rival_writes_first(request: Any) -> None:
        # Another container commits between our read and our write, twice in a row.
        if wins[0]:
            wins[0] -= 1
            current = rival.load("shopper-1")
            new, _ = apply_events(
                current,
                [rival_event.model_copy(update={"event_id": f"rival-{wins[0]}"})],
                None,
                StateLimits(),
                NOW,
            )
            rival.save(new)
        return None

    inject.faults["PutItem"] = rival_writes_first
    status, _, body = post(event(1))
    assert (status, body["status"]) == (200, "accepted")
    assert sorted(logged_event_ids(stack)) == ["evt-shopper-1-1", "rival-0", "rival-1"]


# ------------------------------------------------------------------------------------------ the bus


def test_a_bus_event_that_keeps_failing_lands_in_the_dlq_and_replays_once(
    inject: Injector, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in stack.env("BusEventFunction").items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    sqs = boto3.client("sqs")
    # The rule's target queue; visible again at once, so each poll is one of Lambda's retries.
    target = sqs.create_queue(QueueName="bus-target", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    invoke_config = load_template()["Resources"]["BusEventFunction"]["Properties"]["EventInvokeConfig"]
    config = AsyncInvokeConfig(
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:bus",
        max_retries=int(invoke_config["MaximumRetryAttempts"]),
        on_failure_queue_url=stack.bus_dead_letter_queue_url,
    )
    delivered = sample_event("bus_shopper_event.json")
    sqs.send_message(QueueUrl=target, MessageBody=json.dumps(delivered))
    dispatcher = BusDispatcher(
        sqs,
        target,
        "BusEventFunction",
        lambda _name, payload: bus.lambda_handler(payload, FakeLambdaContext()),
        stack.account_id,
        config,
    )
    inject.fail("GetItem", "5xx")  # DynamoDB down for longer than Lambda's retries

    for _ in range(config.max_retries + 1):
        dispatcher.poll()

    (message,) = sqs.receive_message(QueueUrl=stack.bus_dead_letter_queue_url).get("Messages", [])
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == config.max_retries + 1
    assert "InternalServerError" in record["responsePayload"]["errorMessage"]
    assert record["requestPayload"]["detail"] == delivered["detail"]
    assert stored(stack, delivered["detail"]["user_id"]) is None

    # The operator replays the parked event once DynamoDB is back (docs/operations.md); twice is harmless.
    inject.faults.clear()
    first = bus.lambda_handler(record["requestPayload"], FakeLambdaContext())
    second = bus.lambda_handler(record["requestPayload"], FakeLambdaContext())
    assert [r["status"] for r in first["results"]] == ["accepted"]
    assert [r["status"] for r in second["results"]] == ["duplicate"]
    assert logged_event_ids(stack) == [delivered["detail"]["event_id"]]


# ------------------------------------------------------------------------------------------ the event log


@pytest.fixture
def shipper(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name, value in stack.env("EventLogShipperFunction").items():
        monkeypatch.setenv(name, value)
    forget_event_log = log_shipper.event_log.cache_clear  # captured: a test replaces event_log
    get_settings.cache_clear()
    forget_event_log()
    yield log_shipper
    get_settings.cache_clear()
    forget_event_log()


def write_states(stack: Stack, users: int, events_per_user: int) -> list[str]:
    """Real state writes (their outboxes go to the table's stream); returns the accepted event ids."""
    repo = DynamoDbStateRepository(stack.state_table, StateLimits(recent_events=500, processed_ids=500))
    ids = []
    for u in range(users):
        events = [
            TrackedEvent(
                event_id=f"u{u}-e{n}",
                user_id=f"user-{u}",
                item_id=f"item-{n % 24 + 1}",
                event_type=EventType.VIEW,
                timestamp=NOW - timedelta(minutes=10),
            )
            for n in range(events_per_user)
        ]
        state, _ = apply_events(UserState.new(f"user-{u}"), events, None, StateLimits(500, 500, 500), NOW)
        repo.save(state)
        ids += [e.event_id for e in events]
    return ids


def stream_dispatcher(stack: Stack, invoke: Callable[[str, dict[str, Any]], Any]) -> StreamDispatcher:
    """Lambda's event source mapping as the template configures it, without waiting between retries."""
    mapping = load_template()["Resources"]["EventLogShipperFunction"]["Properties"]["Events"]["StateStream"]
    arn = boto3.client("dynamodb").describe_table(TableName=stack.state_table)["Table"]["LatestStreamArn"]
    dispatcher = StreamDispatcher(
        boto3.client("dynamodbstreams"),
        boto3.client("sqs"),
        arn,
        "EventLogShipperFunction",
        mapping["Properties"],
        invoke,
        stack.event_log_failure_queue_url,
    )
    dispatcher.stopping.wait = lambda timeout=None: False  # type: ignore[method-assign]
    return dispatcher


def log_as_training_reads_it(stack: Stack) -> tuple[list[str], LogStats]:
    stats = LogStats()
    records = read_window_duckdb(
        boto3.client("s3"),
        stack.model_bucket,
        "events/",
        NOW - timedelta(days=1),
        NOW + timedelta(days=1),
        stats,
    )
    return sorted(r.event_id for r in records), stats


def test_a_stream_batch_that_fails_halfway_is_retried_and_read_back_exactly_once(
    stack: Stack, shipper: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """600 events, one Firehose record each (so two PutRecordBatch calls): the second call fails once
    as a whole (ServiceUnavailable); Lambda retries the batch; the first 500 records reach S3 twice and
    the training reader keeps each event once."""
    ids = write_states(stack, users=20, events_per_user=30)
    firehose = Spy(boto3.client("firehose"))
    calls = [0]

    def second_call_fails_once(client: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ServiceUnavailableException"}}, "PutRecordBatch")
        return client.put_record_batch(**kwargs)

    firehose.rewrite["put_record_batch"] = second_call_fails_once
    log = FirehoseEventLog(stack.event_log_stream, client=firehose)
    monkeypatch.setattr(shipper, "event_log", lambda: log)
    responses: list[Any] = []

    def invoke(_name: str, payload: dict[str, Any]) -> Any:
        responses.append(shipper.lambda_handler(payload, FakeLambdaContext()))
        return responses[-1]

    stream_dispatcher(stack, invoke).poll()

    assert len(responses) == 2 and responses[0]["batchItemFailures"] and not responses[1]["batchItemFailures"]
    assert [len(batch) for batch in firehose.batches()] == [MAX_BATCH_RECORDS, 100, MAX_BATCH_RECORDS, 100]
    read, stats = log_as_training_reads_it(stack)
    assert read == sorted(ids) and stats.duplicates == MAX_BATCH_RECORDS
    assert (
        boto3.client("sqs").receive_message(QueueUrl=stack.event_log_failure_queue_url).get("Messages")
        is None
    )


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_stream_batch_firehose_never_takes_lands_in_the_failure_queue(
    stack: Stack, shipper: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ids = write_states(stack, users=3, events_per_user=2)
    firehose = Spy(boto3.client("firehose"))

    def refuse_every_record(client: Any, DeliveryStreamName: str, Records: list[Any]) -> Any:
        answers = [{"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"} for _ in Records]
        return {"FailedPutCount": len(Records), "RequestResponses": answers}

    firehose.rewrite["put_record_batch"] = refuse_every_record
    log = FirehoseEventLog(stack.event_log_stream, client=firehose, sleep=lambda _: None)
    monkeypatch.setattr(shipper, "event_log", lambda: log)
    dispatcher = stream_dispatcher(
        stack, lambda _n, payload: shipper.lambda_handler(payload, FakeLambdaContext())
    )

    dispatcher.poll()

    mapping = load_template()["Resources"]["EventLogShipperFunction"]["Properties"]["Events"]["StateStream"]
    retries = int(mapping["Properties"]["MaximumRetryAttempts"])
    assert len(firehose.batches()) == (retries + 1) * 4  # every try re-sent its refused records 3 times
    (message,) = boto3.client("sqs").receive_message(QueueUrl=stack.event_log_failure_queue_url)["Messages"]
    info = json.loads(message["Body"])["DDBStreamBatchInfo"]
    assert info["batchSize"] == 3 and info["startSequenceNumber"] and info["endSequenceNumber"]
    # Nothing is lost yet: the positions point at records the table's stream keeps for 24 hours, from
    # where the operator re-ships them (docs/operations.md); the alarm on this queue says so at once.
    assert log_as_training_reads_it(stack)[0] == [] and sorted(logged_event_ids(stack)) == sorted(ids)
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert sum(1 for m in emitted if "EventLogAppendFailed" in m) == retries + 1
