"""Demo traffic for `nextpick report` (docs/attribution.md, "A demo run"): simulated shoppers browse a
running local stack through the public API as a shop's server would, and act on the picks they are
shown, citing each answer's `recommendation_id`.

    python -m nextpick_local.demo.traffic --sessions 400 [--seed 13]
    nextpick report

Each session is a shopper: a shopper of the demo's history (`nextpick serve --demo`'s default seed)
with the tastes that history was generated from, or a new visitor with one or two favourite
categories. They ask for their picks (GET /users/{id}/recommendations), open each pick with
probability CLICK_LIKED if it is in a favourite category, else CLICK_OTHER (a `click` citing the list;
its POST /events answer is a new list, a new impression), add an opened pick to the cart with
probability CART and buy what is in the cart with probability BUY, the purchase citing nothing: the
checkout does not know the list, the report's carry-over rule attributes it. Deterministic per seed,
apart from what the model answers."""

from __future__ import annotations

import argparse
import random
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nextpick_local.demo.demo_shop import Shopper, generate
from nextpick_local.demo.load import DEMO_SHOP
from nextpick_local.http_client import JsonClient
from nextpick_local.ops.target import local_state

CLICK_LIKED = 0.3
CLICK_OTHER = 0.04
CART = 0.5
BUY = 0.6
PICKS = 10
RETURNING = 0.5  # share of sessions by a shopper of the demo's history


def _event(user: str, item: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"traffic-{uuid.uuid4().hex}",
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "timestamp": datetime.now(UTC).isoformat(),
        **fields,
    }


class Traffic:
    def __init__(
        self, api: JsonClient, catalog: list[dict[str, Any]], rng: random.Random, shoppers: list[Shopper]
    ) -> None:
        self.api = api
        # The demo history's shoppers, with the tastes their history was generated from.
        self.shoppers = shoppers
        self.rng = rng
        self.catalog = {item["item_id"]: item for item in catalog}
        self.categories = sorted({item["category"] for item in catalog})
        self.counts = {"sessions": 0, "answers": 0, "clicks": 0, "carts": 0, "purchases": 0}

    def _post(self, event: dict[str, Any]) -> dict[str, Any]:
        status, body = self.api.request("POST", "/events", event, query={"k": str(PICKS)})
        if status != 200:
            raise RuntimeError(f"POST /events answered {status}: {body}")
        self.counts["answers"] += 1
        return dict(body)

    def session(self, number: int) -> None:
        rng = self.rng
        if rng.random() < RETURNING and self.shoppers:
            shopper = rng.choice(self.shoppers)
            user, liked = shopper.user_id, set(shopper.tastes)
        else:
            user, liked = f"visitor-{number:05d}", set(rng.sample(self.categories, rng.choice((1, 2))))
        status, answer = self.api.request("GET", f"/users/{user}/recommendations", query={"k": str(PICKS)})
        if status != 200:
            raise RuntimeError(f"GET recommendations answered {status}: {answer}")
        self.counts["sessions"] += 1
        self.counts["answers"] += 1
        cart: list[str] = []
        for pick in list(answer["recommendations"]):
            item = self.catalog.get(pick["item_id"])
            chance = CLICK_LIKED if item is not None and item["category"] in liked else CLICK_OTHER
            if rng.random() >= chance:
                continue
            self._post(_event(user, pick["item_id"], "click", recommendation_id=answer["recommendation_id"]))
            self.counts["clicks"] += 1
            if rng.random() < CART:
                self._post(_event(user, pick["item_id"], "add_to_cart", quantity=1))
                self.counts["carts"] += 1
                cart.append(pick["item_id"])
        for item_id in cart:
            if rng.random() < BUY:
                price = float(self.catalog[item_id]["price"])
                self._post(_event(user, item_id, "purchase", quantity=1, price=price))
                self.counts["purchases"] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nextpick_local.demo.traffic", description=__doc__)
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--state-file", type=Path)
    args = parser.parse_args(argv)
    state = local_state(args.state_file)
    api = JsonClient(state["api_url"], state["server_key"])
    status, catalog = JsonClient(state["api_url"], None).request("GET", "/_local/catalog")
    if status != 200:
        raise SystemExit(f"GET /_local/catalog answered {status}")
    shoppers = generate(DEMO_SHOP).shoppers  # `nextpick serve --demo`'s shop (its default seed)
    traffic = Traffic(api, catalog["items"], random.Random(args.seed), shoppers)
    for number in range(args.sessions):
        traffic.session(number)
    print(" ".join(f"{key} {value}" for key, value in traffic.counts.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
