"""The whole API `lambda_handler` per event, beside the domain-only work, in a process set up like Lambda.

`python -m bench.handler [--sizes 1000 10000 100000] [--events 3000] [--warmup 300] [--repeats 3]`
prints a JSON object; `bench.serving` runs it as a child process and puts the figures in the report.

It runs in its own process because Powertools decides at import time whether the tracer is on: the
child sets the environment Lambda sets (function name, X-Ray trace header) before importing the
handler, so the tracer, logger (with its Lambda context), EMF metrics and resolver with request
validation run exactly as deployed. X-Ray segments go out over UDP to 127.0.0.1:2000 as they would to
the X-Ray daemon (nothing listens: a UDP send costs the same either way). Lambda pipes stdout to
CloudWatch; here it goes to /dev/null, so writing the EMF line and logs is still paid for.

The adapters are the in-memory ones (no AWS round trip), so what is measured is the handler's own work:
API Gateway proxy event in, proxy response out. The domain-only figure is the same bodies through
`TypeAdapter(EventsRequest).validate_json` and `Recommender.track`, nothing else."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from time import perf_counter_ns
from typing import Any

from bench.common import Latency

REPO_ROOT = Path(__file__).resolve().parent.parent
SHOPPERS = 1_000

# What the Lambda runtime sets and the template adds (only what changes the handler's behaviour).
LAMBDA_ENVIRONMENT = {
    "AWS_LAMBDA_FUNCTION_NAME": "nextpick-bench-ApiFunction",
    # How the X-Ray SDK recognises Lambda (it then reads the trace header from `_X_AMZN_TRACE_ID`).
    "LAMBDA_TASK_ROOT": str(REPO_ROOT / "functions"),
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    "_X_AMZN_TRACE_ID": "Root=1-674857c0-3c4f0b4e6d1f2a3b4c5d6e7f;Parent=53995c3f42cd8ad8;Sampled=1",
    "POWERTOOLS_SERVICE_NAME": "nextpick",
    "POWERTOOLS_METRICS_NAMESPACE": "Nextpick",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}


class BenchContext:
    function_name = "nextpick-bench-ApiFunction"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:nextpick-bench-ApiFunction"
    memory_limit_in_mb = 1024
    aws_request_id = "00000000-0000-0000-0000-000000000000"
    log_group_name = "/aws/lambda/nextpick-bench-ApiFunction"
    log_stream_name = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


@contextlib.contextmanager
def in_memory_wiring(num_items: int) -> Iterator[Any]:
    """The handler module's composition root answering with in-memory adapters around the real model."""
    from bench import models, workload
    from nextpick.adapters.litert_model import LiteRTModel
    from nextpick.adapters.memory import InMemoryCatalog, InMemoryStateRepository, StaticModelSource
    from nextpick.domain.service import Recommender
    from nextpick.handlers import wiring

    model_bytes, manifest = models.load(num_items)
    source = StaticModelSource(LiteRTModel(model_bytes, manifest))
    catalog = InMemoryCatalog(workload.catalog(num_items))
    recommender = Recommender(states=InMemoryStateRepository(), models=source, catalog=catalog)
    saved = {name: getattr(wiring, name) for name in ("recommender", "catalog", "model_source")}
    wiring.recommender, wiring.catalog, wiring.model_source = (  # type: ignore[assignment]
        lambda: recommender,
        lambda: catalog,
        lambda: source,
    )
    try:
        yield recommender
    finally:
        for name, factory in saved.items():
            setattr(wiring, name, factory)


def _time_handler(handler: Any, template: dict[str, Any], bodies: list[str]) -> tuple[list[int], set[int]]:
    context = BenchContext()
    samples, statuses = [], set()
    for body in bodies:
        event = {**template, "body": body}
        started = perf_counter_ns()
        response = handler(event, context)
        samples.append(perf_counter_ns() - started)
        statuses.add(response["statusCode"])
    return samples, statuses


def _time_domain(recommender: Any, bodies: list[str]) -> list[int]:
    from pydantic import TypeAdapter

    from nextpick.domain.events import EventsRequest
    from nextpick.domain.ranking import RecommendOptions

    request, options, samples = TypeAdapter(EventsRequest), RecommendOptions(), []
    for body in bodies:
        started = perf_counter_ns()
        parsed = request.validate_json(body)
        recommender.track(parsed.events if hasattr(parsed, "events") else [parsed], options)
        samples.append(perf_counter_ns() - started)
    return samples


def measure(num_items: int, events: int, warmup: int, repeats: int) -> dict[str, Any]:
    """Whole handler and domain only, each on its own in-memory state, same bodies, same process."""
    from bench import workload
    from nextpick.handlers import api

    template = json.loads((REPO_ROOT / "events" / "api_post_event.json").read_text())
    bodies = workload.event_bodies(num_items, warmup + events * repeats, SHOPPERS, seed=2)
    whole_runs, domain_runs, statuses = [], [], set()
    with in_memory_wiring(num_items) as recommender:
        _time_handler(api.lambda_handler, template, bodies[:warmup])
        for repeat in range(repeats):
            run = bodies[warmup + repeat * events : warmup + (repeat + 1) * events]
            samples, seen = _time_handler(api.lambda_handler, template, run)
            whole_runs.append(Latency.of_ns(samples))
            statuses |= seen
    with in_memory_wiring(num_items) as recommender:
        _time_domain(recommender, bodies[:warmup])
        for repeat in range(repeats):
            run = bodies[warmup + repeat * events : warmup + (repeat + 1) * events]
            domain_runs.append(Latency.of_ns(_time_domain(recommender, run)))
    whole, domain = Latency.median_of(whole_runs), Latency.median_of(domain_runs)
    return {
        "num_items": num_items,
        "whole_handler": whole.__dict__,
        "domain_only": domain.__dict__,
        "statuses": sorted(statuses),
    }


def run_child(sizes: tuple[int, ...], events: int, warmup: int, repeats: int) -> list[dict[str, Any]]:
    """`measure` for each size in a fresh child process set up like Lambda (see the module docstring)."""
    import subprocess

    command = [sys.executable, "-m", "bench.handler", "--sizes", *map(str, sizes)]
    command += ["--events", str(events), "--warmup", str(warmup), "--repeats", str(repeats)]
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={**os.environ, **LAMBDA_ENVIRONMENT},
        capture_output=True,
        text=True,
        check=True,
    )
    figures: list[dict[str, Any]] = json.loads(result.stdout.splitlines()[-1])
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.handler", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--events", type=int, default=3_000, help="measured events per repeat")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    for name, value in LAMBDA_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    real_stdout = sys.stdout
    figures = []
    # Lambda ships stdout (EMF metrics, logs) to CloudWatch: writing it stays in the measurement.
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        for size in args.sizes:
            figures.append(measure(size, args.events, args.warmup, args.repeats))
            print(f"[bench.handler] {size} items done", file=sys.stderr, flush=True)
    print(json.dumps(figures), file=real_stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
