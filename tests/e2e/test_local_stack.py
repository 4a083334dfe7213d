"""End to end: the local stack started as the README does, spoken to over real HTTP only (plus a look
into the stand-in's S3 to see the event log)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from nextpick_local.demo.demo_shop import PERSONAS, Persona
from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.slow

USER = f"e2e-{uuid.uuid4().hex[:8]}"


def event(event_type: str = "view", item_id: str = "coffee-0003", **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"evt-{uuid.uuid4().hex}",
        "user_id": USER,
        "item_id": item_id,
        "event_type": event_type,
        "timestamp": datetime.now(UTC).isoformat(),
        **fields,
    }


def test_posting_an_event_answers_with_fresh_recommendations(local_stack: LocalStack) -> None:
    status, body = local_stack.request("POST", "/events?k=5", event())

    assert status == 200, body
    assert body["status"] == "accepted"
    assert body["model_version"]
    assert len(body["recommendations"]) == 5


def test_recommendations_for_a_demo_shopper(local_stack: LocalStack) -> None:
    status, body = local_stack.request("GET", "/users/alice/recommendations?k=4")

    assert status == 200, body
    assert body["model_version"]
    assert len(body["recommendations"]) == 4


@pytest.mark.parametrize("persona", PERSONAS, ids=lambda p: p.user_id)
def test_the_demo_shoppers_recommendations_follow_their_tastes(
    local_stack: LocalStack, persona: Persona
) -> None:
    _, body = local_stack.request("GET", f"/users/{persona.user_id}/recommendations?k=10")

    categories = [r["item_id"].rsplit("-", 1)[0] for r in body["recommendations"]]
    assert sum(c in persona.categories for c in categories) >= 5, categories


def test_the_deployed_url_shape_with_the_stage_works_too(local_stack: LocalStack) -> None:
    status, body = local_stack.request("GET", f"/prod/users/{USER}/recommendations?k=2")

    assert status == 200, body
    assert len(body["recommendations"]) == 2


def test_an_item_put_out_of_stock_disappears(local_stack: LocalStack) -> None:
    _, before = local_stack.request("GET", f"/users/{USER}/recommendations?k=10")
    top = before["recommendations"][0]["item_id"]
    category = top.rsplit("-", 1)[0]

    status, body = local_stack.request(
        "PUT", f"/items/{top}", {"category": category, "price": 9.5, "stock": 0}
    )
    assert status == 200, body

    _, after = local_stack.request("GET", f"/users/{USER}/recommendations?k=10")
    assert top not in [r["item_id"] for r in after["recommendations"]]


def test_a_batch_repeating_an_event_reports_it_duplicate(local_stack: LocalStack) -> None:
    first = event("add_to_cart", quantity=1)
    local_stack.request("POST", "/events", first)

    status, body = local_stack.request("POST", "/events", {"events": [first, event("view", "tea-0002")]})

    assert status == 200, body
    assert [r["status"] for r in body["results"]] == ["duplicate", "accepted"]


def test_an_unknown_event_type_is_a_422_naming_the_field(local_stack: LocalStack) -> None:
    status, body = local_stack.request("POST", "/events", event("teleport"))

    assert status == 422
    assert "event_type" in [e["field"] for e in body["errors"]]


@pytest.mark.parametrize("key", [None, "not-the-key"])
def test_without_a_valid_api_key_api_gateway_answers_403(local_stack: LocalStack, key: str | None) -> None:
    status, body = local_stack.request("GET", f"/users/{USER}/recommendations", api_key=key)

    assert (status, body) == (403, {"message": "Forbidden"})


def test_an_unknown_path_is_a_missing_authentication_token(local_stack: LocalStack) -> None:
    assert local_stack.request("GET", "/nothing/here") == (403, {"message": "Missing Authentication Token"})


def client(local_stack: LocalStack, service: str) -> Any:
    """A boto3 client on the stack's AWS stand-in (moto), to look at what the API cannot show."""
    return boto3.client(  # type: ignore[call-overload]
        service,
        endpoint_url=local_stack.state["endpoint_url"],
        region_name=local_stack.state["region"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def in_event_log(local_stack: LocalStack, event_id: str, within_seconds: float = 30) -> bool:
    """Whether the event reaches the S3 event log (today's Firehose partition) in time."""
    s3 = client(local_stack, "s3")
    bucket = local_stack.state["resources"]["ModelBucket"]
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        time.sleep(1)
        today = datetime.now(UTC).strftime("events/year=%Y/month=%m/day=%d/")
        for entry in s3.list_objects_v2(Bucket=bucket, Prefix=today).get("Contents", []):
            if event_id.encode() in s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read():
                return True
    return False


def test_an_accepted_event_is_shipped_to_the_event_log(local_stack: LocalStack) -> None:
    tracked = event("purchase", quantity=1, price=12.5)

    status, _ = local_stack.request("POST", "/events", tracked)

    assert status == 200
    assert in_event_log(local_stack, tracked["event_id"]), "the event never reached the S3 event log"


def test_an_event_put_on_the_bus_reaches_the_bus_function(local_stack: LocalStack) -> None:
    tracked = event("view", "books-0007")
    entry = {"Source": "nextpick.shop", "DetailType": "ShopperEvent", "Detail": tracked}

    status, body = local_stack.request("POST", "/_local/bus", entry)

    assert status == 200 and body["FailedEntryCount"] == 0, body
    # Tracked by BusEventFunction, it is in the user's state, hence on the stream, hence in the log.
    assert in_event_log(local_stack, tracked["event_id"]), "the bus event was never tracked"


def test_a_retrain_on_demand_records_its_decision_and_recommendations_survive(
    local_stack: LocalStack,
) -> None:
    _, live = local_stack.request("GET", "/model")

    status, run = local_stack.request("POST", "/_local/retrain", timeout=300)

    assert status == 200, run
    assert run["status"] in ("published", "rejected"), run
    assert run["run_key"] and run["live_version"] == live["model_version"]
    _, report = local_stack.request("GET", "/_local/status")
    assert report["last_retrain"]["status"] == run["status"]
    status, body = local_stack.request("GET", f"/users/{USER}/recommendations?k=5")
    assert status == 200
    assert body["model_version"] in (live["model_version"], run["published_version"])
    assert len(body["recommendations"]) == 5


def test_a_bus_event_the_function_keeps_refusing_lands_in_the_dead_letter_queue(
    local_stack: LocalStack,
) -> None:
    invalid = event("teleport")
    entry = {"Source": "nextpick.shop", "DetailType": "ShopperEvent", "Detail": invalid}

    status, _ = local_stack.request("POST", "/_local/bus", entry)

    assert status == 200
    sqs = client(local_stack, "sqs")
    queue_url = local_stack.state["resources"]["BusDeadLetterQueue"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", []):
            record = json.loads(message["Body"])
            if record["requestPayload"]["detail"]["event_id"] == invalid["event_id"]:
                # After Lambda's asynchronous retries (the template's EventInvokeConfig).
                assert record["requestContext"]["condition"] == "RetriesExhausted"
                assert record["requestContext"]["approximateInvokeCount"] == 3
                return
    pytest.fail("the refused bus event never reached the dead-letter queue")
