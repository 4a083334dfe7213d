"""The state machine's tasks on this machine: the steps through the stand-in's invoker, and the large
engines' training jobs as local processes running the retrain image's train entry
(`python -m nextpick_training.train_job`), with this checkout's code as the image.

* SageMaker (`start_training_job`): the job's `ContainerArguments` with `CheckpointConfig.LocalPath`
  (/opt/ml/checkpoints) replaced by a local directory, the job's `Environment` over the functions'.
  As SageMaker does, the directory is filled from `CheckpointConfig.S3Uri` before the container starts
  and every file written to it is uploaded there while it runs (every 0.5 s, and once at the end).
  A spot reclaim kills the container and starts it again on a fresh directory, within the same job
  (managed spot training: the state machine never sees it, only `SecondaryStatusTransitions` do).
* Batch (`submit_job`): `ContainerOverrides.Command` as the container's arguments (checkpoints on the
  S3 prefix directly), the job definition's `Environment`; an attempt that ends is judged by the job
  definition's `RetryStrategy.EvaluateOnExit` as Batch judges it (a spot reclaim's status reason
  "Host EC2 ... terminated." matches `Host EC2*`: retried; an exit code != 0: EXIT), up to `Attempts`.

`reclaim_next` (tests, `POST /_local/retrain {"reclaim_spot": n}`) makes the next job lose its capacity
n times, each time as soon as a complete checkpoint (its manifest.json) is in S3, with SIGKILL: what
a reclaim does after its two-minute warning, with no help from the job."""

from __future__ import annotations

import fnmatch
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from nextpick_local.standin.functions import FunctionError, Invoker

TRAIN_JOB = [sys.executable, "-m", "nextpick_training.train_job"]
SYNC_SECONDS = 0.5
WATCH_SECONDS = 0.2
# What Batch reports for an attempt whose spot instance was reclaimed, and for a container that exited.
SPOT_RECLAIM_REASON = "Host EC2 (instance i-0local) terminated."
CONTAINER_EXITED_REASON = "Essential container in task exited"
# A checkpoint is taken once its manifest is written (nextpick_training.checkpoints writes it last).
CHECKPOINT_MANIFEST = "manifest.json"


def split_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix


@dataclass
class _Job:
    name: str
    arn: str
    status: str
    reason: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    transitions: list[dict[str, Any]] = field(default_factory=list)
    output: str = ""


@dataclass
class _Attempt:
    """One container run: its exit code, and whether the stand-in reclaimed its capacity."""

    exit_code: int
    reclaimed: bool


