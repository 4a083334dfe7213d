"""The event log path: state write -> DynamoDB stream -> log shipper Lambda -> Firehose -> S3 (`events/`),
on the template's table, delivery stream and bucket in moto."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nextpick.adapters.dynamodb_state import DynamoDbStateRepository
from nextpick.adapters.firehose_log import MAX_BATCH_RECORDS, SEND_ATTEMPTS, FirehoseEventLog
from nextpick.domain.events import EventType, TrackedEvent
from nextpick.domain.state import StateLimits, UserState, apply_events
from nextpick.errors import StorageUnavailable
from nextpick.handlers import log_shipper
from nextpick.settings import get_settings
from nextpick_local.standin.aws_resources import Stack
from nextpick_training.parquet_log import is_parquet, json_lines_of
from tests.integration.serving import FakeLambdaContext
from tests.integration.spy import Spy

SAMPLE_EVENT = Path(__file__).resolve().parents[2] / "events" / "dynamodb_stream_state.json"
NOW = datetime(2026, 11, 28, 20, 0, tzinfo=UTC)


@pytest.fixture
def shipper(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The handler module configured as Lambda configures it (environment resolved from template.yaml),
    with its per-container caches emptied before and after the test."""
    env = stack.env("EventLogShipperFunction")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # Metrics resolved its namespace when the module was first imported, maybe before this environment.
    monkeypatch.setattr(log_shipper.metrics, "namespace", env["POWERTOOLS_METRICS_NAMESPACE"])
    forget_event_log = log_shipper.event_log.cache_clear  # captured: a test may replace event_log
    forget_trending = log_shipper.trending.cache_clear
    get_settings.cache_clear()
    forget_event_log()
    forget_trending()
    yield log_shipper
    get_settings.cache_clear()
    forget_event_log()
    forget_trending()


def logged_lines(s3: Any, stack: Stack) -> list[str]:
    """Every record under events/ in the bucket as a JSON line, object by object in key order (the
    stream converts records to Parquet rows, issue 14: `json_lines_of` reads them back)."""
    listing = s3.list_objects_v2(Bucket=stack.model_bucket, Prefix="events/").get("Contents", [])
    lines: list[str] = []
    for entry in sorted(listing, key=lambda e: e["Key"]):
        body = s3.get_object(Bucket=stack.model_bucket, Key=entry["Key"])["Body"].read()
        assert is_parquet(body) and entry["Key"].endswith(".parquet")
        lines.extend(canonical(line) for line in json_lines_of(body).decode().splitlines())
    return lines


def canonical(line: str) -> str:
    """A JSON record with sorted keys: a Parquet row comes back in the table's column order."""
    return json.dumps(json.loads(line), sort_keys=True, separators=(",", ":"))


def object_bodies(s3: Any, stack: Stack) -> set[str]:
    listing = s3.list_objects_v2(Bucket=stack.model_bucket, Prefix="events/").get("Contents", [])
    return {
        "".join(
            canonical(line) + "\n"
            for line in json_lines_of(s3.get_object(Bucket=stack.model_bucket, Key=e["Key"])["Body"].read())
            .decode()
            .splitlines()
        )
        for e in listing
    }


def stream_event(dynamodb: Any, dynamodbstreams: Any, table: str) -> dict[str, Any]:
    """The Lambda event for everything on the table's stream, built from the stream's own records.

    The records are taken from the raw GetRecords response (before boto3 parses binary attributes into
    bytes and times into datetimes), i.e. exactly the JSON Lambda receives; Lambda's event source
    mapping only adds `eventSourceARN` to each record."""
    stream_arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    raw: list[bytes] = []

    def keep_raw(http_response: Any, **_: Any) -> None:
        raw.append(http_response.content)

    dynamodbstreams.meta.events.register("after-call.dynamodbstreams.GetRecords", keep_raw)
    shard_id = dynamodbstreams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"][0][
        "ShardId"
    ]
    iterator = dynamodbstreams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    dynamodbstreams.get_records(ShardIterator=iterator)
    records = json.loads(raw[-1])["Records"]
    return {"Records": [{**record, "eventSourceARN": stream_arn} for record in records]}


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def tracked(event_id: str, kind: str = "view", item_id: str = "item-1") -> TrackedEvent:
    return TrackedEvent(
        event_id=event_id, user_id="user-1", item_id=item_id, event_type=EventType(kind), timestamp=NOW
    )


def record(sequence: str, event_name: str = "MODIFY", outbox: list[str] | None = None) -> dict[str, Any]:
    """One stream record in Lambda's shape, for the cases a real stream is not needed to build."""
    image: dict[str, Any] = {"user_id": {"S": "user-1"}, "version": {"N": "2"}}
    if outbox is not None:
        image["outbox"] = {"L": [{"S": line} for line in outbox]}
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1795867200,
        "Keys": {"user_id": {"S": "user-1"}},
        "SequenceNumber": sequence,
        "SizeBytes": 100,
        "StreamViewType": "NEW_IMAGE",
    }
    if event_name != "REMOVE":
        dynamodb["NewImage"] = image
    return {
        "eventID": f"id-{sequence}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": dynamodb,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-11-28T00:00:00.000",
    }


