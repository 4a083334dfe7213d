"""`nextpick ab-traffic`: simulated shoppers on a running local stack, so an A/B experiment has traffic
to report on (docs/variants.md, "A demo with two variants").

Each shopper (the demo shop's `shopper-NNNN`, so every variant gets shoppers with a trained history)
views an item through `POST /events`, whose answer is that shopper's variant's list (an impression);
the shopper then clicks one of the first five picks with a probability that falls with the position
(25 % at the top, x0.8 per place) and buys a clicked item one time in four. Clicks and purchases
cite the answer's `recommendation_id` when the event model has that field (issue 13's attribution).
The behaviour is the same whichever variant answered: the split, not the simulation, makes the
variants' numbers differ, so the report's intervals should overlap (an A/A check of the pipeline).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from nextpick.domain.events import TrackedEvent

# Position-dependent click model: P(click at position p) = TOP_CLICK * DECAY**p for p < CLICK_DEPTH.
TOP_CLICK, DECAY, CLICK_DEPTH, BUY_AFTER_CLICK = 0.25, 0.8, 5, 0.25
CITES_RECOMMENDATION = "recommendation_id" in TrackedEvent.model_fields

Post = Callable[[str, Any], tuple[int, Any]]


@dataclass
class TrafficSummary:
    answers: Counter[str] = field(default_factory=Counter)
    clicks: Counter[str] = field(default_factory=Counter)
    purchases: Counter[str] = field(default_factory=Counter)
    errors: int = 0

    def describe(self) -> str:
        lines = [f"{'variant':<14} {'answers':>8} {'clicks':>7} {'purchases':>9}"]
        for variant in sorted(self.answers):
            lines.append(
                f"{variant:<14} {self.answers[variant]:>8} {self.clicks[variant]:>7} {self.purchases[variant]:>9}"
            )
        lines.append(f"errors: {self.errors}; events cite recommendation_id: {CITES_RECOMMENDATION}")
        return "\n".join(lines)


def _event(n: str, user: str, item: str, kind: str, recommendation_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": f"ab-{n}",
        "user_id": user,
        "item_id": item,
        "event_type": kind,
        "timestamp": datetime.now(UTC).isoformat(),
    }
    if recommendation_id and CITES_RECOMMENDATION:
        body["recommendation_id"] = recommendation_id
    return body


def run_traffic(post: Post, items: list[str], shoppers: int, seed: int) -> TrafficSummary:
    """One visit per shopper: a view (answered with picks), maybe a click, maybe a purchase."""
    rng = random.Random(seed)
    summary = TrafficSummary()
    run = f"{seed}-{rng.getrandbits(32):08x}"
    for number in range(1, shoppers + 1):
        user = f"shopper-{number:04d}"
        status, answer = post(
            "/events", _event(f"{run}-{number}-view", user, rng.choice(items), "view", None)
        )
        if status != 200 or not isinstance(answer, dict):
            summary.errors += 1
            continue
        variant = str(answer.get("variant", "control"))
        summary.answers[variant] += 1
        picks = [r["item_id"] for r in answer.get("recommendations", [])][:CLICK_DEPTH]
        clicked = next((p for i, p in enumerate(picks) if rng.random() < TOP_CLICK * DECAY**i), None)
        if clicked is None:
            continue
        rid = answer.get("recommendation_id")
        status, _ = post("/events", _event(f"{run}-{number}-click", user, clicked, "click", rid))
        summary.clicks[variant] += status == 200
        summary.errors += status != 200
        if rng.random() < BUY_AFTER_CLICK:
            status, _ = post("/events", _event(f"{run}-{number}-buy", user, clicked, "purchase", rid))
            summary.purchases[variant] += status == 200
            summary.errors += status != 200
    return summary
