"""Integration fixtures: the template's resources in moto, and boto3 clients on them.

Every test gets a fresh in-process AWS (moto `mock_aws`) with the tables, bucket and delivery stream
created from template.yaml by `aws_resources.create_stack`, never from definitions copied here."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models.table import Table

from nextpick_local.standin.aws_resources import Stack, create_stack

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto for every AWS call of the test, with dummy credentials so nothing can reach a real account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL_FIREHOSE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def boto_session() -> boto3.Session:
    """One session for the whole run: its loader caches the service models, so building the clients of
    every test's stack costs milliseconds instead of re-reading botocore's JSON each time. Clients made
    from it are still fresh per test, and moto (imported above, before any client) intercepts them."""
    return boto3.Session(region_name=REGION)


@pytest.fixture
def stack(aws: None, boto_session: boto3.Session) -> Stack:
    return create_stack("nextpick-test", session=boto_session, region=REGION)


@pytest.fixture
def dynamodb(aws: None, boto_session: boto3.Session) -> Any:
    return boto_session.client("dynamodb")


@pytest.fixture
def dynamodbstreams(aws: None, boto_session: boto3.Session) -> Any:
    return boto_session.client("dynamodbstreams")


@pytest.fixture
def firehose(aws: None, boto_session: boto3.Session) -> Any:
    return boto_session.client("firehose")


@pytest.fixture
def s3(aws: None, boto_session: boto3.Session) -> Any:
    return boto_session.client("s3")


@pytest.fixture
def atomic_moto_put_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's conditional PutItem atomic, as DynamoDB's is.

    moto 5.2 `Table.put_item` (moto/dynamodb/models/table.py) reads the current item, evaluates the
    ConditionExpression against it and then stores the new item as separate Python steps, with no
    lock anywhere on the request path. Two threads can therefore both pass `#v = :expected` for the
    same version and one write silently overwrites the other: measured with 8 threads doing
    GetItem-then-conditional-PutItem on one counter item, 156 of 1247 "successful" writes were lost. Real DynamoDB
    evaluates the condition and applies the write atomically per item, which is what the optimistic
    lock relies on; this wrapper gives moto that guarantee so the concurrency test checks our
    protocol rather than moto's missing lock."""
    lock = threading.Lock()
    original = Table.put_item

    def put_item(self: Table, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return original(self, *args, **kwargs)

    monkeypatch.setattr(Table, "put_item", put_item)


@pytest.fixture
def serving(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """The API function's environment exactly as template.yaml resolves it; models re-checked every call."""
    from nextpick.handlers import wiring

    for name, value in stack.env("ApiFunction").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODEL_REFRESH_SECONDS", "0")
    wiring.reset()
    yield stack
    wiring.reset()
