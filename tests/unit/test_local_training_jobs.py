"""The stand-in's Batch retry judgement (training_jobs.evaluate_on_exit) on the template's own job
definition: a spot reclaim is retried, a container that exits non-zero is not (docs/retrain.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from nextpick_local.standin.template import translated_template
from nextpick_local.standin.training_jobs import (
    CONTAINER_EXITED_REASON,
    SPOT_RECLAIM_REASON,
    evaluate_on_exit,
)


@pytest.fixture(scope="module")
def conditions() -> list[Mapping[str, Any]]:
    definition = translated_template()["Resources"]["TrainingJobDefinition"]["Properties"]
    assert definition["RetryStrategy"]["Attempts"] == 3
    found: list[Mapping[str, Any]] = definition["RetryStrategy"]["EvaluateOnExit"]
    return found


@pytest.mark.parametrize(
    ("status_reason", "reason", "exit_code", "action"),
    [
        (SPOT_RECLAIM_REASON, "", 137, "RETRY"),  # an EC2 spot instance reclaimed
        ("Your Spot Task was interrupted.", "", 137, "RETRY"),  # a Fargate Spot task reclaimed
        (CONTAINER_EXITED_REASON, "exited", 1, "EXIT"),  # the training failed: not retried
        (CONTAINER_EXITED_REASON, "", 2, "EXIT"),
    ],
)
def test_the_job_definition_retries_reclaims_only(
    conditions: list[Mapping[str, Any]], status_reason: str, reason: str, exit_code: int, action: str
) -> None:
    assert evaluate_on_exit(conditions, status_reason, reason, exit_code) == action


def test_no_matching_condition_retries_as_batch_does() -> None:
    assert evaluate_on_exit([{"OnExitCode": "1", "Action": "EXIT"}], "whatever", "", 3) == "RETRY"
    assert evaluate_on_exit([{"OnExitCode": "1*", "Action": "exit"}], "whatever", "", 12) == "EXIT"