class LocalJobs:
    """moto_patches.LocalTasks for the local stack (see the module docstring)."""

    def __init__(
        self,
        invoker: Invoker,
        function_ids: Mapping[str, str],
        resources: Mapping[str, Any],
        s3: Any,
        workdir: Path,
        log: TextIO | None = None,
    ) -> None:
        self._invoker = invoker
        # function name or ARN -> logical id.
        self._function_ids = dict(function_ids)
        self._resources = resources
        self._s3 = s3
        self._workdir = workdir
        self._log = log
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()
        self._children: set[subprocess.Popen[bytes]] = set()
        # (bucket, key) -> (mtime, size) of each checkpoint file uploaded (the SageMaker sync).
        self._uploaded: dict[tuple[str, str], tuple[int, int]] = {}
        self.reclaim_next = 0

    # ------------------------------------------------------------------ the steps (Lambda)

    def invoke(self, function_name: str, event: Any) -> tuple[Any, str | None]:
        logical_id = self._function_ids.get(function_name, function_name)
        try:
            return self._invoker.invoke(logical_id, event), None
        except FunctionError as error:
            return {"errorType": error.error_type, "errorMessage": str(error)}, error.error_type

    def get_function(self, function_name: str) -> dict[str, Any]:
        logical_id = self._function_ids.get(function_name, function_name)
        # The image is this checkout: the local jobs run its code, as the image would.
        image = f"local/nextpick:{logical_id}"
        return {
            "Configuration": {"FunctionName": function_name, "PackageType": "Image"},
            "Code": {"RepositoryType": "ECR", "ImageUri": image, "ResolvedImageUri": image},
        }

    # ------------------------------------------------------------------ SageMaker

    def start_training_job(self, parameters: dict[str, Any]) -> dict[str, Any]:
        name = str(parameters["TrainingJobName"])
        job = self._new_job(name, f"arn:aws:sagemaker:local:000000000000:training-job/{name}", "InProgress")
        thread = threading.Thread(target=self._run_sagemaker, args=(job, parameters), daemon=True)
        thread.start()
        return {"TrainingJobArn": job.arn}

    def describe_training_job(self, name: str) -> dict[str, Any]:
        job = self._jobs[name]
        with self._lock:
            return {
                "TrainingJobName": job.name,
                "TrainingJobArn": job.arn,
                "TrainingJobStatus": job.status,
                "FailureReason": job.reason,
                "SecondaryStatusTransitions": list(job.transitions),
                "EnableManagedSpotTraining": True,
            }

    def _run_sagemaker(self, job: _Job, parameters: dict[str, Any]) -> None:
        try:
            checkpoint = parameters["CheckpointConfig"]
            local_path = str(checkpoint.get("LocalPath", "/opt/ml/checkpoints"))
            bucket, prefix = split_s3_uri(str(checkpoint["S3Uri"]))
            environment = {str(k): str(v) for k, v in (parameters.get("Environment") or {}).items()}
            arguments = parameters["AlgorithmSpecification"].get("ContainerArguments") or ["train"]
            restarts = 0
            while True:
                directory = self._workdir / job.name / f"instance-{restarts}" / "checkpoints"
                self._download(bucket, prefix, directory)
                argv = [str(directory) if a == local_path else str(a) for a in arguments]
                self._transition(job, "Training", f"container started (instance {restarts})")
                attempt = self._run_container(
                    argv, environment, watch=(bucket, prefix), sync=(directory, bucket, prefix)
                )
                if not attempt.reclaimed:
                    break
                restarts += 1
                self._transition(job, "Interrupted", "spot capacity reclaimed; restarting from checkpoints")
            with self._lock:
                job.status = "Completed" if attempt.exit_code == 0 else "Failed"
                if attempt.exit_code != 0:
                    job.reason = f"AlgorithmError: the training container exited with {attempt.exit_code}"
        except Exception as error:  # a local fault must end the job, or the execution would wait forever
            with self._lock:
                job.status, job.reason = "Failed", f"ClientError: {type(error).__name__}: {error}"

    # ------------------------------------------------------------------ Batch

    def submit_job(self, parameters: dict[str, Any]) -> dict[str, Any]:
        name = str(parameters["JobName"])
        job = self._new_job(name, f"arn:aws:batch:local:000000000000:job/{name}", "RUNNABLE")
        definition = self._job_definition(str(parameters["JobDefinition"]))
        thread = threading.Thread(target=self._run_batch, args=(job, definition, parameters), daemon=True)
        thread.start()
        return {"JobId": name, "JobName": name, "JobArn": job.arn}

    def describe_job(self, job_id: str) -> dict[str, Any]:
        job = self._jobs[job_id]
        with self._lock:
            return {
                "JobId": job.name,
                "JobName": job.name,
                "JobArn": job.arn,
                "Status": job.status,
                "StatusReason": job.reason,
                "Attempts": list(job.attempts),
            }

    def _job_definition(self, reference: str) -> dict[str, Any]:
        """The template's job definition the reference names (an ARN or name), or its only one: without a
        VPC the stack's condition leaves the Batch resources out (the reference is a placeholder), but
        locally the Batch engine runs all the same."""
        definitions = {
            logical_id: resource.get("Properties", {})
            for logical_id, resource in self._resources.items()
            if resource.get("Type") == "AWS::Batch::JobDefinition"
        }
        for logical_id, properties in definitions.items():
            if reference.endswith(logical_id) or str(properties.get("JobDefinitionName", "")) in reference:
                return properties
        if len(definitions) == 1:
            return next(iter(definitions.values()))
        raise ValueError(f"no job definition {reference!r} in the template")

    def _run_batch(self, job: _Job, definition: Mapping[str, Any], parameters: dict[str, Any]) -> None:
        try:
            container = definition.get("ContainerProperties", {})
            environment = {str(e["Name"]): str(e["Value"]) for e in container.get("Environment", [])}
            command = (parameters.get("ContainerOverrides") or {}).get("Command") or container.get(
                "Command", []
            )
            strategy = definition.get("RetryStrategy") or {}
            attempts_allowed = int(strategy.get("Attempts", 1))
            with self._lock:
                job.status = "RUNNING"
            while True:
                checkpoints = next((a for a in command if str(a).startswith("s3://")), None)
                watch = split_s3_uri(str(checkpoints)) if checkpoints else None
                attempt = self._run_container([str(a) for a in command], environment, watch=watch)
                reason = SPOT_RECLAIM_REASON if attempt.reclaimed else CONTAINER_EXITED_REASON
                container_reason = "" if attempt.reclaimed else "exited"
                with self._lock:
                    job.attempts.append(
                        {
                            "Container": {"ExitCode": attempt.exit_code, "Reason": container_reason},
                            "StatusReason": reason,
                        }
                    )
                if attempt.exit_code == 0 and not attempt.reclaimed:
                    with self._lock:
                        job.status, job.reason = "SUCCEEDED", CONTAINER_EXITED_REASON
                    return
                action = evaluate_on_exit(
                    strategy.get("EvaluateOnExit", []), reason, container_reason, attempt.exit_code
                )
                if action == "EXIT" or len(job.attempts) >= attempts_allowed:
                    with self._lock:
                        job.status, job.reason = "FAILED", reason
                    return
        except Exception as error:
            with self._lock:
                job.status, job.reason = "FAILED", f"{type(error).__name__}: {error}"

    # ------------------------------------------------------------------ the container

    def _new_job(self, name: str, arn: str, status: str) -> _Job:
        with self._lock:
            if name in self._jobs:
                raise ValueError(f"a job named {name} exists already")
            job = self._jobs[name] = _Job(name, arn, status)
            return job

    def _transition(self, job: _Job, status: str, message: str) -> None:
        with self._lock:
            job.transitions.append({"Status": status, "StatusMessage": message, "StartTime": time.time()})

    def _run_container(
        self,
        argv: list[str],
        environment: Mapping[str, str],
        watch: tuple[str, str] | None,
        sync: tuple[Path, str, str] | None = None,
    ) -> _Attempt:
        """Run the train entry to its end, or until the stand-in reclaims its capacity (SIGKILL once a
        checkpoint is complete in S3, if `reclaim_next` asks for it)."""
        env = {**os.environ, **environment, "TF_CPP_MIN_LOG_LEVEL": "2"}
        log = self._log or sys.stdout
        log.flush()
        child = subprocess.Popen([*TRAIN_JOB, *argv], stdout=log, stderr=log, env=env)
        self._children.add(child)
        reclaimed = False
        try:
            while child.poll() is None:
                time.sleep(WATCH_SECONDS)
                if sync is not None:
                    self._upload(*sync)
                if watch is not None and self.reclaim_next > 0 and self._has_checkpoint(*watch):
                    child.send_signal(signal.SIGKILL)
                    child.wait()
                    self.reclaim_next -= 1
                    reclaimed = True
            if sync is not None and not reclaimed:
                self._upload(*sync)
        finally:
            self._children.discard(child)
        return _Attempt(child.returncode, reclaimed)

    def _has_checkpoint(self, bucket: str, prefix: str) -> bool:
        listing = self._s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return any(o["Key"].endswith("/" + CHECKPOINT_MANIFEST) for o in listing.get("Contents", []))

    def _download(self, bucket: str, prefix: str, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                target = directory / item["Key"][len(prefix) :].lstrip("/")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(self._s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())

    def _upload(self, directory: Path, bucket: str, prefix: str) -> None:
        """What SageMaker does with the checkpoint directory: new or changed files go to S3, deleted
        ones are deleted there (a file still being written is uploaded again once it changes)."""
        local = {
            path.relative_to(directory).as_posix(): path for path in directory.rglob("*") if path.is_file()
        }
        uploaded = self._uploaded
        for name, path in sorted(local.items(), key=lambda item: item[0].endswith(CHECKPOINT_MANIFEST)):
            try:
                stat = path.stat()
                body = path.read_bytes()
            except FileNotFoundError:
                continue  # removed meanwhile (the job keeps its two newest checkpoints)
            key = f"{prefix.rstrip('/')}/{name}" if prefix else name
            signature = (stat.st_mtime_ns, stat.st_size)
            if uploaded.get((bucket, key)) != signature:
                self._s3.put_object(Bucket=bucket, Key=key, Body=body)
                uploaded[(bucket, key)] = signature
        for bucket_key in [k for k in uploaded if k[0] == bucket and k[1].startswith(prefix)]:
            name = bucket_key[1][len(prefix) :].lstrip("/")
            if name not in local:
                self._s3.delete_object(Bucket=bucket, Key=bucket_key[1])
                del uploaded[bucket_key]

    def stop(self) -> None:
        for child in list(self._children):
            child.kill()


def evaluate_on_exit(
    conditions: list[Mapping[str, Any]], status_reason: str, reason: str, exit_code: int
) -> str:
    """Batch's `EvaluateOnExit`: the action of the first entry all of whose given patterns match (each may
    end in `*`); RETRY when none matches."""
    for condition in conditions:
        checks = [
            ("OnStatusReason", status_reason),
            ("OnReason", reason),
            ("OnExitCode", str(exit_code)),
        ]
        if all(fnmatch.fnmatchcase(value, str(condition[key])) for key, value in checks if key in condition):
            return str(condition["Action"]).upper()
    return "RETRY"
