"""No personal data in logs or traces (docs/operations.md, "Personal data in logs and traces").

A shop's whole day runs through the real handlers under moto, configured as template.yaml configures
them (their modules are re-imported with the function's environment, as a cold start would) and with
the Powertools Tracer switched on as in Lambda: catalog writes, events through the API and the bus,
recommendations, rejected events carrying hostile text, the log shipper, and a storage failure. Every
log line the handlers write (Powertools' JSON, the EMF metrics, library logs, the message and stack
Lambda logs for a raised error) and every X-Ray document the X-Ray SDK emits is captured; none may
contain a user id, an item id or a rejected value, and the correlation ids must be there."""

from __future__ import annotations

import copy
import importlib
import io
import json
import logging
import re
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from aws_lambda_powertools import Tracer
from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core import patch, xray_recorder
from aws_xray_sdk.core.context import Context

from nextpick.domain.credentials import ShopCredentials, mint_shopper_token
from nextpick.errors import InvalidRequest
from nextpick.handlers import api, authorizer, bus, log_compactor, log_shipper, stream_events, wiring
from nextpick_local.standin.aws_resources import Stack
from nextpick_local.standin.template import load_template, translated_template
from tests.conftest import TinyModel, tiny_catalog
from tests.integration.serving import FakeLambdaContext, call, proxy_event, publish_model, sample_event
from tests.integration.test_log_shipper import stream_event
from tests.integration.test_stream_events import batch as kinesis_batch
from tests.integration.test_stream_events import put as kinesis_put

USER = "jane.doe@example.com"  # a valid id, and personal data
BUS_USER = "shopper-7c1e5a"
HOSTILE = "<script>alert('pwned-5e1f')</script>"
HOSTILE_KEY = "key-pwned-77aa"
SECRET_ITEM = "sku-private-9d31"
SESSION = "sess-c0ffee"
QUERY = "shoes for my knee-brace-query-6c0d"  # a search's query is personal data (issue 12)
REVIEW_TEXT = "My diagnosis-review-91fe made these\nhard to wear"
API_CORRELATION_ID = "req-3f9a-503"
BUS_CORRELATION_ID = "evt-bus-rejected-41b2"


class CapturingEmitter:
    """Where the X-Ray SDK sends finished segments and subsegments (the UDP daemon in Lambda)."""

    def __init__(self) -> None:
        self.documents: list[str] = []

    def send_entity(self, entity: Any) -> None:
        self.documents.append(entity.serialize())

    def set_daemon_address(self, address: str | None) -> None:
        pass


@dataclass
class Captured:
    logs: io.StringIO = field(default_factory=io.StringIO)
    traces: CapturingEmitter = field(default_factory=CapturingEmitter)

    def invoke(self, handler: Callable[..., Any], event: dict[str, Any]) -> Any:
        """One invocation in its own trace segment, as Lambda opens one per invocation. A raised error
        is logged the way Lambda's runtime logs it (message and stack), then re-raised."""
        xray_recorder.begin_segment("nextpick-test")
        try:
            return handler(event, FakeLambdaContext())
        except Exception as error:
            self.logs.write("".join(traceback.format_exception(error)))
            raise
        finally:
            xray_recorder.end_segment()


HANDLERS = (api, bus, log_shipper, authorizer, log_compactor, stream_events)


