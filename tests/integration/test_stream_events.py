"""Shopper events through the Kinesis stream, under moto: the records are put on the template's stream
(partition key = user_id), read back with GetRecords and handed to the real handler as Lambda's event
source mapping would, with the mapping's retry rule (resume at the lowest reported sequence number)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from nextpick.adapters import LazyClient
from nextpick.domain.state import event_key
from nextpick.handlers import stream_events, wiring
from nextpick_local.standin.aws_resources import Stack
from nextpick_local.standin.dispatch import KinesisDispatcher
from nextpick_local.standin.template import load_template
from tests.integration.serving import FakeLambdaContext, sample_event
from tests.integration.spy import Spy

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def stream_function(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for name, value in stack.env("StreamEventFunction").items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    yield stack
    wiring.reset()


@pytest.fixture
def state_writes(stream_function: Stack) -> Spy:
    """Every call the handler makes to the state table."""
    spy = Spy(boto3.client("dynamodb"))
    wiring.recommender().states._client = LazyClient("dynamodb", spy)  # type: ignore[attr-defined]
    return spy


def event(event_id: str, user_id: str, item_id: str = "item-1", minutes_ago: int = 30) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "user_id": user_id,
        "item_id": item_id,
        "event_type": "view",
        "timestamp": (NOW - timedelta(minutes=minutes_ago)).isoformat(),
    }


def put(stack: Stack, partition_key: str, data: bytes | dict[str, Any]) -> str:
    """One record on the stream; its sequence number."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    kinesis = boto3.client("kinesis")
    response = kinesis.put_record(StreamName=stack.refs["EventStream"], Data=raw, PartitionKey=partition_key)
    return str(response["SequenceNumber"])


def batch(stack: Stack, after: str | None = None, at: str | None = None) -> dict[str, Any]:
    """The Lambda event for the stream's records (from `at` inclusive, or after `after`), as the event
    source mapping builds it from GetRecords."""
    kinesis = boto3.client("kinesis")
    name, arn = stack.refs["EventStream"], stack.arns["EventStream"]
    (shard,) = kinesis.describe_stream(StreamName=name)["StreamDescription"]["Shards"]
    where: dict[str, Any] = {"ShardIteratorType": "TRIM_HORIZON"}
    if at is not None:
        where = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "StartingSequenceNumber": at}
    if after is not None:
        where = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": after}
    iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard["ShardId"], **where)["ShardIterator"]
    records = kinesis.get_records(ShardIterator=iterator, Limit=100)["Records"]
    return {
        "Records": [
            {
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r["PartitionKey"],
                    "sequenceNumber": r["SequenceNumber"],
                    "data": base64.b64encode(r["Data"]).decode(),
                    "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": f"{shard['ShardId']}:{r['SequenceNumber']}",
                "eventName": "aws:kinesis:record",
                "awsRegion": "us-east-1",
                "eventSourceARN": arn,
            }
            for r in records
        ]
    }


def processed(user_id: str) -> tuple[bytes, ...]:
    return wiring.recommender().states.load(user_id).processed_keys


def keys(*event_ids: str) -> tuple[bytes, ...]:
    return tuple(event_key(event_id) for event_id in event_ids)


def handle(event: dict[str, Any]) -> dict[str, Any]:
    return stream_events.lambda_handler(event, FakeLambdaContext())


def test_a_hot_shopper_batch_is_one_write_per_user_in_record_order(
    stream_function: Stack, state_writes: Spy
) -> None:
    hot: list[str] = []
    for n in range(40):  # single events and batches of three, interleaved with other shoppers
        if n % 2:
            ids = [f"hot-{n}-{k}" for k in range(3)]
            put(stream_function, "hot", {"events": [event(i, "hot", f"item-{k}") for k, i in enumerate(ids)]})
        else:
            ids = [f"hot-{n}"]
            put(stream_function, "hot", event(ids[0], "hot", f"item-{n % 7}"))
        hot += ids
        if n % 10 == 0:
            put(stream_function, f"shopper-{n}", event(f"other-{n}", f"shopper-{n}"))
    assert handle(batch(stream_function)) == {"batchItemFailures": []}
    # 80 events of the hot shopper and 4 other shoppers: 5 reads, 5 writes.
    assert state_writes.count("put_item") == 5
    assert state_writes.count("get_item") == 5
    assert processed("hot") == keys(*hot)
    assert processed("shopper-20") == keys("other-20")


