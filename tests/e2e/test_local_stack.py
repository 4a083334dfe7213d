"""End to end: the local stack started as the README does, spoken to over real HTTP only (plus a look
into the stand-in's S3 to see the event log). Calls carry the server key unless a test says otherwise;
the scopes (docs/security.md) are checked here over real HTTP too."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from nextpick.domain.credentials import mint_shopper_token
from nextpick_local.demo.demo_shop import PERSONAS, Persona
from nextpick_training.parquet_log import json_lines_of
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
    # As a shop's page sends it: with the shopper's own token.
    status, body = local_stack.request(
        "POST", "/events?k=5", event(), credential=local_stack.shopper_token(USER)
    )

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
        "PUT",
        f"/items/{top}",
        {"category": category, "price": 9.5, "stock": 0},
        credential=local_stack.admin_key,
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


def forged_credentials(local_stack: LocalStack) -> dict[str, str]:
    return {
        "a made-up server key": "nps_" + "A" * 43,
        "a token signed with another key": mint_shopper_token(
            "npt_not-this-stacks-signing-key-0123456789", USER
        ),
        "an expired token": local_stack.shopper_token(USER, ttl_seconds=-120),
        "the token signing key": str(local_stack.state["token_signing_key"]),
    }


def test_without_a_credential_api_gateway_answers_401(local_stack: LocalStack) -> None:
    status, body = local_stack.request("GET", f"/users/{USER}/recommendations", anonymous=True)

    assert status == 401 and body["message"].startswith("unauthorized: send Authorization: Bearer"), body


def test_a_forged_or_expired_credential_is_401(local_stack: LocalStack) -> None:
    for name, credential in forged_credentials(local_stack).items():
        status, body = local_stack.request("GET", f"/users/{USER}/recommendations", credential=credential)

        assert status == 401 and body["message"].startswith("unauthorized"), (name, body)


@pytest.mark.parametrize(
    ("who", "method", "path"),
    [
        ("shopper", "GET", "/users/someone-else/recommendations"),
        ("shopper", "GET", "/model"),
        ("shopper", "PUT", "/items/coffee-0001"),
        ("server", "PUT", "/items/coffee-0001"),
        ("admin", "GET", f"/users/{USER}/recommendations"),
    ],
)
def test_a_credential_outside_its_scope_is_403(
    local_stack: LocalStack, who: str, method: str, path: str
) -> None:
    credential = {
        "shopper": local_stack.shopper_token(USER),
        "server": local_stack.server_key,
        "admin": local_stack.admin_key,
    }[who]
    body = {"category": "coffee", "price": 1.0, "stock": 0} if method == "PUT" else None

    status, answer = local_stack.request(method, path, body, credential=credential)

    assert status == 403 and answer["message"].startswith("forbidden"), answer


def test_a_shopper_token_cannot_send_another_shoppers_event(local_stack: LocalStack) -> None:
    someone_else = dict(event(), user_id="someone-else")

    status, body = local_stack.request(
        "POST", "/events", someone_else, credential=local_stack.shopper_token(USER)
    )

    assert status == 403
    assert body["errors"] == [{"field": "user_id", "message": "is not the user this token is for"}]


def test_the_storefronts_token_route_mints_a_token_bound_to_the_user(local_stack: LocalStack) -> None:
    status, minted = local_stack.request("POST", "/_local/shopper-token", {"user_id": USER}, anonymous=True)

    assert status == 200 and minted["user_id"] == USER and minted["expires_in"] == 900, minted
    token = minted["token"]
    assert local_stack.request("GET", f"/users/{USER}/recommendations", credential=token)[0] == 200
    assert local_stack.request("GET", "/users/alice/recommendations", credential=token)[0] == 403
    status, refused = local_stack.request("POST", "/_local/shopper-token", {"user_id": "a/b"}, anonymous=True)
    assert status == 400 and refused["errors"][0]["field"] == "user_id", refused


def test_the_storefronts_model_route_answers_what_get_model_answers(local_stack: LocalStack) -> None:
    status, local = local_stack.request("GET", "/_local/model", anonymous=True)
    _, model = local_stack.request("GET", "/model", credential=local_stack.admin_key)

    assert status == 200 and local["model_version"] == model["model_version"], local


def test_the_credentials_command_prints_the_keys_of_the_state_file(local_stack: LocalStack) -> None:
    nextpick = str(Path(sys.executable).parent / "nextpick")
    state = ["--state-file", str(local_stack.state_file)]

    shown = subprocess.run(
        [nextpick, "credentials", "--json", *state], capture_output=True, text=True, timeout=60
    )
    token = subprocess.run(
        [nextpick, "shopper-token", USER, *state], capture_output=True, text=True, timeout=60
    )

    assert shown.returncode == 0, shown.stderr
    keys = json.loads(shown.stdout)
    assert keys["server_key"] == local_stack.server_key and keys["admin_key"] == local_stack.admin_key
    assert token.returncode == 0, token.stderr
    credential = token.stdout.strip()
    assert local_stack.request("GET", f"/users/{USER}/recommendations", credential=credential)[0] == 200


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
            body = json_lines_of(s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read())
            if event_id.encode() in body:
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