@pytest.fixture
def traced(serving: Stack) -> Iterator[Captured]:
    """The handlers re-imported as Lambda starts them (the template's environment, tracing on), their
    log handlers writing into a buffer and the X-Ray SDK's emitter capturing every document."""
    captured = Captured()
    saved = (
        xray_recorder.context,
        xray_recorder.emitter,
        xray_recorder.sampling,
        xray_recorder.streaming_threshold,
    )
    with pytest.MonkeyPatch.context() as lambda_like:
        lambda_like.setenv("LAMBDA_TASK_ROOT", "/var/task")  # the Tracer turns itself off outside Lambda
        lambda_like.setenv("POWERTOOLS_TRACE_DISABLED", "false")
        for function in ("AuthorizerFunction", "EventLogCompactionFunction", "StreamEventFunction"):
            for name, value in serving.env(function).items():
                lambda_like.setenv(name, value)
        lambda_like.delenv("AWS_XRAY_SDK_ENABLED", raising=False)
        Tracer._reset_config()
        # Patching is the one thing done here rather than by the Tracer: botocore (the handlers' only
        # outgoing calls) and nothing else of this shared test process.
        Tracer._config["auto_patch"] = False
        global_sdk_config.set_sdk_enabled(True)
        patch(["botocore"])
        xray_recorder.context = Context(context_missing="LOG_ERROR")
        xray_recorder.emitter, xray_recorder.sampling = captured.traces, False
        for module in HANDLERS:
            importlib.reload(module)
        wiring.reset()
        streams = _powertools_streams()
        for handler in streams:
            handler.setStream(captured.logs)
        try:
            yield captured
        finally:
            for handler, stream in streams.items():
                handler.setStream(stream)
    Tracer._reset_config()
    global_sdk_config.set_sdk_enabled(False)
    (
        xray_recorder.context,
        xray_recorder.emitter,
        xray_recorder.sampling,
        xray_recorder.streaming_threshold,
    ) = saved
    for module in HANDLERS:
        importlib.reload(module)
    wiring.reset()


def _powertools_streams() -> dict[logging.StreamHandler[Any], Any]:
    """Every Powertools Logger's handler (one per service name) -> the stream it writes to."""
    loggers = [
        lg for lg in list(logging.Logger.manager.loggerDict.values()) if isinstance(lg, logging.Logger)
    ]
    handlers = {getattr(lg, "powertools_handler", None) for lg in loggers}
    return {h: h.stream for h in handlers if isinstance(h, logging.StreamHandler)}


def _event(n: int, user: str, item: str, event_type: str = "view", **extra: Any) -> dict[str, Any]:
    moment = datetime.now(UTC) - timedelta(minutes=30) + timedelta(seconds=n)
    return {"event_id": f"ev-{n}", "user_id": user, "item_id": item, "event_type": event_type,
            "timestamp": moment.isoformat(), **extra}  # fmt: skip


