"""What a shadow model costs a request, through the whole API handler (issue 13, docs/variants.md).

    .venv/bin/python -m bench.shadow [--repeats 30] [--out docs/benchmarks/shadow.md]

bench.routes' stack and data at 10,000 items (the served architecture, random weights; 10,000 catalog
items; live trending; a shopper with 50 stored events), with a second version of the same architecture
published beside the control. Three configurations of the pointer, each made live with the real
`switch_experiment` and picked up by the warm container at its next pointer check (first call
outside the timing):
no shadow; the second version as a shadow scoring every answer (sample_rate 1); and scoring one answer
in ten (0.1). The shadow replays the shopper's 50 stored events through its own `update` (the state
was folded by the control) and ranks the catalog, then records its impression. Cases: the shopper's
GET recommendations and a POST /events view. Configurations alternate in rounds so drift of the shared
machine spreads over all three; median and p90 of every call. moto's DynamoDB is inside every figure:
upper bounds, not Lambda latencies. Nothing here is a timed assert.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import BenchLambdaContext, median_p90
from bench.routes import CATALOG_ITEMS, publish_model, request, run_in_moto, setup

CONFIGS = {"no shadow": None, "shadow, sample_rate 1": 1.0, "shadow, sample_rate 0.1": 0.1}
ROUNDS = 3


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.shadow", description=__doc__)
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument("--repeats", type=int, default=30, help="calls per case per configuration per round")
    args = parser.parse_args(argv)
    result = run_in_moto(run, args.repeats)
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(render(result, f"python -m bench.shadow --repeats {args.repeats}"))


def _publish_second_version(stack: Any) -> str:
    # Another version of the same shape.
    return str(publish_model(stack, created_at=datetime.now(UTC) + timedelta(seconds=5)).version)


def run(repeats: int) -> dict[str, Any]:
    import boto3

    from nextpick.adapters.memory import InMemoryImpressionLog
    from nextpick.domain.variants import with_shadow
    from nextpick.handlers import api, wiring
    from nextpick_local.standin.aws_resources import create_stack
    from nextpick_training import publish as publish_lib
    from nextpick_training.variants import read_experiment, switch_experiment

    stack = create_stack("bench-shadow")
    os.environ.update(stack.env("ApiFunction"))
    os.environ.update(POWERTOOLS_LOG_LEVEL="WARNING", POWERTOOLS_METRICS_DISABLED="true")
    now = datetime.now(UTC)
    ids, _ = setup(stack, now)
    control = read_experiment(boto3.client("s3"), stack.model_bucket).config
    shadow_version = _publish_second_version(stack)
    # The second publish replaced the control: point it back, so the shadow really is another version.
    publish_lib.rollback(
        boto3.client("s3"), None, stack.model_bucket, "models/", None, control.control.version
    )

    def handle(event: dict[str, Any]) -> None:
        response = api.lambda_handler(event, BenchLambdaContext())
        assert response["statusCode"] == 200, response

    for n in range(50):
        body = {
            "event_id": f"history-{n}",
            "user_id": "bench-shopper",
            "item_id": ids[(n * 37) % len(ids)],
            "event_type": "purchase" if n % 5 == 0 else "view",
            "timestamp": (now - timedelta(minutes=60 - n)).isoformat(),
        }
        handle(request("api_post_event", "/events", body=body))
    path = "/users/bench-shopper/recommendations"
    read = request("api_get_recommendations", path, {"user_id": "bench-shopper"}, {"k": "10"})

    def view(n: int) -> dict[str, Any]:
        body = {
            "event_id": f"bench-view-{n}",
            "user_id": "bench-viewer",
            "item_id": ids[n % 500],
            "event_type": "view",
            "timestamp": now.isoformat(),
        }
        return request("api_post_event", "/events", query={"k": "10"}, body=body)

    cases = {"GET recommendations, shopper with 50 events": lambda n: read, "POST /events, view": view}
    timings: dict[str, dict[str, list[float]]] = {c: {case: [] for case in cases} for c in CONFIGS}
    scored = dict.fromkeys(CONFIGS, 0)
    calls = 0
    for _ in range(ROUNDS):
        for name, rate in CONFIGS.items():
            s3 = boto3.client("s3")
            live = read_experiment(s3, stack.model_bucket)
            config = control if rate is None else with_shadow(control, shadow_version, rate)
            switch_experiment(s3, stack.model_bucket, "models/", config, live)
            # The warm container notices the switch at its next pointer check (MODEL_REFRESH_SECONDS);
            # the benchmark makes that check due now instead of waiting 60 s. Catalog and trending stay.
            wiring.model_source()._checked_at = None
            for make in cases.values():
                handle(make(-1 - calls))  # a warm container: the models are loaded outside the timing
                calls += 1
            # The shadow's picks go to the impression log (Firehose, in moto here); counted in memory.
            shadow_log = InMemoryImpressionLog()
            wiring.shadow_scoring().impressions = shadow_log
            for _ in range(repeats):
                for case, make in cases.items():
                    event = make(calls)
                    calls += 1
                    started = time.perf_counter()
                    handle(event)
                    timings[name][case].append((time.perf_counter() - started) * 1000)
            scored[name] += len(shadow_log.impressions)
    return {
        "catalog_items": CATALOG_ITEMS,
        "whole_handler_ms": {
            name: {case: median_p90(samples) for case, samples in by_case.items()}
            for name, by_case in timings.items()
        },
        "shadow_scored": {name: f"{scored[name]} of {ROUNDS * repeats * len(cases)}" for name in CONFIGS},
        "repeats": repeats,
        "rounds": ROUNDS,
        "date": now.strftime("%Y-%m-%d"),
        "load_average": round(os.getloadavg()[0], 1),
    }


def render(result: dict[str, Any], command: str) -> str:
    rows = []
    for name, by_case in result["whole_handler_ms"].items():
        for case, ms in by_case.items():
            rows.append(f"| {case} | {name} | {ms['median']} | {ms['p90']} |")
    scored = ", ".join(f"{name}: {count}" for name, count in result["shadow_scored"].items())
    return "\n".join(
        [
            "# Shadow scoring's cost per request (whole handler, 10,000 items)",
            "",
            f"Generated by `{command}` on {result['date']} (2-core shared VM, load average "
            f"{result['load_average']} at the end). The protocol is bench/shadow.py's docstring.",
            "",
            "| case | configuration | median ms | p90 ms |",
            "|---|---|---|---|",
            *rows,
            "",
            f"Answers the shadow scored and logged: {scored}.",
            "",
        ]
    )


if __name__ == "__main__":
    main()
