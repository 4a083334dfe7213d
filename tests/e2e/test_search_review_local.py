"""Search and review events over real HTTP on the local stack (`nextpick serve`): a shopper's page sends
them with the shopper's own token; the search is resolved against the demo catalog and stored, the
review's text is exported, and a bad one is a 422 naming the field."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.slow

USER = f"e2e-search-{uuid.uuid4().hex[:8]}"


def shopper_event(event_type: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"evt-{uuid.uuid4().hex}",
        "user_id": USER,
        "event_type": event_type,
        "timestamp": datetime.now(UTC).isoformat(),
        **fields,
    }


def test_search_and_review_over_http(local_stack: LocalStack) -> None:
    token = local_stack.shopper_token(USER)
    status, body = local_stack.request(
        "POST", "/events?k=5", shopper_event("search", query="coffee beans"), credential=token
    )
    assert status == 200 and body["status"] == "accepted", body
    assert len(body["recommendations"]) == 5
    status, data = local_stack.request("GET", f"/users/{USER}/data")
    assert status == 200, data
    recent = data["state"]["recent_events"]
    (record,) = data["state"]["last_write_events"]
    assert record["query"] == "coffee beans" and 1 <= len(record["matched_items"]) <= 5
    # The stored resolution is what was folded: one view of 1/M' per matched item.
    assert [(e["item_id"], e["event_type"]) for e in recent] == [(i, "view") for i in record["matched_items"]]
    assert {e["strength"] for e in recent} == {1 / len(record["matched_items"])}

    item = record["matched_items"][0]
    text = "Rich and smooth.\nWould buy again ☕"
    review = shopper_event("review", item_id=item, rating=5, text=text)
    status, body = local_stack.request("POST", "/events", review, credential=token)
    assert status == 200 and body["status"] == "accepted", body
    _, data = local_stack.request("GET", f"/users/{USER}/data")
    assert data["state"]["last_write_events"][0]["text"] == text
    assert data["state"]["recent_events"][-1] == {"item_id": item, "event_type": "rate", "strength": 1.0}

    status, body = local_stack.request("POST", "/events", shopper_event("search"), credential=token)
    assert status == 422 and "query" in body["message"], body
