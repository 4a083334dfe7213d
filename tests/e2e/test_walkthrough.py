"""`nextpick walkthrough` against the running local stack, as a user runs it: the CLI, in a subprocess."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

EVENTS = 10
# The walkthrough retrains a real model on the demo shop's history.
TIMEOUT_SECONDS = 900


def test_walkthrough_narrates_each_event_and_the_retrain(local_stack: Any) -> None:
    command = [
        str(Path(sys.executable).parent / "nextpick"),
        "walkthrough",
        # The API URL and the server key come from the stack's state file, as after `make local`.
        "--state-file",
        str(local_stack.state_file),
        "--events",
        str(EVENTS),
        "--seed",
        "1",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_SECONDS)
    output = run.stdout
    assert run.returncode == 0, f"exit {run.returncode}\n--- stdout\n{output}\n--- stderr\n{run.stderr}"

    # Before the session, the scopes at work: the shopper's token reads only their own list.
    scopes = output.split("=== Who may call what", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    assert len(scopes) == 5 and all(line.rstrip().endswith(" ok") for line in scopes), output
    assert re.search(r"shopper token of \S+ +GET /users/another-shopper/recommendations +-> 403", output)
    assert re.search(r"no credential +GET /users/\S+/recommendations +-> 401 \(unauthorized\)", output)
    assert re.search(r"server key +GET /model +-> 200", output)

    # One block per event: the event and its answer, then how the top-10 changed.
    blocks = re.split(r"\n(?=\[\s*\d+/\d+\] )", output.split("=== Retrain ===")[0])[1:]
    assert len(blocks) == EVENTS, output
    for block in blocks:
        assert "-> accepted" in block, block
        assert re.search(r"↑ entered at #\d+|↓ left|moved #\d+ → #\d+|= top-10 unchanged", block), block
        assert "top-10 by category:" in block, block
    assert any("↑ entered" in block for block in blocks), "no event ever brought a new item into the top-10"

    retrain = output.split("=== Retrain ===", 1)[1]
    assert re.search(r"retrain (published: switched: \S+ → \S+|rejected: kept: \S+|skipped: kept)", retrain)
    assert re.search(r"overlap with the list before the retrain: \d+/10", retrain)
    assert "still personalized: yes" in retrain
