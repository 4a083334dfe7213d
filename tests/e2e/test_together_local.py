"""End to end over real HTTP: bought together and cart completion on the local stack, whose startup
retrain publishes the demo shop's bought_together.npz beside its model (docs/bought-together.md)."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.slow

USER = f"e2e-cart-{uuid.uuid4().hex[:8]}"


def test_an_item_page_and_a_cart_are_completed_over_http(local_stack: LocalStack) -> None:
    token = local_stack.shopper_token(USER)
    _, model = local_stack.request("GET", "/model")
    # A product the demo shoppers buy: its partners come from the model's table.
    status, page = local_stack.request("GET", "/items/coffee-0003/bought-together?k=5", credential=token)
    assert status == 200, page
    assert page["item_id"] == "coffee-0003" and page["source"] in ("model", "fallback")
    assert page["model_version"] == model["model_version"]
    assert 0 < len(page["items"]) <= 5 and "coffee-0003" not in [i["item_id"] for i in page["items"]]

    cart = ["coffee-0003", page["items"][0]["item_id"]]
    status, body = local_stack.request(
        "POST", "/recommendations/cart?k=5", {"items": cart, "user_id": USER}, credential=token
    )
    assert status == 200, body
    assert body["user_id"] == USER and body["model_status"] == "live"
    picks = [r["item_id"] for r in body["recommendations"]]
    assert len(picks) == 5 and not set(cart) & set(picks)
    # Nothing was written: the shopper still has no data.
    status, data = local_stack.request("GET", f"/users/{USER}/data")
    assert status == 200 and data["state"] is None, data

    status, body = local_stack.request(
        "POST", "/recommendations/cart", {"items": cart, "user_id": "someone-else"}, credential=token
    )
    assert status == 403 and "user_id" in body["message"], body
    status, body = local_stack.request("GET", "/items/no-such-product/bought-together")
    assert status == 404 and "item_id" in body["message"], body
