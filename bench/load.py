"""Load test of a running local stack (`nextpick serve`): throughput, latency percentiles and errors of
`POST /events` and `GET /users/{user_id}/recommendations` as the number of concurrent clients grows, then
a hot shopper (bench.load_hot). Writes docs/load-test.md.

    nextpick serve --demo --retrain-every 0 &          # or `make local ARGS="--retrain-every 0"`
    .venv/bin/python -m bench.load                      # levels 1..32, 10 s per level and route

Standard library only: each client is a thread sending one request at a time over
`nextpick_local.http_client.JsonClient` (urllib, a new connection per request, as a shop's backend
without keep-alive would). The server key is the credential: the authorizer's answer is cached per key
(`AuthCacheSeconds`), as it is for a shop's backend in AWS. Every client writes its own shopper, so the
level measures the stack, not contention; contention is the hot-shopper part."""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import REPO_ROOT, fmt, machine_description, percentile, table
from nextpick_local.http_client import JsonClient, Unreachable

DEFAULT_OUT = REPO_ROOT / "docs" / "load-test.md"
DEFAULT_LEVELS = (1, 2, 4, 8, 16, 32)
# A request's answer: its HTTP status, or CONNECTION_FAILED when no answer came at all.
CONNECTION_FAILED = 0
REQUEST_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Target:
    """A running stack: its API and the server key (from its state file)."""

    api_url: str
    server_key: str
    state: dict[str, Any] = field(default_factory=dict, compare=False)

    def client(self) -> JsonClient:
        return JsonClient(self.api_url, self.server_key, REQUEST_TIMEOUT_SECONDS)

    @classmethod
    def from_state_file(cls, path: Path | None) -> Target:
        """The stack of that state file; this process's boto3 then talks to its stand-in (the
        hot-shopper check reads the state table and the event log)."""
        from nextpick_local.ops.target import local_state
        from nextpick_local.standin.stack import aws_environment

        state = local_state(path)
        os.environ.update(aws_environment(state["endpoint_url"], state["region"]))
        return cls(str(state["api_url"]), str(state["server_key"]), state)


def catalog_item_ids(target: Target) -> list[str]:
    """The stack's item ids (`GET /_local/catalog`), in stock first: events name real items."""
    code, body = JsonClient(target.api_url).request("GET", "/_local/catalog")
    if code != 200 or not body.get("items"):
        raise RuntimeError(
            f"GET /_local/catalog answered {code}: the stack has no catalog (start it with --demo)"
        )
    items = sorted(body["items"], key=lambda item: item.get("stock", 0) <= 0)
    return [str(item["item_id"]) for item in items]


def catalog_scan_seconds(target: Target) -> tuple[int, float]:
    """(items, seconds) of one full scan of the items table through the stand-in: what a container's
    catalog refresh (every `CATALOG_REFRESH_SECONDS`) does on the request path before it answers."""
    import boto3

    dynamodb = boto3.session.Session().client("dynamodb")
    started = time.perf_counter()
    items = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=target.state["resources"]["ItemsTable"]):
        items += len(page["Items"])
    return items, time.perf_counter() - started


def slow_answers(
    target: Target, seconds: float, slow_seconds: float = 1.0
) -> tuple[int, list[tuple[float, float]]]:
    """One client alone sending `GET recommendations` for `seconds`: (requests, [(seconds into the
    probe, latency) of each answer slower than `slow_seconds`]). Without load, what is periodic shows."""
    client = target.client()
    started = time.perf_counter()
    requests, slow = 0, []
    while time.perf_counter() - started < seconds:
        sample, _ = timed(lambda: client.request("GET", "/users/load-probe/recommendations"))
        requests += 1
        if sample.seconds > slow_seconds:
            slow.append((time.perf_counter() - started, sample.seconds))
    return requests, slow


def view_event(user_id: str, item_id: str, event_id: str | None = None) -> dict[str, Any]:
    return {
        "event_id": event_id or f"load-{uuid.uuid4().hex}",
        "user_id": user_id,
        "item_id": item_id,
        "event_type": "view",
        "timestamp": datetime.now(UTC).isoformat(),
    }


@dataclass(frozen=True)
class Sample:
    status: int
    seconds: float
    # Why no answer came (status CONNECTION_FAILED): the exception's cause, e.g. a reset connection.
    failure: str = ""


def timed(call: Callable[[], tuple[int, Any]]) -> tuple[Sample, Any]:
    started = time.perf_counter()
    try:
        status, body = call()
    except Unreachable as error:
        cause = error.__cause__
        reason = getattr(cause, "reason", cause)
        return Sample(CONNECTION_FAILED, time.perf_counter() - started, type(reason).__name__), None
    return Sample(status, time.perf_counter() - started), body


@dataclass(frozen=True)
class LevelResult:
    route: str
    clients: int
    wall_seconds: float
    samples: list[Sample]

    @property
    def ok(self) -> list[float]:
        return [s.seconds for s in self.samples if 200 <= s.status < 300]

    @property
    def errors(self) -> Counter[str]:
        return Counter(
            f"no answer ({s.failure})" if s.status == CONNECTION_FAILED else str(s.status)
            for s in self.samples
            if not 200 <= s.status < 300
        )

    @property
    def throughput(self) -> float:
        return len(self.ok) / self.wall_seconds if self.wall_seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        return percentile(self.ok, q) * 1000 if self.ok else float("nan")

    def row(self) -> list[str]:
        errors = ", ".join(f"{count} x {error}" for error, count in sorted(self.errors.items()))
        return [
            self.route,
            str(self.clients),
            f"{len(self.samples):,}",
            fmt(self.throughput),
            fmt(self.percentile_ms(50)),
            fmt(self.percentile_ms(90)),
            fmt(self.percentile_ms(99)),
            errors or "0",
        ]