def _day(captured: Captured, stack: Stack, model: TinyModel) -> None:
    """The shop's day; each step's answer is checked, so the ids really passed through the handlers."""
    items = [{"item_id": i, "category": c, "price": 4.0, "stock": 5} for i, c in tiny_catalog().items()]
    assert (
        captured.invoke(api.lambda_handler, proxy_event("PUT", "/items", {"items": items}))["statusCode"]
        == 200
    )
    secret = proxy_event("PUT", f"/items/{SECRET_ITEM}", {"category": "shoes", "price": 1.0, "stock": 1})
    assert captured.invoke(api.lambda_handler, secret)["statusCode"] == 200
    publish_model(stack, model)
    batch = {"events": [_event(1, USER, "item-2"), _event(2, USER, "item-3", "purchase", session_id=SESSION)]}
    status, body = call(
        lambda e, _: captured.invoke(api.lambda_handler, e), proxy_event("POST", "/events", batch)
    )
    assert status == 200 and body["users"][0]["recommendations"], body
    status, body = call(
        lambda e, _: captured.invoke(api.lambda_handler, e),
        proxy_event("GET", f"/users/{USER}/recommendations"),
    )
    assert status == 200 and body["user_id"] == USER and body["recommendations"], body
    search = {**_event(10, USER, "-"), "event_type": "search", "query": QUERY, "clicked_items": ["item-1"]}
    del search["item_id"]
    status, body = call(
        lambda e, _: captured.invoke(api.lambda_handler, e), proxy_event("POST", "/events", search)
    )
    assert status == 200 and body["status"] == "accepted", body
    bad_search = {**search, "event_id": "ev-11", "query": f"{QUERY}\x1b{HOSTILE}"}
    assert (
        captured.invoke(api.lambda_handler, proxy_event("POST", "/events", bad_search))["statusCode"] == 422
    )
    hostile = _event(3, USER, "item-4", HOSTILE, context={HOSTILE_KEY: [HOSTILE]})
    assert captured.invoke(api.lambda_handler, proxy_event("POST", "/events", hostile))["statusCode"] == 422
    assert (
        captured.invoke(api.lambda_handler, proxy_event("POST", "/events", f"{{{HOSTILE}"))["statusCode"]
        == 400
    )

    shopper, item = sample_event("bus_shopper_event.json"), sample_event("bus_catalog_item.json")
    shopper["detail"] = _event(4, BUS_USER, "item-5", "add_to_cart")
    assert captured.invoke(bus.lambda_handler, shopper)["results"][0]["status"] == "accepted"
    assert captured.invoke(bus.lambda_handler, item) == {"stored": 1}
    review = copy.deepcopy(shopper)
    review["detail"] = _event(12, BUS_USER, "item-6", "review", rating=2, text=REVIEW_TEXT)
    assert captured.invoke(bus.lambda_handler, review)["results"][0]["status"] == "accepted"
    too_long = copy.deepcopy(review)
    too_long["detail"] = {**review["detail"], "event_id": "ev-13", "text": REVIEW_TEXT * 100}
    with pytest.raises(InvalidRequest):
        captured.invoke(bus.lambda_handler, too_long)
    rejected = copy.deepcopy(shopper)
    rejected["id"] = BUS_CORRELATION_ID
    rejected["detail"] = _event(
        5, BUS_USER, SECRET_ITEM, HOSTILE, context={HOSTILE_KEY: [HOSTILE]}, **{HOSTILE_KEY: 2}
    )
    with pytest.raises(InvalidRequest):
        captured.invoke(bus.lambda_handler, rejected)

    # The authorizer: a shopper token names its user (its answer's context too), a forged one is refused.
    master = boto3.client("secretsmanager").get_secret_value(SecretId=stack.auth_secret)["SecretString"]
    signing_key = ShopCredentials.derive(master).token_signing_key
    request = sample_event("authorizer_request.json")
    request["headers"]["Authorization"] = f"Bearer {mint_shopper_token(signing_key, USER)}"
    assert captured.invoke(authorizer.lambda_handler, request)["context"]["user_id"] == USER
    request["headers"]["Authorization"] = (
        f"Bearer {mint_shopper_token('npt_forged-key-0123456789abcdefghij', USER)}"
    )
    with pytest.raises(authorizer.Unauthorized):
        captured.invoke(authorizer.lambda_handler, request)
    # An access request and an erasure; the tombstone ships with the day's events, then compaction runs.
    exported = captured.invoke(api.lambda_handler, proxy_event("GET", f"/users/{USER}/data"))
    assert exported["statusCode"] == 200 and USER in exported["body"]
    assert json.loads(exported["body"])["state"]["last_write_events"][0]["query"] == QUERY
    assert captured.invoke(api.lambda_handler, proxy_event("DELETE", f"/users/{USER}"))["statusCode"] == 200

    records = stream_event(boto3.client("dynamodb"), boto3.client("dynamodbstreams"), stack.state_table)
    assert sum(len(r["dynamodb"]["NewImage"]["outbox"]["L"]) for r in records["Records"]) == 6
    assert captured.invoke(log_shipper.lambda_handler, records) == {"batchItemFailures": []}
    assert captured.invoke(log_compactor.lambda_handler, sample_event("schedule_log_compaction.json"))

    # The Kinesis path: an accepted event, a rejected one carrying hostile text, a record that is not
    # JSON; then (after the table is gone) a write that fails.
    kinesis_put(stack, BUS_USER, _event(21, BUS_USER, SECRET_ITEM))
    poison = _event(22, BUS_USER, SECRET_ITEM, HOSTILE, context={HOSTILE_KEY: [HOSTILE]})
    first_poison = kinesis_put(stack, BUS_USER, poison)
    kinesis_put(stack, BUS_USER, f"{{{HOSTILE} {BUS_USER}".encode())
    assert captured.invoke(stream_events.lambda_handler, kinesis_batch(stack)) == {"batchItemFailures": []}

    boto3.client("dynamodb").delete_table(TableName=stack.state_table)  # storage fails: logged with its id
    failing = proxy_event("GET", f"/users/{USER}/recommendations")
    failing["requestContext"]["requestId"] = API_CORRELATION_ID
    assert captured.invoke(api.lambda_handler, failing)["statusCode"] == 503
    last = kinesis_put(stack, USER, _event(23, USER, SECRET_ITEM))
    failed = captured.invoke(stream_events.lambda_handler, kinesis_batch(stack, after=first_poison))
    assert failed == {"batchItemFailures": [{"itemIdentifier": last}]}


