"""The large training engine on a laptop (issue 14): `nextpick serve --demo --training-engine sagemaker`
trains the demo's models as a (local) SageMaker training job through the state machine, and a spot
drill (`POST /_local/retrain {"reclaim_spot": 1}`, `nextpick retrain --reclaim-spot 1`) kills the job
after its first checkpoint; it resumes and the run publishes or is judged as any other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import LocalStack, _output, start_local_stack, stop_local_stack

# A demo retrain trains 8 epochs of a real model; on a busy 2-core machine give it time.
RETRAIN_TIMEOUT_SECONDS = 900


@pytest.fixture(scope="module")
def sagemaker_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    log_dir: Path = tmp_path_factory.mktemp("sagemaker-stack")
    stack = start_local_stack(log_dir, "--retrain-every", "0", "--training-engine", "sagemaker")
    try:
        yield stack
    finally:
        code = stop_local_stack(stack)
    assert code == 0, _output(stack.log_dir)


def test_the_first_model_was_trained_by_a_sagemaker_job(sagemaker_stack: LocalStack) -> None:
    status, report = sagemaker_stack.request("GET", "/_local/status")

    assert status == 200
    assert report["last_retrain"]["status"] == "published", report["last_retrain"]
    assert report["last_retrain"]["engine"] == "sagemaker"


def test_a_spot_reclaim_drill_resumes_from_the_checkpoint(sagemaker_stack: LocalStack) -> None:
    status, run = sagemaker_stack.request(
        "POST", "/_local/retrain", {"reclaim_spot": 1}, timeout=RETRAIN_TIMEOUT_SECONDS
    )

    assert status == 200, run
    assert run["execution"]["execution_status"] == "SUCCEEDED", run["execution"]
    assert run["engine"] == "sagemaker"
    assert run["status"] in ("published", "rejected"), run["reason"]
    assert run["counts"]["resumed_from_epoch"] >= 1, run["counts"]


def test_a_bad_drill_is_refused_naming_the_field(sagemaker_stack: LocalStack) -> None:
    status, body = sagemaker_stack.request("POST", "/_local/retrain", {"reclaim_spot": "lots"})

    assert status == 400
    assert body["errors"][0]["field"] == "reclaim_spot"