def run_level(
    route: str, clients: int, seconds: float, request: Callable[[int, int], tuple[int, Any]]
) -> LevelResult:
    """`clients` threads, each sending `request(client, n)` back to back until `seconds` have passed."""
    deadline = time.perf_counter() + seconds
    samples: list[Sample] = []
    lock = threading.Lock()

    def client_loop(client: int) -> None:
        n = 0
        while time.perf_counter() < deadline:
            sample, _ = timed(functools.partial(request, client, n))
            with lock:
                samples.append(sample)
            n += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client_loop, range(clients)))
    return LevelResult(route, clients, time.perf_counter() - started, samples)


def route_levels(target: Target, levels: Sequence[int], seconds: float, run_id: str) -> list[LevelResult]:
    """For each level: `POST /events` (one view each, each client its own shopper), then
    `GET /users/{id}/recommendations` of the shoppers that level just wrote."""
    items = catalog_item_ids(target)
    client = target.client()
    # Warm-up, unmeasured: the container's first requests load the model and scan the catalog.
    for n in range(3):
        client.request("POST", "/events", view_event(f"load-{run_id}-warm", items[n]))
        client.request("GET", f"/users/load-{run_id}-warm/recommendations")
    results = []
    for clients in levels:

        def user(c: int, clients: int = clients) -> str:
            return f"load-{run_id}-c{clients}-{c}"

        def post(c: int, n: int) -> tuple[int, Any]:
            return client.request("POST", "/events", view_event(user(c), items[(c * 31 + n) % len(items)]))

        def get(c: int, n: int) -> tuple[int, Any]:
            return client.request("GET", f"/users/{user(c)}/recommendations")

        results.append(run_level("POST /events", clients, seconds, post))
        results.append(run_level("GET recommendations", clients, seconds, get))
        print(
            f"[load] {clients} clients: "
            + ", ".join(f"{r.route} {fmt(r.throughput)}/s" for r in results[-2:]),
            file=sys.stderr,
            flush=True,
        )
    return results


def load_table(results: Sequence[LevelResult]) -> str:
    ordered = sorted(results, key=lambda r: (r.route != "POST /events", r.clients))
    return table(
        ["route", "clients", "requests", "answered 2xx / s", "p50 ms", "p90 ms", "p99 ms", "errors"],
        [r.row() for r in ordered],
    )


def _levels(text: str) -> tuple[int, ...]:
    levels = tuple(int(part) for part in text.split(",") if part.strip())
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("levels are positive integers, e.g. 1,2,4,8")
    return levels


def main(argv: list[str] | None = None) -> int:
    from bench import load_hot, load_report

    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument(
        "--state-file", type=Path, help="the stack's state file (default .nextpick/local.json)"
    )
    parser.add_argument("--levels", type=_levels, default=DEFAULT_LEVELS, help="client counts, e.g. 1,2,4")
    parser.add_argument("--seconds", type=float, default=10.0, help="per level and route (default 10)")
    parser.add_argument("--hot-clients", type=int, default=16, help="clients hammering the hot shopper")
    parser.add_argument("--hot-events", type=int, default=160, help="distinct events sent to the hot shopper")
    parser.add_argument(
        "--probe-seconds",
        type=float,
        default=0.0,
        help="then one client alone for this long, to show periodic stalls (default 0: skip)",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    target = Target.from_state_file(args.state_file)
    run_id = uuid.uuid4().hex[:8]
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    levels = route_levels(target, args.levels, args.seconds, run_id)
    hot = load_hot.hot_shopper_runs(target, args.hot_clients, args.hot_events, run_id)
    probe = slow_answers(target, args.probe_seconds) if args.probe_seconds > 0 else None
    scan = catalog_scan_seconds(target)
    command = "python -m bench.load" + "".join(
        f" {flag} {value}"
        for flag, value, default in (
            ("--levels", ",".join(map(str, args.levels)), ",".join(map(str, DEFAULT_LEVELS))),
            ("--seconds", fmt(args.seconds), fmt(10.0)),
            ("--hot-clients", str(args.hot_clients), "16"),
            ("--hot-events", str(args.hot_events), "160"),
            ("--probe-seconds", fmt(args.probe_seconds), fmt(0.0)),
        )
        if value != default
    )
    machine = [
        *machine_description(),
        ("Load average (1 min)", f"{load_before:.2f} before the run, {os.getloadavg()[0]:.2f} after"),
    ]
    refresh = str(target.state.get("function_env", {}).get("CATALOG_REFRESH_SECONDS", "?"))
    report = load_report.render(
        command, levels, hot, time.perf_counter() - started, machine, scan, probe, refresh
    )
    args.out.write_text(report, encoding="utf-8")
    print(f"[load] wrote {args.out}", file=sys.stderr)
    failed = [run for run in hot if not run.verdict.exactly_once]
    return 1 if failed else 0


def median_ms(values: Sequence[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


if __name__ == "__main__":
    sys.exit(main())
