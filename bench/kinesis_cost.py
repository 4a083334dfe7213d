"""The Kinesis path's state writes per event and cost per million events, next to the API and the bus
(issue 15, docs/kinesis.md quotes it).

    .venv/bin/python -m bench.kinesis_cost

The template's stack in moto (in process) and a real 1,000-item LiteRT model (bench.models). Every
shopper is first brought to a steady history (200 events, the processed-keys window), then batches of
1, 10 and 100 single-event records go through `nextpick.handlers.stream_events.lambda_handler`, either
all of one hot shopper or one record per shopper (spread). The state table's client is wrapped to
count GetItem/PutItem and to size each item read and written by DynamoDB's rules (bench.cost), so WRU
and RRU per event are those of the real items, outboxes included. The same is done for one event
through the API handler (`POST /events`, with ranking) and the bus handler (ShopperEvent).

Lambda duration is the handler's CPU time outside the AWS calls (process time, moto's own work
excluded) scaled to the 1024 MB function's share of a vCPU, plus bench.cost's assumed 10 ms of
round trips per user write (GetItem + conditional PutItem). Prices are bench.cost.PRICES."""

from __future__ import annotations

import base64
import copy
import json
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench import models
from bench.common import BenchLambdaContext, fmt, table
from bench.cost import (
    ASSUMED_DYNAMODB_ROUND_TRIPS_MS,
    ASSUMED_LOG_BYTES_PER_INVOCATION,
    FULL_VCPU_MB,
    GB,
    PRICES,
    item_size,
    write_units,
)

EVENTS_DIR = Path(__file__).resolve().parents[1] / "events"
NUM_ITEMS = 1_000
HISTORY = 200
BATCH_SIZES = (1, 10, 100)
ROUNDS = 3
MEMORY_MB = 1024
# Kinesis on-demand bills ingestion and retrieval per GB with every record rounded up to 1 KB.
KINESIS_RECORD_ROUNDING = 1024