def test_the_same_batch_again_writes_nothing(stream_function: Stack, state_writes: Spy) -> None:
    for n in range(5):
        put(stream_function, "u-1", event(f"e-{n}", "u-1"))
    put(stream_function, "u-1", event("e-0", "u-1"))  # a producer's retry: the same event again
    assert handle(batch(stream_function)) == {"batchItemFailures": []}
    assert state_writes.count("put_item") == 1
    assert handle(batch(stream_function)) == {"batchItemFailures": []}  # delivered again
    assert state_writes.count("put_item") == 1
    assert processed("u-1") == keys(*(f"e-{n}" for n in range(5)))


def _throttle_writes_of(user_id: str) -> Any:
    def put_item(client: Any, **kwargs: Any) -> Any:
        if kwargs["Item"]["user_id"]["S"] == user_id:
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                "PutItem",
            )
        return client.put_item(**kwargs)

    return put_item


def test_a_failed_user_resumes_at_its_first_record_and_nothing_is_applied_twice(
    stream_function: Stack, state_writes: Spy
) -> None:
    put(stream_function, "a", event("a-1", "a"))
    first_b = put(stream_function, "b", event("b-1", "b"))
    put(stream_function, "a", event("a-2", "a"))
    put(stream_function, "b", {"events": [event("b-2", "b"), event("b-3", "b")]})
    put(stream_function, "c", event("c-1", "c"))
    state_writes.rewrite["put_item"] = _throttle_writes_of("b")
    assert handle(batch(stream_function)) == {"batchItemFailures": [{"itemIdentifier": first_b}]}
    assert processed("a") == keys("a-1", "a-2") and processed("c") == keys("c-1")
    assert processed("b") == ()

    # Lambda resumes the shard at b's first record: a-2 and c-1 come again, with b's records.
    del state_writes.rewrite["put_item"]
    writes_before = state_writes.count("put_item")
    assert handle(batch(stream_function, at=first_b)) == {"batchItemFailures": []}
    assert state_writes.count("put_item") - writes_before == 1  # only b: a's and c's are duplicates
    assert processed("a") == keys("a-1", "a-2") and processed("c") == keys("c-1")
    assert processed("b") == keys("b-1", "b-2", "b-3")


def test_the_lowest_failed_sequence_number_is_reported(stream_function: Stack, state_writes: Spy) -> None:
    first_a = put(stream_function, "a", event("a-1", "a"))
    put(stream_function, "b", event("b-1", "b"))
    state_writes.rewrite["put_item"] = lambda client, **kwargs: _throttle_writes_of(
        kwargs["Item"]["user_id"]["S"]
    )(client, **kwargs)
    assert handle(batch(stream_function)) == {"batchItemFailures": [{"itemIdentifier": first_a}]}


def _queued(stack: Stack) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    url = stack.refs["StreamDeadLetterQueue"]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


def test_poison_records_are_parked_and_do_not_block_the_shard(
    stream_function: Stack, state_writes: Spy
) -> None:
    put(stream_function, "u-1", event("e-1", "u-1"))
    not_json = put(stream_function, "u-1", b"{not json")
    teleport = put(stream_function, "u-1", {**event("e-2", "u-1"), "event_type": "teleport"})
    future = put(stream_function, "u-1", event("e-3", "u-1", minutes_ago=-60))
    put(stream_function, "u-1", event("e-4", "u-1"))
    assert handle(batch(stream_function)) == {"batchItemFailures": []}
    assert processed("u-1") == keys("e-1", "e-4")
    assert state_writes.count("put_item") == 1
    parked = {m["sequenceNumber"]: m for m in _queued(stream_function)}
    assert set(parked) == {not_json, teleport, future}
    assert base64.b64decode(parked[not_json]["data"]) == b"{not json"
    assert parked[teleport]["errors"][0]["field"] == "event_type"
    assert parked[future]["errors"] == [{"field": "timestamp", "message": "is more than 300 s in the future"}]
    assert {m["reason"] for m in parked.values()} == {"rejected"}


