"""The retrain as steps (issue 14, docs/retrain.md "Steps"): each step through the Lambda handler's step
payloads against the template's bucket in moto, their idempotency, the run folder's life (the window copy
and the checkpoints deleted by the record step), bad payloads, and the train step run by the container
entry (`python -m nextpick_training.train_job`, a subprocess) ending in the same bytes as the Lambda's."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

import nextpick_training.handler as handler_module
from nextpick.adapters import model_registry as registry
from nextpick_local.standin.aws_resources import Stack
from nextpick_training import steps
from nextpick_training.settings import TrainingSettings, get_training_settings
from tests.integration.test_retrain import (  # noqa: F401 (retrain_env: a fixture)
    REPO,
    TINY,
    Context,
    retrain_env,
    run_records,
    shop_log,
    write_log,
)

pytestmark = pytest.mark.slow

FOLDER = "training-runs/"


def keys(s3: Any, bucket: str, prefix: str = "") -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


@pytest.fixture(autouse=True)
def fresh_training_settings() -> Iterator[None]:
    """Settings are cached per process (as per container); no test here leaves its own to the next file."""
    get_training_settings.cache_clear()
    yield
    get_training_settings.cache_clear()


@pytest.fixture
def env(retrain_env: dict[str, str]) -> dict[str, str]:  # noqa: F811 (the fixture imported above)
    """RetrainFunction's environment from template.yaml with small-data thresholds (test_retrain's)."""
    return retrain_env


@pytest.fixture
def step(env: dict[str, str]) -> Callable[..., dict[str, Any]]:
    def call(payload: dict[str, Any]) -> dict[str, Any]:
        output: dict[str, Any] = handler_module.lambda_handler(payload, Context())
        # What the state machine hands on must be JSON (and small: Step Functions' 256 KB).
        assert len(json.dumps(output)) < 256 * 1024
        return output

    return call


def test_the_steps_one_by_one_publish_once_and_leave_no_window_copy(
    stack: Stack, s3: Any, step: Callable[..., dict[str, Any]]
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    write_log(s3, stack.model_bucket, shop_log(now), now, duplicates=30)
    execution = {"step": "query", "execution": "nightly:2026-11-30", "started_at": now.isoformat()}

    ready = step(execution)

    run_id = ready["run_id"]
    assert run_id == "nightly-2026-11-30"
    assert ready["status"] == "ready" and ready["engine"] == "lambda"
    assert ready["counts"]["events"] == 60 * 40 and ready["counts"]["duplicates"] == 30
    folder = f"{FOLDER}{run_id}/"
    assert keys(s3, stack.model_bucket, folder) == [
        f"{folder}{n}" for n in ("catalog.json", "run.json", "window.parquet")
    ]
    # A retried query reuses the folder and answers the same.
    assert step(execution) == ready

    trained = step({"step": "train", "run_id": run_id})
    assert trained["resumed_from_epoch"] == 0 and trained["epochs_trained"] == TINY["epochs"]
    tflite = s3.get_object(Bucket=stack.model_bucket, Key=f"{folder}candidate/model.tflite")["Body"].read()
    assert hashlib.sha256(tflite).hexdigest() == trained["sha256"]
    assert trained["candidate_version"] == registry.make_version(now, trained["sha256"])
    assert any(k.startswith(f"{folder}checkpoints/epoch-") for k in keys(s3, stack.model_bucket, folder))
    assert step({"step": "train", "run_id": run_id}) == trained  # found done, not trained again

    evaluated = step({"step": "evaluate", "run_id": run_id})
    assert evaluated["passed"] is True and evaluated["reason"] == "first model"
    assert evaluated["candidate_metrics"]["users"] == 60.0 and evaluated["live_metrics"] is None

    published = step({"step": "publish", "run_id": run_id})
    assert published["published_version"] == trained["candidate_version"]
    assert published["previous_version"] is None and published["notified"] is True
    # A retried publish publishes nothing twice.
    assert step({"step": "publish", "run_id": run_id}) == published
    assert step({"step": "evaluate", "run_id": run_id}) == evaluated
    assert registry.list_versions(s3, stack.model_bucket) == [published["published_version"]]
    pointer = registry.current_pointer(s3, stack.model_bucket)
    assert pointer is not None and pointer["version"] == published["published_version"]

    recorded = step({"step": "record", "run_id": run_id, "status": "published", "error": None})
    assert recorded["status"] == "published" and recorded["run_id"] == run_id
    assert recorded["published_version"] == published["published_version"]
    # The window copy and the checkpoints are gone; the candidate and run.json stay (the lifecycle rule
    # expires them).
    left = keys(s3, stack.model_bucket, folder)
    assert f"{folder}window.parquet" not in left and not any("/checkpoints/" in k for k in left)
    assert f"{folder}run.json" in left and f"{folder}candidate/model.tflite" in left
    # A retried record finds its own run record.
    assert step({"step": "record", "run_id": run_id, "status": "published", "error": None}) == recorded
    (run,) = run_records(s3, stack.model_bucket)
    assert (
        run["status"] == "published" and run["run_id"] == run_id and recorded["run_key"].startswith("runs/")
    )

    # Nothing to train on: any step after the record says so instead of training on nothing.
    steps.folder(steps.StepClients(s3), TrainingSettings.from_env(), run_id).delete("candidate/")
    with pytest.raises(FileNotFoundError, match=r"window\.parquet is missing"):
        step({"step": "train", "run_id": run_id})


def test_a_rejected_candidate_is_not_published_by_a_publish_step(
    stack: Stack, s3: Any, step: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    write_log(s3, stack.model_bucket, shop_log(now), now)
    first = step({"step": "query", "execution": "first", "started_at": now.isoformat()})
    for name in ("train", "evaluate", "publish"):
        step({"step": name, "run_id": first["run_id"]})
    live = registry.current_pointer(s3, stack.model_bucket)

    monkeypatch.setenv("HYPERPARAMETERS", json.dumps({**TINY, "learning_rate": 0.0}))
    get_training_settings.cache_clear()
    second = step({"step": "query", "execution": "second", "started_at": now.isoformat()})
    step({"step": "train", "run_id": second["run_id"]})
    evaluated = step({"step": "evaluate", "run_id": second["run_id"]})
    assert evaluated["passed"] is False and "worse than live" in evaluated["reason"]
    with pytest.raises(steps.StepError, match="gate has not passed"):
        step({"step": "publish", "run_id": second["run_id"]})
    assert registry.current_pointer(s3, stack.model_bucket) == live
    recorded = step({"step": "record", "run_id": second["run_id"], "status": "rejected", "error": None})
    assert recorded["status"] == "rejected" and recorded["live_metrics"] is not None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"step": "train"}, "run_id"),
        ({"step": "trian", "run_id": "r"}, "step"),
        ({"step": "publish", "run_id": "../models"}, "run_id"),
        ({"step": "query"}, "execution"),
        ({"step": "query", "execution": "x", "started_at": "yesterday"}, "started_at"),
        ({"step": "evaluate", "run_id": "r", "engine": "lambda"}, "engine"),
        ({"step": "record", "run_id": "r", "status": "done"}, "status"),
        ({"step": "record", "status": "failed"}, "run_id"),
        ({"step": "record", "run_id": None, "status": "failed", "error": {"Cause": "x"}}, "error.Error"),
    ],
)
def test_a_bad_payload_names_the_field_and_writes_nothing(
    stack: Stack, s3: Any, step: Callable[..., dict[str, Any]], payload: dict[str, Any], field: str
) -> None:
    before = keys(s3, stack.model_bucket)
    with pytest.raises(steps.StepPayloadError, match=rf"\b{field}\b"):
        step(payload)
    assert keys(s3, stack.model_bucket) == before


def test_too_little_data_is_skipped_and_a_failed_query_is_recorded(
    stack: Stack, s3: Any, step: Callable[..., dict[str, Any]]
) -> None:
    now = datetime.now(UTC)
    write_log(s3, stack.model_bucket, shop_log(now, users=8, per_user=10), now)
    skipped = step({"step": "query", "execution": "small"})
    assert skipped["status"] == "skipped" and "min_events=500" in skipped["reason"]
    assert keys(s3, stack.model_bucket, f"{FOLDER}small/") == [f"{FOLDER}small/run.json"]  # no window copy
    with pytest.raises(steps.StepError, match="skipped"):
        step({"step": "train", "run_id": "small"})
    assert step({"step": "record", "run_id": "small", "status": "skipped"})["status"] == "skipped"

    # The query step itself failed (no run id); the state machine records the error it caught.
    cause = json.dumps({"errorMessage": "Athena query failed", "errorType": "AthenaError"})
    failed = step(
        {
            "step": "record",
            "run_id": None,
            "status": "failed",
            "error": {"Error": "AthenaError", "Cause": cause},
        }
    )
    assert failed["status"] == "failed" and failed["reason"] == "AthenaError: Athena query failed"
    assert sorted(r["status"] for r in run_records(s3, stack.model_bucket)) == ["failed", "skipped"]


def test_the_engine_follows_events_times_epochs_unless_forced(env: dict[str, str]) -> None:
    settings = TrainingSettings.from_env(env)
    # The default: 6,500,000 event-epochs (docs/training-scale.md): 500k events x 13 epochs stay in Lambda.
    assert steps.choose_engine(settings, 500_000, 13) == "lambda"
    assert steps.choose_engine(settings, 500_001, 13) == "sagemaker"
    batch = settings.model_copy(update={"large_training_engine": "batch"})
    assert steps.choose_engine(batch, 10_000_000, 12) == "batch"
    # A catalog whose export would not fit the function's memory goes to the large engine too.
    assert steps.choose_engine(settings, 1_000, 12, 300_000) == "lambda"
    assert steps.choose_engine(settings, 1_000, 12, 300_001) == "sagemaker"
    forced = settings.model_copy(update={"training_engine": "lambda"})
    assert steps.choose_engine(forced, 10_000_000, 12) == "lambda"
    assert steps.choose_engine(settings.model_copy(update={"training_engine": "batch"}), 10, 1) == "batch"


def test_the_cli_runs_one_step_at_a_time_against_the_target(
    stack: Stack,
    s3: Any,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`nextpick train --step ... --aws` (moto is "AWS" here): each step's JSON output, the run id handed on."""
    from nextpick_local.cli import main

    now = datetime.now(UTC)
    write_log(s3, stack.model_bucket, shop_log(now), now)
    monkeypatch.setenv("STATE_TABLE_NAME", stack.state_table)

    def cli(*argv: str) -> dict[str, Any]:
        code = main(["train", *argv, "--hyperparameters", json.dumps(TINY), "--aws"])
        out, err = capsys.readouterr()
        assert code == 0, err
        answer: dict[str, Any] = json.loads(out)
        return answer

    ready = cli("--step", "query", "--run-id", "by-hand")
    assert ready["run_id"] == "by-hand" and ready["status"] == "ready"
    assert cli("--step", "train", "--run-id", "by-hand")["candidate_version"]
    assert cli("--step", "evaluate", "--run-id", "by-hand")["passed"] is True
    published = cli("--step", "publish", "--run-id", "by-hand")["published_version"]
    recorded = cli("--step", "record", "--run-id", "by-hand")  # the status from run.json: published
    assert recorded["status"] == "published" and recorded["published_version"] == published
    # A step on a folder that is not there: one line on stderr, exit 1.
    assert main(["train", "--step", "evaluate", "--run-id", "nowhere", "--aws"]) == 1
    assert "run the query step first" in capsys.readouterr().err