class CountingClient:
    """The state table's client, counting calls, sizing items, and timing the CPU spent inside calls."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: Counter[str] = Counter()
        self.read_units = 0
        self.write_units = 0
        self.inside_cpu_s = 0.0

    def reset(self) -> None:
        self.calls.clear()
        self.read_units = self.write_units = 0
        self.inside_cpu_s = 0.0

    def __getattr__(self, operation: str) -> Any:
        def call(**kwargs: Any) -> Any:
            started = time.process_time()
            try:
                response = getattr(self._client, operation)(**kwargs)
            finally:
                self.inside_cpu_s += time.process_time() - started
            self.calls[operation] += 1
            if operation == "get_item":
                # Strongly consistent: 1 RRU per started 4 KB; a missing item still costs one.
                self.read_units += max(1, math.ceil(item_size(response.get("Item", {})) / 4096))
            if operation == "put_item":
                self.write_units += write_units(item_size(kwargs["Item"]))
            return response

        return call


@dataclass(frozen=True)
class Measured:
    path: str
    events: int
    invocations: int
    writes: int
    reads: int
    write_units: int
    read_units: int
    cpu_ms: float  # outside AWS calls, all invocations

    def per_event(self, value: float) -> float:
        return value / self.events

    @property
    def duration_ms_per_invocation(self) -> float:
        cpu = self.cpu_ms / self.invocations * FULL_VCPU_MB / MEMORY_MB
        return cpu + ASSUMED_DYNAMODB_ROUND_TRIPS_MS * self.writes / self.invocations


def _event(user: str, n: int, now: datetime) -> dict[str, Any]:
    return {
        "event_id": f"{user}-{n}",
        "user_id": user,
        "item_id": f"item-{(n * 7919) % NUM_ITEMS}",
        "event_type": "view" if n % 5 else "add_to_cart",
        "timestamp": (now - timedelta(seconds=10_000 - n)).isoformat(),
        "session_id": "sess-1",
    }


class KinesisBatches:
    def __init__(self) -> None:
        self.sequence = 10**20

    def of(self, payloads: list[dict[str, Any]]) -> dict[str, Any]:
        records = []
        for payload in payloads:
            self.sequence += 1
            records.append(
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": payload["user_id"],
                        "sequenceNumber": str(self.sequence),
                        "data": base64.b64encode(json.dumps(payload).encode()).decode(),
                        "approximateArrivalTimestamp": time.time(),
                    },
                    "eventSource": "aws:kinesis",
                    "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/bench",
                }
            )
        return {"Records": records}


def _run(path: str, calls: list[tuple[Any, dict[str, Any]]], spy: CountingClient, events: int) -> Measured:
    spy.reset()
    started = time.process_time()
    for handler, event in calls:
        handler(event, BenchLambdaContext())
    cpu_s = time.process_time() - started - spy.inside_cpu_s
    return Measured(
        path,
        events,
        len(calls),
        spy.calls["put_item"],
        spy.calls["get_item"],
        spy.write_units,
        spy.read_units,
        cpu_s * 1000,
    )


@dataclass
class Shop:
    """Event ids and Kinesis batches for the shoppers of one run; `spy` is the state table's client."""

    spy: CountingClient
    now: datetime
    batches: KinesisBatches
    counters: Counter[str]

    def next_events(self, user: str, count: int) -> list[dict[str, Any]]:
        start = self.counters[user]
        self.counters[user] += count
        return [_event(user, n, self.now) for n in range(start, start + count)]

    def batch(self, users: list[str], size: int) -> dict[str, Any]:
        """`size` records of one hot shopper, or one record of each of `users`."""
        if len(users) == 1:
            return self.batches.of(self.next_events(users[0], size))
        return self.batches.of([self.next_events(user, 1)[0] for user in users])

    def warm(self, handler: Any, users: list[str]) -> None:
        for user in users:  # a steady history, in hot batches of 100
            for _ in range(HISTORY // 100):
                handler(self.batches.of(self.next_events(user, 100)), BenchLambdaContext())


def _kinesis(shop: Shop, handler: Any) -> list[Measured]:
    results = []
    for size in BATCH_SIZES:
        hot = [f"hot-{size}"]
        spread = [f"spread-{size}-{n}" for n in range(size)]
        shop.warm(handler, hot + spread)
        for label, users in (("hot shopper", hot), ("spread shoppers", spread)):
            _run("warm-up", [(handler, shop.batch(users, size))], shop.spy, size)
            calls = [(handler, shop.batch(users, size)) for _ in range(ROUNDS)]
            results.append(_run(f"Kinesis, batch {size}, {label}", calls, shop.spy, size * ROUNDS))
    return results


def _single_events(shop: Shop, stream: Any, api: Any, bus: Any) -> list[Measured]:
    api_sample = json.loads((EVENTS_DIR / "api_post_event.json").read_text())
    bus_sample = json.loads((EVENTS_DIR / "bus_shopper_event.json").read_text())

    def on_bus(user: str) -> tuple[Any, dict[str, Any]]:
        event = copy.deepcopy(bus_sample)
        event["detail"] = shop.next_events(user, 1)[0]
        return bus, event

    def on_api(user: str) -> tuple[Any, dict[str, Any]]:
        event = copy.deepcopy(api_sample)
        event["body"] = json.dumps(shop.next_events(user, 1)[0])
        return api, event

    single = [f"single-{n}" for n in range(20)]
    shop.warm(stream, single)
    # One single-event write per shopper first, so the items read carry a one-event outbox (the
    # steady state of these paths), not the warm-up's hundred.
    _run("warm-up", [on_bus(user) for user in single], shop.spy, len(single))
    api_calls = [on_api(user) for user in single[:10]]
    bus_calls = [on_bus(user) for user in single[10:]]
    return [
        _run("API (POST /events, one event)", api_calls, shop.spy, len(api_calls)),
        _run("bus (ShopperEvent, one event)", bus_calls, shop.spy, len(bus_calls)),
    ]


def measure() -> list[Measured]:
    os.environ.update(
        AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench"
    )
    from moto import mock_aws

    models.ensure_models((NUM_ITEMS,))
    with mock_aws():
        import boto3

        from nextpick.adapters import LazyClient
        from nextpick.adapters.litert_model import LiteRTModel
        from nextpick.adapters.memory import StaticModelSource
        from nextpick.handlers import api, bus, stream_events, wiring
        from nextpick_local.standin.aws_resources import create_stack

        stack = create_stack("bench-kinesis")
        for function in ("ApiFunction", "BusEventFunction", "StreamEventFunction"):
            os.environ.update(stack.env(function))
        os.environ.update(POWERTOOLS_LOG_LEVEL="WARNING")
        wiring.reset()
        recommender = wiring.recommender()
        recommender.models = StaticModelSource(LiteRTModel(*models.load(NUM_ITEMS)))
        spy = CountingClient(boto3.client("dynamodb"))
        recommender.states._client = LazyClient("dynamodb", spy)  # type: ignore[attr-defined]
        shop = Shop(spy, datetime.now(UTC), KinesisBatches(), Counter())
        results = _kinesis(shop, stream_events.lambda_handler)
        results += _single_events(shop, stream_events.lambda_handler, api.lambda_handler, bus.lambda_handler)
        wiring.reset()
    return results


def _lambda_per_event(m: Measured) -> float:
    gb_seconds = math.ceil(m.duration_ms_per_invocation) / 1000 * MEMORY_MB / 1024
    per_invocation = (
        gb_seconds * PRICES["lambda_gb_second"].amount * 1_000_000 + PRICES["lambda_request"].amount
    )
    return per_invocation * m.invocations / m.events


def cost_rows(m: Measured, record_bytes: int = 300) -> dict[str, float]:
    """$ per million events by line."""
    rows: dict[str, float] = {}
    if m.path.startswith("API"):
        rows["front door"] = PRICES["api_rest"].amount
    elif m.path.startswith("bus"):
        rows["front door"] = PRICES["eventbridge_event"].amount
    else:
        billed = math.ceil(record_bytes / KINESIS_RECORD_ROUNDING) * KINESIS_RECORD_ROUNDING
        rows["front door"] = (
            1_000_000
            * billed
            / GB
            * (PRICES["kinesis_ondemand_gb_in"].amount + PRICES["kinesis_ondemand_gb_out"].amount)
        )
    rows["Lambda"] = _lambda_per_event(m)
    rows["DynamoDB writes"] = m.per_event(m.write_units) * PRICES["wru"].amount
    rows["DynamoDB reads"] = m.per_event(m.read_units) * PRICES["rru"].amount
    rows["CloudWatch Logs"] = (
        ASSUMED_LOG_BYTES_PER_INVOCATION
        * m.invocations
        / m.events
        * 1_000_000
        / GB
        * PRICES["logs_gb"].amount
    )
    return rows


def report(results: list[Measured]) -> str:
    writes = table(
        [
            "path",
            "events",
            "invocations",
            "state writes per event",
            "state reads per event",
            "WRU per event",
            "RRU per event",
        ],
        [
            [
                m.path,
                f"{m.events:,}",
                m.invocations,
                f"**{fmt(m.per_event(m.writes), 3)}**",
                fmt(m.per_event(m.reads), 3),
                fmt(m.per_event(m.write_units), 2),
                fmt(m.per_event(m.read_units), 2),
            ]
            for m in results
        ],
    )
    lines = ["front door", "Lambda", "DynamoDB writes", "DynamoDB reads", "CloudWatch Logs"]
    costs = []
    for m in results:
        rows = cost_rows(m)
        costs.append(
            [m.path, f"{fmt(m.duration_ms_per_invocation)} ms"]
            + [f"{rows[name]:.3f}" for name in lines]
            + [f"**{sum(rows.values()):.2f}**"]
        )
    return "\n\n".join(
        [
            writes,
            table(["path", "billed per invocation", *lines, "total $ / 1M events"], costs),
        ]
    )


def main() -> None:
    print(report(measure()))


if __name__ == "__main__":
    main()
