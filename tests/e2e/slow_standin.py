"""An artificially slow AWS stand-in: moto's server sleeps before answering chosen operations, as it
does on a machine with a load average near 8 (issue 10: a 2,000-item catalog scan took longer than
the functions' 5 s read timeout and `make local` died with a traceback).

    install({"DynamoDB_20120810.Scan": 6.0})   # in-process: every moto server of this process

    python -m tests.e2e.slow_standin serve --demo ...   # `nextpick` with the delays of
                                                         # NEXTPICK_TEST_DELAYS (JSON) installed first

An operation is named by the `X-Amz-Target` header its JSON-protocol request carries (DynamoDB's
`DynamoDB_20120810.<Operation>`), which is all the tests need."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

DELAYS_VARIABLE = "NEXTPICK_TEST_DELAYS"
# Optional: {"read_timeout": seconds, "max_attempts": n} for the stand-in's clients, so a test can
# provoke a timeout without waiting a minute per attempt.
TIMEOUTS_VARIABLE = "NEXTPICK_TEST_LOCAL_TIMEOUTS"


def install(delays: Mapping[str, float]) -> Callable[[], None]:
    """Make moto's server sleep `delays[target]` seconds before answering; returns the undo."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.__call__

    def slow_call(self: Any, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        delay = delays.get(str(environ.get("HTTP_X_AMZ_TARGET", "")), 0.0)
        if delay:
            time.sleep(delay)
        return original(self, environ, start_response)

    DomainDispatcherApplication.__call__ = slow_call  # type: ignore[method-assign]

    def undo() -> None:
        DomainDispatcherApplication.__call__ = original  # type: ignore[method-assign]

    return undo


def main(argv: list[str]) -> int:
    install(json.loads(os.environ.get(DELAYS_VARIABLE, "{}")))
    timeouts = json.loads(os.environ.get(TIMEOUTS_VARIABLE, "{}"))
    if timeouts:
        from nextpick_local.standin import stack

        stack.LOCAL_READ_TIMEOUT_SECONDS = timeouts["read_timeout"]
        stack.LOCAL_MAX_ATTEMPTS = timeouts["max_attempts"]
    from nextpick_local.cli import main as nextpick

    return nextpick(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
