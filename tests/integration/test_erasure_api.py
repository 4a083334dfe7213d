"""Erasure and export through the API handler under moto (issue 9): `DELETE /users/{user_id}` and
`GET /users/{user_id}/data` on the template's state table, the tombstone shipped to the S3 event log
by the real log shipper, and the training reader dropping the erased shopper's events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from nextpick.adapters.dynamodb_state import DynamoDbStateRepository
from nextpick.domain.erasure import Erasure, parse_time
from nextpick.domain.events import TrackedEvent
from nextpick.domain.privacy import PrivacyRequests
from nextpick.domain.service import Recommender
from nextpick.handlers import api, log_shipper, wiring
from nextpick.settings import get_settings
from nextpick_local.standin.aws_resources import Stack
from nextpick_training.window_query import read_window_duckdb
from tests.conftest import TinyModel
from tests.integration.serving import FakeLambdaContext, call, proxy_event, publish_model
from tests.integration.test_api import put_catalog, tracked
from tests.integration.test_api import stored_state as stored_or_none
from tests.integration.test_log_shipper import logged_lines, stream_event

MARKER_ATTRIBUTES = {"user_id", "version", "updated_at", "erased_at", "expires_at", "outbox"}


def stored_state(stack: Stack, user_id: str) -> dict[str, Any]:
    item = stored_or_none(stack, user_id)
    assert item is not None, f"no state item for {user_id}"
    return item


def post(*events: dict[str, Any]) -> dict[str, Any]:
    status, body = call(api.lambda_handler, proxy_event("POST", "/events", {"events": list(events)}))
    assert status == 200, body
    return body


def recommendations(user: str) -> list[str]:
    status, body = call(api.lambda_handler, proxy_event("GET", f"/users/{user}/recommendations", query="k=8"))
    assert status == 200, body
    return [r["item_id"] for r in body["recommendations"]]


def delete(user: str) -> tuple[int, Any]:
    return call(api.lambda_handler, proxy_event("DELETE", f"/users/{user}"))


def export(user: str) -> dict[str, Any]:
    status, body = call(api.lambda_handler, proxy_event("GET", f"/users/{user}/data"))
    assert status == 200, body
    return body


@pytest.fixture
def ship(serving: Stack, dynamodb: Any, dynamodbstreams: Any) -> Iterator[Any]:
    """Run the log shipper once over everything on the state table's stream (what Lambda's event
    source mapping does), as configured by the template."""
    log_shipper.event_log.cache_clear()

    def run() -> None:
        event = stream_event(dynamodb, dynamodbstreams, serving.state_table)
        assert log_shipper.lambda_handler(event, FakeLambdaContext()) == {"batchItemFailures": []}

    yield run
    log_shipper.event_log.cache_clear()


def test_delete_erases_the_state_at_once_and_the_shopper_comes_back_as_new(
    serving: Stack, tiny_model: TinyModel
) -> None:
    publish_model(serving, tiny_model)
    put_catalog(tiny_model)
    post(tracked(1, item="item-20"), tracked(2, item="item-21", kind="purchase"))
    assert recommendations("shopper-1") != recommendations("never-seen")
    version = int(stored_state(serving, "shopper-1")["version"]["N"])

    status, body = delete("shopper-1")

    assert status == 200, body
    erased_at = parse_time(body["erased_at"])
    assert body["user_id"] == "shopper-1" and body["status"] == "erased"
    assert abs(erased_at - datetime.now(UTC)) < timedelta(minutes=1)
    # 5 s stream batching + 300 s Firehose buffer + the 6-hour schedule + one 900 s run.
    assert parse_time(body["log_erased_by"]) - erased_at == timedelta(hours=6, seconds=1205)
    marker = stored_state(serving, "shopper-1")
    assert set(marker) == MARKER_ATTRIBUTES
    assert int(marker["version"]["N"]) == version + 1
    assert int(marker["expires_at"]["N"]) == int((erased_at + timedelta(days=1)).timestamp())
    (record,) = [json.loads(entry["S"]) for entry in marker["outbox"]["L"]]
    assert record == {
        "type": "erasure",
        "user_id": "shopper-1",
        "erased_at": body["erased_at"],
        "request_id": "e8c01ce8-7b61-11e6-9a41-93e8deadbeef",
    }
    # Serving answers as for a shopper it never saw; the export holds nothing but the erasure.
    assert recommendations("shopper-1") == recommendations("never-seen")
    assert export("shopper-1")["state"] is None
    assert export("shopper-1")["erasure"] == {"erased_at": body["erased_at"]}

    # A later event starts a new state, over the marker: no erasure attributes, one event.
    post(tracked(3, item="item-5"))
    state = stored_state(serving, "shopper-1")
    assert "erased_at" not in state and "expires_at" not in state
    assert int(state["version"]["N"]) == version + 2
    again = export("shopper-1")
    assert again["erasure"] is None
    assert [e["item_id"] for e in again["state"]["recent_events"]] == ["item-5"]
    assert again["state"]["purchased"] == [] and again["state"]["processed_event_ids"] == 1


def test_export_decodes_the_whole_state_item(serving: Stack, tiny_model: TinyModel) -> None:
    publish_model(serving, tiny_model)
    post(tracked(1, item="item-3", kind="purchase", quantity=2), tracked(2, item="item-4"))

    body = export("shopper-1")

    state = body["state"]
    assert body["user_id"] == "shopper-1" and body["erasure"] is None
    assert "nextpick export-user" in body["elsewhere"]["event_log"]
    assert state["version"] == 1 and state["processed_event_ids"] == 2
    assert state["model_version"] and len(state["state_vector"]) == tiny_model.state_dim
    assert parse_time(state["updated_at"]) <= datetime.now(UTC)
    assert [(e["item_id"], e["event_type"]) for e in state["recent_events"]] == [
        ("item-3", "purchase"),
        ("item-4", "view"),
    ]
    assert state["purchased"] == ["item-3"]
    items = {entry["item_id"]: entry for entry in state["history"]["items"]}
    assert items["item-3"]["purchases"] == 1 and items["item-3"]["last_purchase"] is not None
    assert items["item-4"]["interactions"] == 1 and items["item-4"]["last_purchase"] is None
    assert export("never-seen")["state"] is None and export("never-seen")["erasure"] is None


@pytest.mark.parametrize("route", ["DELETE /users/{}", "GET /users/{}/data"])
@pytest.mark.parametrize("bad_id", ["bad%20id", "..", "x" * 129, "%2F"])
def test_a_bad_user_id_is_a_422_naming_it_and_writes_nothing(serving: Stack, route: str, bad_id: str) -> None:
    method, path = route.split(" ")
    event = proxy_event(method, path.format("placeholder"))
    event["path"] = path.format(bad_id)
    event["pathParameters"] = {"user_id": bad_id}

    status, body = call(api.lambda_handler, event)

    assert status == 422, body
    assert [e["field"] for e in body["errors"]] == ["user_id"]
    assert boto3.client("dynamodb").scan(TableName=serving.state_table)["Count"] == 0


def test_erasing_an_unknown_shopper_twice_logs_two_tombstones_through_the_shipper(
    serving: Stack, s3: Any, ship: Any
) -> None:
    assert delete("nobody")[0] == delete("nobody")[0] == 200
    assert int(stored_state(serving, "nobody")["version"]["N"]) == 2

    ship()

    records = [json.loads(line) for line in logged_lines(s3, serving)]
    assert [(r["type"], r["user_id"]) for r in records] == [("erasure", "nobody")] * 2


def test_the_tombstone_reaches_the_log_and_the_reader_drops_the_erased_events(
    serving: Stack, s3: Any, ship: Any
) -> None:
    post(tracked(1), tracked(2, user="shopper-2"), tracked(3))
    delete("shopper-1")
    post(tracked(4))  # the returning shopper

    ship()

    lines = logged_lines(s3, serving)
    assert sum(json.loads(line).get("type") == "erasure" for line in lines) == 1
    now = datetime.now(UTC)
    # The retrain's window query (issue 14) over the Parquet objects the stream wrote.
    records = read_window_duckdb(
        s3, serving.model_bucket, "events/", now - timedelta(days=1), now + timedelta(hours=1)
    )
    assert sorted(r.event_id for r in records) == ["evt-shopper-1-4", "evt-shopper-2-2"]


def test_an_event_write_that_loses_the_race_to_an_erasure_is_stamped_after_it(
    serving: Stack, tiny_model: TinyModel
) -> None:
    """The event read the state before the erasure, its conditional write lost, it re-read the marker:
    its log record must be received after `erased_at`, or the tombstone rule would erase it."""
    post(tracked(1))
    repo = DynamoDbStateRepository(get_settings().state_table_name)
    eraser = PrivacyRequests(DynamoDbStateRepository(get_settings().state_table_name))
    erasures: list[Erasure] = []
    loads = repo.load

    def load_then_erase(user_id: str) -> Any:
        state = loads(user_id)
        if not erasures:
            erasures.append(eraser.erase(user_id).erasure)
        return state

    recommender = Recommender(states=repo, models=wiring.model_source(), catalog=wiring.catalog())
    repo.load = load_then_erase  # type: ignore[method-assign]

    recommender.ingest([TrackedEvent.model_validate(tracked(2))])

    state = stored_state(serving, "shopper-1")
    (line,) = [json.loads(entry["S"]) for entry in state["outbox"]["L"]]
    assert line["event_id"] == "evt-shopper-1-2"
    assert parse_time(line["received_at"]) > erasures[0].erased_at