# ------------------------------------------------------------------------------------------ the handler


def test_outbox_of_real_state_writes_lands_in_s3_exactly(
    stack: Stack,
    shipper: Any,
    dynamodb: Any,
    dynamodbstreams: Any,
    s3: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = DynamoDbStateRepository(stack.state_table, client=dynamodb)
    first, _ = apply_events(
        UserState.new("user-1"), [tracked("e1"), tracked("e2", "click")], None, StateLimits(), NOW
    )
    saved = repo.save(first)
    second, _ = apply_events(
        repo.load("user-1"), [tracked("e2"), tracked("e3", "purchase")], None, StateLimits(), NOW
    )
    repo.save(second)
    assert saved.version == 1 and len(first.outbox) == 2 and len(second.outbox) == 1  # e2 was a duplicate

    event = stream_event(dynamodb, dynamodbstreams, stack.state_table)
    assert [r["eventName"] for r in event["Records"]] == ["INSERT", "MODIFY"]
    capsys.readouterr()

    response = shipper.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    # One PutRecordBatch for the whole stream batch, hence one object; nothing but the outbox lines.
    assert object_bodies(s3, stack) == {
        "".join(f"{canonical(line)}\n" for line in (*first.outbox, *second.outbox))
    }
    assert sorted(json.loads(line)["event_id"] for line in logged_lines(s3, stack)) == ["e1", "e2", "e3"]
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    # EMF keeps every value added under one name in a list.
    assert sorted(v for m in emitted for v in _as_list(m.get("EventsLogged", []))) == [3.0]


def test_the_sample_stream_event_ships(stack: Stack, shipper: Any, s3: Any) -> None:
    event = json.loads(SAMPLE_EVENT.read_text())
    expected = [
        value["S"]
        for r in event["Records"]
        for value in r["dynamodb"].get("NewImage", {}).get("outbox", {}).get("L", [])
    ]
    assert expected  # the sample must exercise something

    response = shipper.lambda_handler(event, FakeLambdaContext())

    assert response == {"batchItemFailures": []}
    assert sorted(logged_lines(s3, stack)) == sorted(map(canonical, expected))


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_removes_and_records_without_outbox_are_skipped(stack: Stack, shipper: Any, s3: Any) -> None:
    event = {
        "Records": [
            record("1", "REMOVE"),
            record("2", "MODIFY", outbox=None),
            record("3", "INSERT", outbox=[]),
        ]
    }
    assert shipper.lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    assert logged_lines(s3, stack) == []


def test_a_batch_ships_in_one_call_and_a_failed_append_reports_every_record_with_an_outbox(
    stack: Stack, shipper: Any, s3: Any, firehose: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(firehose)
    log = FirehoseEventLog(stack.event_log_stream, client=spy)
    monkeypatch.setattr(shipper, "event_log", lambda: log)
    event = {
        "Records": [
            record("101", "INSERT", outbox=['{"event_id":"a"}']),
            record("102", "MODIFY", outbox=['{"event_id":"b"}', '{"event_id":"c"}']),
            record("103", "REMOVE"),
            record("104", "MODIFY", outbox=['{"event_id":"d"}']),
        ]
    }
    assert shipper.lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}
    # One PutRecordBatch for the whole stream batch, one Firehose record per log record (issue 14).
    assert spy.batches() == [
        [b'{"event_id":"a"}\n', b'{"event_id":"b"}\n', b'{"event_id":"c"}\n', b'{"event_id":"d"}\n']
    ]

    def unavailable(client: Any, **kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "ServiceUnavailableException"}}, "PutRecordBatch")

    spy.rewrite["put_record_batch"] = unavailable
    response = shipper.lambda_handler(event, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": i} for i in ("101", "102", "104")]}
    assert sorted(logged_lines(s3, stack)) == [f'{{"event_id":"{e}"}}' for e in "abcd"]


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_missing_stream_fails_every_record_with_an_outbox(stack: Stack, shipper: Any, firehose: Any) -> None:
    firehose.delete_delivery_stream(DeliveryStreamName=stack.event_log_stream)
    event = {
        "Records": [
            record("201", "INSERT", outbox=['{"event_id":"a"}']),
            record("202", "REMOVE"),
            record("203", "MODIFY", outbox=['{"event_id":"b"}']),
        ]
    }
    response = shipper.lambda_handler(event, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": "201"}, {"itemIdentifier": "203"}]}

    # A batch that fails entirely is reported, not raised: Lambda retries it just the same.
    only_failures = {"Records": [record("301", "INSERT", outbox=['{"event_id":"a"}'])]}
    assert shipper.lambda_handler(only_failures, FakeLambdaContext()) == {
        "batchItemFailures": [{"itemIdentifier": "301"}]
    }


def test_missing_stream_is_storage_unavailable_naming_it(stack: Stack, firehose: Any) -> None:
    log = FirehoseEventLog("no-such-stream", client=firehose)
    with pytest.raises(StorageUnavailable, match="no-such-stream does not exist"):
        log.append(['{"event_id":"a"}'])


# ---------------------------------------------------------------------------------- FirehoseEventLog


def test_records_are_newline_terminated_exactly_once(stack: Stack, firehose: Any, s3: Any) -> None:
    spy = Spy(firehose)
    FirehoseEventLog(stack.event_log_stream, client=spy).append(['{"event_id":"a"}', '{"event_id":"b"}\n'])
    assert spy.batches() == [[b'{"event_id":"a"}\n', b'{"event_id":"b"}\n']]
    assert object_bodies(s3, stack) == {'{"event_id":"a"}\n{"event_id":"b"}\n'}


def test_nothing_to_append_makes_no_call(firehose: Any) -> None:
    spy = Spy(firehose)
    FirehoseEventLog("any", client=spy).append([])
    assert spy.calls == []


class Accepting:
    """A Firehose client that accepts everything and records the batches (no moto: big payloads)."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []

    def put_record_batch(self, DeliveryStreamName: str, Records: list[dict[str, bytes]]) -> Any:
        self.batches.append([r["Data"] for r in Records])
        return {"FailedPutCount": 0, "RequestResponses": [{"RecordId": "x"} for _ in Records]}


def test_batches_respect_the_record_count_limit() -> None:
    client = Accepting()
    FirehoseEventLog("s", client=client).append([f'{{"n":{i}}}' for i in range(1200)])
    assert [len(b) for b in client.batches] == [MAX_BATCH_RECORDS, MAX_BATCH_RECORDS, 200]
    assert [json.loads(d)["n"] for b in client.batches for d in b] == list(range(1200))


def test_batches_respect_the_size_limit() -> None:
    client = Accepting()
    big = '"' + "x" * (900 * 1024) + '"'  # 900 KiB: four fit in 4 MiB, five do not
    FirehoseEventLog("s", client=client).append([big] * 10)  # one 900 KiB line per 1000 KiB record
    assert [len(b) for b in client.batches] == [4, 4, 2]
    assert all(sum(len(d) for d in b) <= 4 * 1024 * 1024 for b in client.batches)


def partly_refused(refuse_calls: int, refuse: Callable[[int], bool]) -> Callable[..., Any]:
    """A PutRecordBatch that, on its first `refuse_calls` calls, turns down the records for which
    `refuse(position)` holds (they are not delivered) and delivers the others, as Firehose does."""
    state = {"calls": 0}

    def put_record_batch(client: Any, DeliveryStreamName: str, Records: list[Any]) -> Any:
        state["calls"] += 1
        if state["calls"] > refuse_calls:
            return client.put_record_batch(DeliveryStreamName=DeliveryStreamName, Records=Records)
        accepted = [r for i, r in enumerate(Records) if not refuse(i)]
        if accepted:
            client.put_record_batch(DeliveryStreamName=DeliveryStreamName, Records=accepted)
        answers = [
            {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "slow down"}
            if refuse(i)
            else {"RecordId": "r"}
            for i in range(len(Records))
        ]
        return {"FailedPutCount": sum(1 for a in answers if "ErrorCode" in a), "RequestResponses": answers}

    return put_record_batch


def test_only_refused_records_are_sent_again(stack: Stack, firehose: Any, s3: Any) -> None:
    spy = Spy(firehose)
    spy.rewrite["put_record_batch"] = partly_refused(2, refuse=lambda i: i % 2 == 1)
    sleeps: list[float] = []
    records = [f'{{"event_id":"e{i}"}}' for i in range(8)]

    FirehoseEventLog(stack.event_log_stream, client=spy, sleep=sleeps.append).append(records)

    assert [len(b) for b in spy.batches()] == [8, 4, 2]
    assert spy.batches()[1] == [f"{records[i]}\n".encode() for i in (1, 3, 5, 7)]
    assert len(sleeps) == 2 and all(0 <= s <= 0.2 for s in sleeps)
    assert sorted(logged_lines(s3, stack)) == sorted(map(canonical, records))  # each exactly once


def test_records_still_refused_after_the_last_attempt_raise(stack: Stack, firehose: Any) -> None:
    spy = Spy(firehose)
    spy.rewrite["put_record_batch"] = partly_refused(100, refuse=lambda i: i == 0)
    sleeps: list[float] = []

    with pytest.raises(StorageUnavailable, match=r"1 of 3 records refused .*ServiceUnavailableException"):
        FirehoseEventLog(stack.event_log_stream, client=spy, sleep=sleeps.append).append(["1", "2", "3"])

    assert len(spy.batches()) == SEND_ATTEMPTS
    assert len(sleeps) == SEND_ATTEMPTS - 1 and max(sleeps) <= 1.0


def test_each_log_record_is_its_own_firehose_record() -> None:
    """Record-format conversion reads one Firehose record as one JSON document (issue 14)."""
    client = Accepting()
    lines = [json.dumps({"event_id": f"e{i}", "text": "y" * 299}) for i in range(1200)]
    FirehoseEventLog("s", client=client).append(lines)
    assert [len(b) for b in client.batches] == [MAX_BATCH_RECORDS, MAX_BATCH_RECORDS, 200]
    assert [d for b in client.batches for d in b] == [f"{line}\n".encode() for line in lines]
