"""The retrain image's entry point (training/entry.sh): NEXTPICK_ENTRY=train-job runs the train job,
anything else the Lambda runtime's entry with the image's CMD, unchanged."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENTRY = REPO / "training" / "entry.sh"


def run_entry(tmp_path: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """The script with a `python3` on PATH that prints the arguments it was started with."""
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    python = fake / "python3"
    python.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    python.chmod(0o755)
    path = f"{fake}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["sh", str(ENTRY), *argv],
        env={"PATH": path, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_train_job_entry_runs_the_train_job_with_its_arguments(tmp_path: Path) -> None:
    done = run_entry(tmp_path, {"NEXTPICK_ENTRY": "train-job"}, "--run-id", "r1", "--checkpoints", "/x")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [
        "-m",
        "nextpick_training.train_job",
        "--run-id",
        "r1",
        "--checkpoints",
        "/x",
    ]
    # SageMaker starts a training image with the argument "train": it is not the job's.
    sagemaker = run_entry(tmp_path, {"NEXTPICK_ENTRY": "train-job"}, "train")
    assert sagemaker.stdout.split() == ["-m", "nextpick_training.train_job"]


def test_any_other_entry_is_the_lambda_runtime(tmp_path: Path) -> None:
    # The Lambda base image's /lambda-entrypoint.sh is not on this machine: the script execs it anyway.
    done = run_entry(tmp_path, {}, "nextpick_training.handler.lambda_handler")
    assert done.returncode != 0 and "/lambda-entrypoint.sh" in done.stderr
    assert "nextpick_training" not in done.stdout


def test_the_dockerfile_uses_the_entry_and_keeps_the_lambda_cmd() -> None:
    lines = [line.strip() for line in (REPO / "training" / "Dockerfile").read_text().splitlines()]
    (entrypoint,) = [
        json.loads(line[len("ENTRYPOINT ") :]) for line in lines if line.startswith("ENTRYPOINT ")
    ]
    (cmd,) = [json.loads(line[len("CMD ") :]) for line in lines if line.startswith("CMD ")]
    assert entrypoint == ["/usr/local/bin/nextpick-entry"]
    assert "COPY training/entry.sh /usr/local/bin/nextpick-entry" in lines
    assert cmd == ["nextpick_training.handler.lambda_handler"]
    assert os.access(ENTRY, os.X_OK)