def test_a_poison_record_that_cannot_be_parked_is_retried(
    stream_function: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STREAM_REJECTS_QUEUE_URL", stream_function.refs["StreamDeadLetterQueue"] + "-gone")
    wiring.reset()
    put(stream_function, "u-1", event("e-1", "u-1"))
    poison = put(stream_function, "u-1", b"[]")
    assert handle(batch(stream_function)) == {"batchItemFailures": [{"itemIdentifier": poison}]}
    assert processed("u-1") == keys("e-1")


def test_the_sample_event_is_accepted(stream_function: Stack) -> None:
    assert handle(sample_event("kinesis_shopper_events.json")) == {"batchItemFailures": []}
    assert processed("user-42") == keys("evt-0201", "evt-0202", "evt-0203")


def test_the_event_source_mapping_retries_bisects_and_parks_failures() -> None:
    resources = load_template()["Resources"]
    function = resources["StreamEventFunction"]["Properties"]
    mapping = function["Events"]["ShopStream"]
    assert mapping["Type"] == "Kinesis"
    settings = mapping["Properties"]
    assert settings["Stream"] == {"Fn::GetAtt": ["EventStream", "Arn"]}
    assert settings["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert settings["BisectBatchOnFunctionError"] is True
    assert 1 <= settings["MaximumRetryAttempts"] <= 10
    assert settings["ParallelizationFactor"] >= 1
    on_failure = settings["DestinationConfig"]["OnFailure"]
    assert on_failure == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["StreamDeadLetterQueue", "Arn"]}}
    # The function parks poison records in the same queue the mapping parks failed batches in.
    assert function["Environment"]["Variables"]["STREAM_REJECTS_QUEUE_URL"] == {
        "Ref": "StreamDeadLetterQueue"
    }
    stream = resources["EventStream"]["Properties"]
    assert stream["StreamEncryption"]["EncryptionType"] == "KMS"
    assert stream["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}


def test_the_local_stacks_mapping_resumes_at_the_reported_record(
    stream_function: Stack, state_writes: Spy
) -> None:
    """The local stand-in's Kinesis mapping (Lambda's rule: resume at the lowest reported record),
    configured from the template, with the real handler behind it."""
    mapping = load_template()["Resources"]["StreamEventFunction"]["Properties"]["Events"]["ShopStream"]
    put(stream_function, "a", event("a-1", "a"))
    put(stream_function, "b", event("b-1", "b"))
    put(stream_function, "a", event("a-2", "a"))
    put(stream_function, "a", b"\xff not even text")
    put(stream_function, "c", event("c-1", "c"))
    throttled = _throttle_writes_of("b")

    def fail_once(client: Any, **kwargs: Any) -> Any:
        if kwargs["Item"]["user_id"]["S"] == "b":
            del state_writes.rewrite["put_item"]
        return throttled(client, **kwargs)

    state_writes.rewrite["put_item"] = fail_once
    delivered: list[list[str]] = []

    def invoke(function: str, event: dict[str, Any]) -> Any:
        assert function == "StreamEventFunction"
        delivered.append([r["kinesis"]["partitionKey"] for r in event["Records"]])
        return handle(event)

    dispatcher = KinesisDispatcher(
        boto3.client("kinesis"),
        boto3.client("sqs"),
        stream_function.arns["EventStream"],
        "StreamEventFunction",
        mapping["Properties"],
        invoke,
        stream_function.refs["StreamDeadLetterQueue"],
    )
    dispatcher.stopping.wait = lambda timeout=None: False  # type: ignore[method-assign]
    dispatcher.poll()
    assert delivered == [["a", "b", "a", "a", "c"], ["b", "a", "a", "c"]]
    assert processed("a") == keys("a-1", "a-2") and processed("b") == keys("b-1")
    assert processed("c") == keys("c-1")
    # The poison record was parked twice (delivered twice), nothing else reached the queue.
    assert [m["reason"] for m in _queued(stream_function)] == ["rejected", "rejected"]
