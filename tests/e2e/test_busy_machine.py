"""The local stack on a busy machine (issue 10): with an artificially slowed stand-in, reads slower
than Lambda's 5 s budget still succeed, and a stand-in too slow even for the local budget ends
`nextpick serve` with one line that says what failed and what to try - never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import nextpick.adapters
from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
from nextpick.domain.events import CatalogItem
from tests.e2e.slow_standin import DELAYS_VARIABLE, TIMEOUTS_VARIABLE, install

REPO = Path(__file__).resolve().parents[2]
SCAN = "DynamoDB_20120810.Scan"
BATCH_WRITE = "DynamoDB_20120810.BatchWriteItem"

pytestmark = pytest.mark.slow


@pytest.fixture
def restored_process() -> Iterator[None]:
    """start_stack points this process at its moto server (environment, the functions' client
    config); put both back afterwards."""
    environment = dict(os.environ)
    config, best_effort = nextpick.adapters.CLIENT_CONFIG, nextpick.adapters.BEST_EFFORT_CLIENT_CONFIG
    yield
    os.environ.clear()
    os.environ.update(environment)
    nextpick.adapters.CLIENT_CONFIG = config
    nextpick.adapters.BEST_EFFORT_CLIENT_CONFIG = best_effort


def test_a_catalog_scan_slower_than_lambdas_read_timeout_succeeds_locally(restored_process: None) -> None:
    from nextpick_local.standin.stack import start_stack

    lambda_read_timeout = float(nextpick.adapters.CLIENT_CONFIG.read_timeout)  # type: ignore[attr-defined]
    undo = install({SCAN: lambda_read_timeout + 1})
    stack = start_stack("nextpick-slow", {})
    try:
        # The functions' own adapter, with the client it builds itself (as in the handlers).
        catalog = DynamoDbCatalog(stack.resources.items_table, refresh_seconds=0)
        catalog.put_items(
            [CatalogItem(item_id=f"i-{n}", category="coffee", price=4.5, stock=n % 3) for n in range(30)]
        )

        snapshot = catalog.snapshot()
    finally:
        undo()
        stack.stop()

    assert len(snapshot.category_of) == 30
    assert snapshot.out_of_stock == frozenset(f"i-{n}" for n in range(0, 30, 3))


def test_a_stand_in_too_slow_even_locally_ends_serve_with_one_line(tmp_path: Path) -> None:
    state_file = tmp_path / "local.json"
    env = {
        **os.environ,
        # Every catalog write answers after 3 s; the stand-in's clients give up after 1 s, twice.
        DELAYS_VARIABLE: json.dumps({BATCH_WRITE: 3.0}),
        TIMEOUTS_VARIABLE: json.dumps({"read_timeout": 1, "max_attempts": 2}),
    }
    command = [sys.executable, "-m", "tests.e2e.slow_standin", "serve", "--demo", "--port", "0"]
    command += ["--retrain-every", "0", "--state-file", str(state_file)]
    command += ["--function-logs", str(tmp_path / "functions.log")]

    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("nextpick serve: loading the demo shop failed: "), done.stderr
    assert "Try: " in last and "busy machine" in last
    assert "ItemsTable" in last  # names what it was waiting for
    assert not state_file.exists()


def test_an_unknown_template_parameter_is_a_usage_error_in_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "nextpick_local.cli", "serve", "--port", "0"]
    command += ["--state-file", str(tmp_path / "local.json"), "--parameter-overrides", "ModelRefreshSecs=5"]

    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("nextpick serve: error: unknown parameters ['ModelRefreshSecs']"), done.stderr