# ------------------------------------------------------------------- Lambda engine vs the container entry


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto S3 server: the test's process (the Lambda handler) and the train job's subprocess (the
    container) talk to the same bucket over HTTP, as the two engines share the real one."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    handler_module.reset_clients()
    try:
        yield endpoint
    finally:
        handler_module.reset_clients()
        server.stop()


def test_the_lambda_and_the_container_train_step_export_the_same_bytes(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="models")
    env = {
        "MODEL_BUCKET_NAME": "models",
        "MIN_EVENTS": "500",
        "MIN_USERS": "10",
        "HYPERPARAMETERS": json.dumps(TINY),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_training_settings.cache_clear()
    settings = TrainingSettings.from_env()
    now = datetime.now(UTC).replace(microsecond=0)
    write_log(s3, "models", shop_log(now), now, parquet=True)
    # Two run folders of the same window (same data, same start, same seed): one per engine.
    for execution in ("on-lambda", "on-container"):
        assert steps.query(steps.StepClients(s3), settings, execution, now)["status"] == "ready"
    windows = [
        s3.get_object(Bucket="models", Key=f"{FOLDER}{run}/window.parquet")["Body"].read()
        for run in ("on-lambda", "on-container")
    ]
    assert windows[0] == windows[1]

    on_lambda = handler_module.lambda_handler({"step": "train", "run_id": "on-lambda"}, Context())
    job = subprocess.run(
        [sys.executable, "-m", "nextpick_training.train_job", "--run-id", "on-container"],
        env=_job_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert job.returncode == 0, job.stderr[-3000:]
    on_container = json.loads(job.stdout.strip().splitlines()[-1])
    assert on_container["sha256"] == on_lambda["sha256"]
    bodies = [
        s3.get_object(Bucket="models", Key=f"{FOLDER}{run}/candidate/model.tflite")["Body"].read()
        for run in ("on-lambda", "on-container")
    ]
    assert (
        hashlib.sha256(bodies[1]).hexdigest() == hashlib.sha256(bodies[0]).hexdigest() == on_lambda["sha256"]
    )

    # A job on a run folder that is not there fails with the reason on stderr and a non-zero status.
    missing = subprocess.run(
        [sys.executable, "-m", "nextpick_training.train_job", "--run-id", "no-such-run"],
        env=_job_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert missing.returncode == 1 and "run the query step first" in missing.stderr


def test_a_container_job_killed_mid_training_resumes_to_the_same_bytes(
    moto_server: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A spot reclaim, for real: the train job's process is SIGKILLed once its first checkpoint is
    complete; the restarted job resumes from it (SageMaker's synced /opt/ml/checkpoints, a local
    directory here) and exports the bytes of a run never interrupted (the Lambda's, in process)."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="models")
    epochs = 8
    hyperparameters = {**TINY, "epochs": epochs}
    env = {"MODEL_BUCKET_NAME": "models", "MIN_EVENTS": "500", "MIN_USERS": "10"}
    for name, value in {**env, "HYPERPARAMETERS": json.dumps(hyperparameters)}.items():
        monkeypatch.setenv(name, value)
    get_training_settings.cache_clear()
    settings = TrainingSettings.from_env()
    now = datetime.now(UTC).replace(microsecond=0)
    write_log(s3, "models", shop_log(now), now, parquet=True)
    for execution in ("straight", "preempted"):
        steps.query(steps.StepClients(s3), settings, execution, now)
    straight = handler_module.lambda_handler({"step": "train", "run_id": "straight"}, Context())

    checkpoints = tmp_path / "opt-ml-checkpoints"
    command = [
        sys.executable,
        "-m",
        "nextpick_training.train_job",
        "--run-id",
        "preempted",
        "--checkpoints",
        str(checkpoints),
    ]
    job = subprocess.Popen(command, env=_job_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = checkpoints / "epoch-000001" / "manifest.json"
    deadline = time.monotonic() + 300
    while not first.exists() and job.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    job.kill()
    job.communicate(timeout=60)
    assert job.returncode == -signal.SIGKILL, "the job ended before it could be preempted"
    epochs_done = max(
        int(p.name.split("-")[1]) for p in checkpoints.glob("epoch-*") if (p / "manifest.json").exists()
    )
    assert 1 <= epochs_done < epochs

    resumed = subprocess.run(
        command, env=_job_env(), capture_output=True, text=True, timeout=600, check=False
    )

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    output = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert output["resumed_from_epoch"] >= epochs_done and output["epochs_trained"] == epochs
    assert output["sha256"] == straight["sha256"]


def _job_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(str(REPO / p) for p in ("functions", "training", "local", "")),
    }
