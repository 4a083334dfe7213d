"""The local stack as the README starts it, in a subprocess, shared by every end-to-end test.

`local_stack` yields an object with `.url` (the base URL: storefront at `/`, API routes below it), the
stack's `.server_key` and `.admin_key` and `.shopper_token(user_id)`; it runs `make local ARGS="--port <free> --state-file <tmp> ..."` (the README's command),
waits for the state file `serve` writes once it answers, and at the end of the session sends SIGINT to
the `nextpick serve` process (its pid is in the state file; make then exits with its status)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from nextpick.domain.credentials import mint_shopper_token
from nextpick_local.http_client import JsonClient

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_SECONDS = 150
STOP_TIMEOUT_SECONDS = 30


@dataclass
class LocalStack:
    url: str
    process: subprocess.Popen[bytes]
    state_file: Path
    log_dir: Path
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def server_key(self) -> str:
        return str(self.state["server_key"])

    @property
    def admin_key(self) -> str:
        return str(self.state["admin_key"])

    def shopper_token(self, user_id: str, ttl_seconds: int = 900) -> str:
        """A token bound to `user_id`, minted as a shop's backend does with the stack's signing key."""
        return mint_shopper_token(str(self.state["token_signing_key"]), user_id, ttl_seconds)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        credential: str | None = None,
        anonymous: bool = False,
        timeout: float = 120,
    ) -> tuple[int, Any]:
        """(status, parsed JSON body), sent with `credential` in Authorization: Bearer (default: the
        server key); `anonymous=True` sends no Authorization header at all."""
        client = JsonClient(self.url, self.server_key, timeout)
        return client.request(method, path, body, credential=credential, send_credential=not anonymous)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _output(log_dir: Path) -> str:
    return (log_dir / "serve.err").read_text(errors="replace")[-4000:]


def start_local_stack(log_dir: Path, *extra: str) -> LocalStack:
    port = free_port()
    state_file = log_dir / "local.json"
    args = ["--port", str(port), "--state-file", str(state_file), *extra]
    command = ["make", "--no-print-directory", "local", f"ARGS={' '.join(args)}"]
    with (log_dir / "serve.out").open("wb") as out, (log_dir / "serve.err").open("wb") as err:
        # A session of its own: on a start that times out, make and the `nextpick serve` under it are
        # stopped together (killing make alone left serve and its moto running, orphaned, on a shared
        # machine: seen twice with the load test's fixture on a 2-core VM at load average 15).
        process = subprocess.Popen(
            command, cwd=REPO, stdout=out, stderr=err, env={**os.environ}, start_new_session=True
        )
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    # Ready = the state file is written, which `serve` does once the HTTP server is up.
    while not state_file.exists():
        if process.poll() is not None:
            raise RuntimeError(f"nextpick serve exited with {process.returncode}:\n{_output(log_dir)}")
        if time.monotonic() > deadline:
            _stop_group(process)
            raise RuntimeError(
                f"nextpick serve not ready after {START_TIMEOUT_SECONDS}s:\n{_output(log_dir)}"
            )
        time.sleep(0.5)
    state = json.loads(state_file.read_text())
    return LocalStack(state["api_url"], process, state_file, log_dir, state)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to make and everything under it (`serve` stops cleanly on it), SIGKILL if that hangs."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def stop_local_stack(stack: LocalStack) -> int:
    """Ctrl-C as a terminal would deliver it to `nextpick serve`; make's exit status (= serve's)."""
    if stack.process.poll() is None:
        os.kill(int(stack.state["pid"]), signal.SIGINT)
        try:
            stack.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            stack.process.kill()
            stack.process.wait()
    return int(stack.process.returncode)


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = start_local_stack(tmp_path_factory.mktemp("local-stack"), "--retrain-every", "0")
    try:
        yield stack
    finally:
        code = stop_local_stack(stack)
    # Checked here, after every test that shares the stack: Ctrl-C stops everything, cleanly.
    assert code == 0, _output(stack.log_dir)
    assert "nextpick: stopped" in _output(stack.log_dir)
    assert not stack.state_file.exists()