@pytest.mark.slow
def test_no_user_id_item_id_or_rejected_text_reaches_a_log_or_a_trace(
    traced: Captured,
    serving: Stack,
    tiny_model: TinyModel,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)  # every library's log records too
    _day(traced, serving, tiny_model)
    # Powertools' JSON lines, Lambda's report of a raised error, the EMF metrics printed, library logs.
    logs = traced.logs.getvalue() + capsys.readouterr().out + caplog.text
    traces = traced.traces.documents

    secrets = [USER, BUS_USER, "pwned-5e1f", HOSTILE_KEY, SECRET_ITEM, SESSION, *tiny_catalog()]
    secrets += ["knee-brace-query-6c0d", "diagnosis-review-91fe"]
    leaks = {s: [line for line in [*logs.splitlines(), *traces] if s in line] for s in secrets}
    assert {s: lines[:2] for s, lines in leaks.items() if lines} == {}
    # The scan saw real output: JSON log lines with both correlation ids, and traces of every handler
    # with their AWS calls (the tracer was on; with capture on, answers would be in these documents).
    assert (
        f'"correlation_id":"{API_CORRELATION_ID}"' in logs
        and f'"correlation_id":"{BUS_CORRELATION_ID}"' in logs
    )
    assert '"message":"invalid bus event"' in logs and '"message":"request failed"' in logs
    assert '"message":"rejected stream record"' in logs
    assert '"message":"a user\'s stream write failed"' in logs
    names = {name for document in traces for name in re.findall(r'"name": ?"([^"]+)"', document)}
    assert {"## lambda_handler", "dynamodb", "s3", "firehose"} <= names, names


# ------------------------------------------------------------------------------------ API access log


def test_the_api_access_log_is_json_without_bodies_raw_paths_or_addresses() -> None:
    resources = translated_template()["Resources"]
    (stage,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::Stage"]
    setting = stage["AccessLogSetting"]
    group = resources[setting["DestinationArn"]["Fn::GetAtt"][0]]
    assert group["Type"] == "AWS::Logs::LogGroup" and group["Properties"]["KmsKeyId"]
    line = setting["Format"]
    variables = set(re.findall(r"\$context\.[A-Za-z.]+", line))
    # Every variable replaced by a value with quotes in it: the line is still one JSON object.
    record = json.loads(
        re.sub(r"\$context\.[A-Za-z.]+String", '"a \\\\"b\\\\""', line).replace("$context.", "x-")
    )
    assert {
        "requestId",
        "status",
        "responseLatency",
        "integrationLatency",
        "resourcePath",
        "scope",
        "errorMessage",
    } <= set(record)
    assert {"$context.resourcePath", "$context.authorizer.scope", "$context.error.messageString"} <= variables
    forbidden = ("$context.path", "$context.identity.sourceIp", "$context.identity.userAgent", "body")
    assert not [v for v in variables if v.startswith(forbidden) or "body" in v.lower()], variables


def test_tracer_never_captures_responses_or_errors() -> None:
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]
    assert (
        variables["POWERTOOLS_TRACER_CAPTURE_RESPONSE"]
        == variables["POWERTOOLS_TRACER_CAPTURE_ERROR"]
        == "false"
    )
