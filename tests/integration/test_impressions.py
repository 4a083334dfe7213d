"""Impressions and attribution through the real handlers, against the template's stack in moto
(docs/attribution.md): one impression per answer on every route, in the event log's Firehose stream
(delivered to S3 as Firehose delivers); a bad `recommendation_id` refused on the API and the bus with
nothing written; the scheduled report reading that log and writing reports/ to S3."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from nextpick.domain.impressions import CONTROL_VARIANT, is_impression_record, new_recommendation_id
from nextpick.errors import InvalidRequest
from nextpick.handlers import api, bus, log_shipper, wiring
from nextpick.settings import get_settings
from nextpick_local.cli import main
from nextpick_local.standin.aws_resources import Stack
from nextpick_training import report_handler
from nextpick_training.parquet_log import json_lines_of
from tests.conftest import TinyModel
from tests.integration.serving import FakeLambdaContext, call, proxy_event, sample_event
from tests.integration.test_api import stored_state
from tests.integration.test_log_shipper import stream_event
from tests.integration.test_together_api import SHOPPER, shop  # noqa: F401  (the fixture)


def log_records(s3: Any, bucket: str) -> list[dict[str, Any]]:
    records = []
    for entry in s3.list_objects_v2(Bucket=bucket, Prefix="events/").get("Contents", []):
        body = s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read()
        # The log is Parquet (Firehose's record-format conversion, issue 14); JSON lines as written.
        records += [json.loads(line) for line in json_lines_of(body).splitlines() if line.strip()]
    return records


def impressions(s3: Any, bucket: str) -> list[dict[str, Any]]:
    return [r for r in log_records(s3, bucket) if is_impression_record(r)]


def event(user: str, item: str, kind: str = "click", **fields: Any) -> dict[str, Any]:
    stamp = (datetime.now(UTC) - timedelta(seconds=5)).isoformat()
    return {
        "event_id": f"{user}-{item}-{kind}",
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "timestamp": stamp,
        **fields,
    }


def test_every_route_logs_one_impression_per_answer(
    shop: str,  # noqa: F811
    serving: Stack,
    s3: Any,
    tiny_model: TinyModel,
) -> None:
    item = str(tiny_model.items[1])
    routes = [
        ("user", proxy_event("GET", "/users/alice/recommendations"), "recommendations"),
        ("events", proxy_event("POST", "/events", event("alice", item)), "recommendations"),
        (
            "cart",
            proxy_event("POST", "/recommendations/cart", {"items": [item], "user_id": "alice"}),
            "recommendations",
        ),
        ("similar", proxy_event("GET", f"/items/{item}/similar", authorizer=SHOPPER), "items"),
        (
            "bought_together",
            proxy_event("GET", f"/items/{item}/bought-together", authorizer=SHOPPER),
            "items",
        ),
        ("trending", proxy_event("GET", "/trending"), "items"),
    ]
    answers = {}
    for surface, request, list_key in routes:
        status, body = call(api.lambda_handler, request)
        assert status == 200, body
        assert body["variant"] == CONTROL_VARIANT
        answers[body["recommendation_id"]] = (surface, body, list_key)
    logged = {record["recommendation_id"]: record for record in impressions(s3, serving.model_bucket)}
    assert set(logged) == set(answers), "exactly one impression per answer"
    for recommendation_id, (surface, body, list_key) in answers.items():
        record = logged[recommendation_id]
        assert record["surface"] == surface
        assert record["variant"] == CONTROL_VARIANT and record["shadow"] is False
        # A null column (a trending answer has no model) is left out of the Parquet row's record.
        assert record.get("model_version") == body["model_version"]
        assert record["items"] == [pick["item_id"] for pick in body[list_key]]
        # Item pages know the shopper from a shopper token; the rest from the user the answer is for.
        assert record.get("user_id") == ("alice" if surface != "trending" else None)
    assert logged[next(r for r, a in answers.items() if a[0] == "similar")]["item_id"] == item
    batch = {"events": [event("bob", item), event("carol", item)]}
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", batch))
    assert status == 200
    ids = {user["recommendation_id"] for user in body["users"]}
    assert len(ids) == 2 and ids <= {r["recommendation_id"] for r in impressions(s3, serving.model_bucket)}


def test_an_unwritable_log_costs_the_answer_nothing_and_is_counted_without_personal_data(
    shop: str,  # noqa: F811
    serving: Stack,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("EVENT_LOG_STREAM_NAME", "no-such-stream")
    wiring.reset()
    status, body = call(api.lambda_handler, proxy_event("GET", "/users/alice-xyz/recommendations"))
    assert status == 200 and body["recommendation_id"]
    out = capsys.readouterr().out
    lost = [json.loads(line) for line in out.splitlines() if '"ImpressionsLost"' in line]
    assert lost and lost[0]["ImpressionsLost"] == [1.0]
    warnings = [r for r in caplog.records if r.getMessage() == "impressions not logged"]
    assert warnings and all("alice-xyz" not in str(r.__dict__) for r in warnings)


@pytest.mark.parametrize("bad", ["ABC", "0" * 31, "g" * 32, 12, ""])
def test_a_malformed_recommendation_id_is_422_naming_it_and_nothing_is_written(
    serving: Stack, s3: Any, bad: Any
) -> None:
    status, body = call(
        api.lambda_handler, proxy_event("POST", "/events", event("dave", "i-1", recommendation_id=bad))
    )
    assert status == 422, body
    assert [e["field"] for e in body["errors"]] == ["recommendation_id"]
    batch = {"events": [event("dave", "i-1"), event("erin", "i-2", recommendation_id=bad)]}
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", batch))
    assert status == 422 and [e["field"] for e in body["errors"]] == ["events[1].recommendation_id"]
    assert stored_state(serving, "dave") is None and stored_state(serving, "erin") is None
    assert log_records(s3, serving.model_bucket) == []


def test_a_cited_recommendation_id_is_kept_in_the_events_log_record(serving: Stack) -> None:
    cited = new_recommendation_id()
    status, body = call(
        api.lambda_handler, proxy_event("POST", "/events", event("frank", "i-1", recommendation_id=cited))
    )
    assert status == 200, body
    state = stored_state(serving, "frank")
    assert state is not None
    (record,) = [json.loads(value["S"]) for value in state["outbox"]["L"]]
    assert record["recommendation_id"] == cited


def test_the_bus_refuses_a_malformed_recommendation_id_and_writes_nothing(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in stack.env("BusEventFunction").items():
        monkeypatch.setenv(name, value)
    wiring.reset()
    message = copy.deepcopy(sample_event("bus_shopper_event.json"))
    message["detail"]["recommendation_id"] = "not-an-id"
    with pytest.raises(InvalidRequest) as refused:
        bus.lambda_handler(message, FakeLambdaContext())
    assert "recommendation_id" in str(refused.value)
    assert boto3.client("dynamodb").scan(TableName=stack.state_table, Select="COUNT")["Count"] == 0
    message["detail"]["recommendation_id"] = new_recommendation_id()
    assert bus.lambda_handler(message, FakeLambdaContext())["results"][0]["status"] == "accepted"
    wiring.reset()


def test_the_scheduled_report_attributes_the_logged_answers_and_writes_s3(
    shop: str,  # noqa: F811
    serving: Stack,
    s3: Any,
    dynamodb: Any,
    dynamodbstreams: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shown = {}
    for user in ("gina", "hal", "ivy", "jon"):
        status, body = call(api.lambda_handler, proxy_event("GET", f"/users/{user}/recommendations"))
        assert status == 200 and body["recommendations"], body
        shown[user] = body
    # gina clicks her first pick and buys it (price 10 x 3); hal clicks; ivy and jon do nothing.
    gina, hal = shown["gina"], shown["hal"]
    first = gina["recommendations"][0]["item_id"]
    for sent in (
        event("gina", first, recommendation_id=gina["recommendation_id"]),
        event("gina", first, "purchase", price=10.0, quantity=3, recommendation_id=gina["recommendation_id"]),
        event("hal", hal["recommendations"][0]["item_id"], recommendation_id=hal["recommendation_id"]),
    ):
        assert call(api.lambda_handler, proxy_event("POST", "/events", sent))[0] == 200
    # The events reach the log the way they do in AWS: the state stream, the shipper, Firehose.
    log_shipper.event_log.cache_clear()
    assert log_shipper.lambda_handler(
        stream_event(dynamodb, dynamodbstreams, serving.state_table), FakeLambdaContext()
    ) == {"batchItemFailures": []}
    for name, value in serving.env("OnlineReportFunction").items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    report_handler.report_store.cache_clear()
    result = report_handler.lambda_handler(sample_event("schedule_log_compaction.json"), FakeLambdaContext())
    assert result["status"] == "written"
    latest = json.loads(s3.get_object(Bucket=serving.model_bucket, Key="reports/latest.json")["Body"].read())
    (control,) = latest["variants"]
    # 4 GET answers + the 3 POST /events answers (each an answer of its own, unclicked).
    assert control["impressions"] == 7
    assert control["ctr"]["value"] == round(2 / 7, 6)
    assert control["conversion"]["value"] == round(1 / 7, 6)
    assert control["revenue_per_mille"]["value"] == round(1000 * 30 / 7, 6)
    day = result["keys"][0].split("/")[1]
    markdown = s3.get_object(Bucket=serving.model_bucket, Key=f"reports/{day}/report.md")["Body"].read()
    assert b"| control | 7 |" in markdown
    # `nextpick report --aws` reads the same log through the same code.
    monkeypatch.setenv("MODEL_BUCKET_NAME", serving.model_bucket)
    for name in ("ITEMS_TABLE_NAME", "STATE_TABLE_NAME", "EVENT_BUS_NAME"):
        monkeypatch.setenv(name, serving.env("ApiFunction").get(name, name.lower()))
    capsys.readouterr()
    assert main(["report", "--aws", "--days", "1", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["variants"] == latest["variants"] and printed["comparisons"] == []
