"""End to end over real HTTP: a product page's "similar items" on the local stack's demo shop, from the
model the stack trained at start (docs/similar.md)."""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.slow

ITEM = "coffee-0003"


def test_a_product_pages_similar_items_come_from_the_model_and_share_its_aisle(
    local_stack: LocalStack,
) -> None:
    # As a shop's page asks: with a shopper's own token.
    token = local_stack.shopper_token(f"e2e-{uuid.uuid4().hex[:8]}")
    status, body = local_stack.request("GET", f"/items/{ITEM}/similar?k=5", credential=token)

    assert status == 200, body
    assert body["item_id"] == ITEM and body["source"] == "model" and body["model_version"]
    neighbours = [item["item_id"] for item in body["items"]]
    assert len(neighbours) == 5 and ITEM not in neighbours
    # The demo shop's aisles (demo_shop.py): shoppers move along an aisle, so the model learns it.
    assert sum(n.rsplit("-", 1)[0] == "coffee" for n in neighbours) >= 3, neighbours


def test_an_item_the_shop_does_not_sell_is_404(local_stack: LocalStack) -> None:
    status, body = local_stack.request("GET", "/items/no-such-item/similar")

    assert status == 404 and "item_id" in body["message"], body
