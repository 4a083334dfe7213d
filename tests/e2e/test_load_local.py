"""The load test (bench/load.py) in small mode against the local stack: every request answered, and
every event accepted applied exactly once, under concurrent clients and for a hot shopper hammered by
concurrent emulated containers. Counts only: speed figures belong in docs/load-test.md."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from bench.load import Target, route_levels
from bench.load_hot import hot_shopper_runs
from bench.load_report import render
from nextpick.handlers import wiring
from nextpick_local.http_client import JsonClient
from tests.e2e.conftest import LocalStack

pytestmark = pytest.mark.slow

HOT_EVENTS = 24


@pytest.fixture
def target(local_stack: LocalStack) -> Iterator[Target]:
    """The stack as bench.load sees it; the process environment it sets (boto3 pointed at the stand-in,
    the functions' variables for the emulated containers) is put back afterwards."""
    saved = dict(os.environ)
    try:
        yield Target.from_state_file(local_stack.state_file)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        wiring.reset()


def test_concurrent_clients_get_every_request_answered_and_every_event_written_once(
    target: Target, local_stack: LocalStack
) -> None:
    run_id = uuid.uuid4().hex[:8]
    levels = route_levels(target, (1, 4), 1.0, run_id)

    assert [(r.route, r.clients) for r in levels] == [
        ("POST /events", 1),
        ("GET recommendations", 1),
        ("POST /events", 4),
        ("GET recommendations", 4),
    ]
    for result in levels:
        assert result.samples and not result.errors, (result.route, result.clients, result.errors)
    # Each client wrote its own shopper one event per request: the shoppers' versions (one per write)
    # add up to exactly the requests answered 200.
    admin = JsonClient(target.api_url, local_stack.admin_key)
    for result in (r for r in levels if r.route == "POST /events"):
        versions = 0
        for client in range(result.clients):
            code, body = admin.request("GET", f"/users/load-{run_id}-c{result.clients}-{client}/data")
            assert code == 200, body
            versions += (body["state"] or {}).get("version", 0)
        assert versions == len(result.ok)


def test_a_hot_shopper_hammered_concurrently_has_every_event_applied_exactly_once(target: Target) -> None:
    runs = hot_shopper_runs(target, clients=4, count=HOT_EVENTS, run_id=uuid.uuid4().hex[:8])

    assert [run.path for run in runs] == ["API", "emulated containers"]
    for run in runs:
        verdict = run.verdict
        # Every event either applied or refused with a retriable answer after every attempt (a 409
        # under contention: refused, not lost, and the client was told so); none both, none twice.
        assert verdict.applied + verdict.failed == HOT_EVENTS and verdict.applied > 0, (run.path, verdict)
        assert verdict.exactly_once, (run.path, verdict)
        assert verdict.log_lines == verdict.state_version == verdict.applied, (run.path, verdict)
        assert verdict.resent > 0 and verdict.resent_duplicate == verdict.resent
    # The API row: one emulated container, so the lock is never contended; the containers' row counts it.
    assert runs[0].conflicts is None and runs[1].conflicts is not None
    report = render("python -m bench.load", [], runs, 1.0, [])
    assert report.count("| **yes** |") == 2
