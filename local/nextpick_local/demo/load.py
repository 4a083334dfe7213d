"""`nextpick serve --demo`: the demo shop into a freshly started stack, then the first model, then the
named shoppers' live timelines (seed.py says which path each part takes)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from nextpick.settings import get_settings
from nextpick_local.demo import demo_shop, seed
from nextpick_local.progress import Step
from nextpick_local.standin.dispatch import Scheduler
from nextpick_local.standin.gateway import ApiGateway
from nextpick_local.standin.stack import LocalStack

# Small enough to train in seconds on a laptop; a local override of RetrainFunction's HYPERPARAMETERS.
DEMO_HYPERPARAMETERS = {"embedding_dim": 32, "hidden_dim": 64, "epochs": 8, "batch_size": 256}
DEMO_SHOP = demo_shop.DemoConfig(items=2000, shoppers=500)
# The template's EventLogStream Prefix: Hive partitions by arrival day, which the window query reads.
EVENT_LOG_PREFIX = "events/year=!{timestamp:yyyy}/month=!{timestamp:MM}/day=!{timestamp:dd}/"
# A warm-up batch answered 5xx (the stand-in too slow for the function's budget on a busy machine) is
# sent again: events carry ids, so a batch that was stored after all comes back as duplicates.
WARM_UP_ATTEMPTS = 4
WARM_UP_BACKOFF_SECONDS = 2.0


class DemoLoadError(RuntimeError):
    """A step of the demo load failed; `step` names it (the message is one line)."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step


@dataclass(frozen=True)
class Retrying:
    """Sends one warm-up batch through the gateway, again after a 5xx, with a growing pause."""

    send: Callable[[bytes], tuple[int, bytes]]
    attempts: int = WARM_UP_ATTEMPTS
    backoff_seconds: float = WARM_UP_BACKOFF_SECONDS

    def __call__(self, body: bytes) -> tuple[int, bytes]:
        status, answer = 0, b""
        for attempt in range(1, self.attempts + 1):
            status, answer = self.send(body)
            if status < 500:
                return status, answer
            if attempt < self.attempts:
                time.sleep(self.backoff_seconds * attempt)
        return status, answer


def load_demo(
    stack: LocalStack,
    gateway: ApiGateway,
    keys: tuple[str, str],
    scheduler: Scheduler,
    shop_seed: int,
    console: TextIO,
) -> None:
    """`keys`: (server key, admin key): the events go with the first, the rule set with the second."""
    server_key, admin_key = keys
    resources = stack.resources
    shop = demo_shop.generate(
        demo_shop.DemoConfig(seed=shop_seed, items=DEMO_SHOP.items, shoppers=DEMO_SHOP.shoppers)
    )
    print(
        f"nextpick: demo shop: {len(shop.items)} products, {len(shop.shoppers)} shoppers, "
        f"{len(shop.history)} past events",
        file=console,
        flush=True,
    )
    seed.load_catalog(resources.items_table, shop.items)
    seed.write_event_log(
        stack.client("s3"), resources.model_bucket, resources.event_log_stream, EVENT_LOG_PREFIX, shop.history
    )
    with Step("first model (RetrainStateMachine, scheduled execution)", console):
        result: dict[str, Any] = scheduler.fire()
    print(f"  retrain: {result.get('status')}: {result.get('reason')}", file=console, flush=True)

    def check(status_code: int, body: bytes) -> None:
        if status_code != 200:
            raise DemoLoadError(
                "warming the demo shoppers",
                f"POST /events answered {status_code} {body[:200].decode(errors='replace')}",
            )

    # The handler's own per-request limit (MAX_BATCH_EVENTS), as the function environment sets it.
    batch_size = get_settings().max_batch_events
    send = Retrying(lambda body: seed.post_events(gateway, server_key, body))
    seed.send_live_events(send, shop.live_events, batch_size, check)

    name = demo_shop.STOREFRONT_RULE_SET
    status, body = seed.put_rule_set(gateway, admin_key, name, demo_shop.storefront_rules(shop.items))
    if status != 200:
        raise DemoLoadError(
            "storing the storefront's rule set", f"PUT /rule-sets/{name} answered {status} {body[:200]!r}"
        )
