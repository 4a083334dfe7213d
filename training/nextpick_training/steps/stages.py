"""The retrain's five steps (issue 14; the contract: docs/retrain.md, section 8); query, train and
evaluate here, publish and record in finish.py.

    query     read the window (Athena / DuckDB) and the catalog -> window.parquet, catalog.json, run.json;
              skip if too little; choose the training engine
    train     window -> Dataset -> train (checkpointed, resumable) -> export -> candidate/
    evaluate  candidate and live model on the same held-out users -> the gate's decision in run.json
    publish   the candidate's model, manifest, tables -> pointer switch -> ModelPublished
    record    runs/<timestamp>.json, then the window copy and the checkpoints are deleted

Each step reads what it needs from the run folder and writes its outputs there before it answers, so any
engine can run any step, and a retried step finds its outputs done or overwrites them with the same ones:
the query's run id is a function of the execution name, training resumes from its newest checkpoint and
ends in the same bytes, a publish whose version is already live is not published again, and a record
finds its own run record.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from nextpick.adapters import model_registry as registry
from nextpick_training import data as data_lib
from nextpick_training import export as export_lib
from nextpick_training import model as model_lib
from nextpick_training import pipeline
from nextpick_training.checkpoints import CheckpointStore, S3CheckpointStore
from nextpick_training.pipeline import RetrainResult, RetrainStatus
from nextpick_training.settings import TrainingSettings

from . import large_catalog
from .run_folder import (
    CANDIDATE_MODEL,
    CANDIDATE_WEIGHTS,
    CATALOG,
    CHECKPOINTS,
    RUN_ID,
    WINDOW,
    RunFolder,
    catalog_from_json,
    window_from_parquet,
)

logger = Logger(child=True)

ENGINES = ("lambda", "sagemaker", "batch")


class StepError(RuntimeError):
    """A step that cannot run on this run folder (a step before it has not run, or decided otherwise)."""


@dataclass(frozen=True)
class StepClients:
    s3: Any
    events: Any = None
    dynamodb: Any = None


def run_id_for(execution: str) -> str:
    """The run id of an execution name: the same name gives the same folder (a retried query reuses it)."""
    run_id = re.sub(r"[^A-Za-z0-9._-]", "-", execution).strip("-._")[:128]
    if not RUN_ID.match(run_id):
        raise ValueError(f"execution {execution!r} has no letter or digit to name a run folder")
    return run_id


def folder(aws: StepClients, settings: TrainingSettings, run_id: str) -> RunFolder:
    return RunFolder(aws.s3, settings.model_bucket_name, settings.training_runs_prefix, run_id)


def choose_engine(settings: TrainingSettings, events: int, epochs: int, num_items: int = 0) -> str:
    """Lambda while events x epochs fits one invocation (settings.lambda_training_max_event_epochs) and
    the catalog's export fits its memory (settings.lambda_training_max_items), else the large engine;
    `training_engine` other than "auto" forces one."""
    if settings.training_engine != "auto":
        return settings.training_engine
    if (
        events * epochs <= settings.lambda_training_max_event_epochs
        and num_items <= settings.lambda_training_max_items
    ):
        return "lambda"
    return settings.large_training_engine


def existing_result(run: RunFolder, step: str) -> RetrainResult:
    result = run.read_result()
    if result is None:
        raise StepError(f"{run.uri}run.json is missing: run the query step first (before {step!r})")
    return result


# ------------------------------------------------------------------------------------------ query


def _query_output(result: RetrainResult) -> dict[str, Any]:
    skipped = result.status is RetrainStatus.SKIPPED
    return {
        "run_id": result.run_id,
        "status": "skipped" if skipped else "ready",
        "reason": result.reason,
        "engine": result.engine,
        "counts": dict(result.counts),
    }


def query(
    aws: StepClients, settings: TrainingSettings, execution: str, started_at: datetime
) -> dict[str, Any]:
    """Read the window into the run folder, or decide that there is too little to train on."""
    run_id = run_id_for(execution)
    run = folder(aws, settings, run_id)
    done = run.read_result()
    if done is not None and done.engine is not None:
        return _query_output(done)  # a retried query: the folder is already written
    now = started_at.astimezone(UTC)
    result = pipeline.new_result(settings, now, run_id)
    hparams = pipeline.hyperparameters_from(settings.hyperparameters)
    # Fixed here, so the train step trains with them whatever environment its engine has.
    result.hyperparameters = json.loads(json.dumps(hparams.as_dict()))
    records, catalog, dataset = pipeline.read_window(aws.s3, aws.dynamodb, settings, now, result)
    engine = choose_engine(settings, dataset.events, hparams.epochs, dataset.num_items)
    too_little = pipeline.too_little(dataset, settings)
    if too_little:
        result.status, result.reason = RetrainStatus.SKIPPED, too_little
        logger.info("retrain skipped", extra={"reason": too_little})
    else:
        t = time.perf_counter()
        run.write_window(records, catalog)
        pipeline.timed(result, "window_copy", t)
        result.reason = f"window ready; training on {engine}"
    result.engine = engine
    run.write_result(result)  # last: a run.json with an engine says the folder is complete
    return _query_output(result)


# ------------------------------------------------------------------------------------------ train


def _train_output(result: RetrainResult, sha256: str) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "candidate_version": result.candidate_version,
        "sha256": sha256,
        "epochs_trained": result.counts.get("epochs_trained", 0),
        "resumed_from_epoch": result.counts.get("resumed_from_epoch", 0),
    }


# The last window read in this process, by the digest of its bytes: `run_retrain` runs train, evaluate
# and publish in one process, and parsing ~1M records and rebuilding their dataset three times would
# spend seconds of the one Lambda's 900 s for nothing. Another engine or a changed object misses it.
_last_window: tuple[str, list[Any], data_lib.Dataset] | None = None


def forget_window() -> None:
    """Drop the window held for the run's later steps (the record step: the run is over)."""
    global _last_window
    _last_window = None


def dataset_of(run: RunFolder, step: str) -> tuple[list[Any], data_lib.Dataset]:
    global _last_window
    window, catalog = run.require(WINDOW, step), run.require(CATALOG, step)
    digest = hashlib.sha256(window + b"\0" + catalog).hexdigest()
    if _last_window is not None and _last_window[0] == digest:
        return _last_window[1], _last_window[2]
    records, items = window_from_parquet(window), catalog_from_json(catalog)
    dataset = data_lib.build_dataset(records, items)
    _last_window = (digest, records, dataset)
    return records, dataset


def pin_threads(threads: int) -> None:
    """Fix TensorFlow's thread pools (0: leave its default). They can be set only before TensorFlow
    runs its first op; a warm container already pinned to the same number is fine, another is refused
    (its models would not be the bytes this setting promises)."""
    if threads <= 0:
        return
    import tensorflow as tf

    threading = tf.config.threading
    if (threading.get_intra_op_parallelism_threads(), threading.get_inter_op_parallelism_threads()) == (
        threads,
        threads,
    ):
        return
    try:
        threading.set_intra_op_parallelism_threads(threads)
        threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError as error:
        raise StepError(f"training_threads={threads} cannot be applied in this process: {error}") from error


def train(
    aws: StepClients, settings: TrainingSettings, run_id: str, checkpoints: CheckpointStore | None = None
) -> dict[str, Any]:
    """Train the candidate on the window's training split and export it to candidate/, with its
    large-catalog artifacts (`large_catalog`).

    `checkpoints` defaults to the run folder's checkpoints/ prefix (Lambda and Batch write there
    directly; SageMaker passes its synced local directory)."""
    run = folder(aws, settings, run_id)
    result = existing_result(run, "train")
    if result.status is RetrainStatus.SKIPPED:
        raise StepError(f"run {run_id} was skipped ({result.reason}): nothing to train")
    if result.candidate_version is not None:
        tflite = run.get(CANDIDATE_MODEL)
        if (
            tflite is not None
            and registry.make_version(result.started_at, hashlib.sha256(tflite).hexdigest())
            == result.candidate_version
        ):
            return _train_output(result, hashlib.sha256(tflite).hexdigest())
    t = time.perf_counter()
    _, dataset = dataset_of(run, "train")
    pipeline.timed(result, "read_window_copy", t)
    hparams = pipeline.hyperparameters_from(result.hyperparameters)
    pin_threads(settings.training_threads)
    store = checkpoints or S3CheckpointStore(aws.s3, run.bucket, run.key(CHECKPOINTS))
    t = time.perf_counter()
    trained = model_lib.train(
        dataset.train_sequences,
        dataset.num_items,
        hparams,
        item_tokens=dataset.item_tokens,
        checkpoints=store,
    )
    pipeline.timed(result, "train", t)
    t = time.perf_counter()
    tflite = export_lib.export_tflite(trained)
    pipeline.timed(result, "export", t)
    t = time.perf_counter()
    large_catalog.build(run, trained, tflite)
    pipeline.timed(result, "large_catalog", t)
    sha256 = registry.sha256_hex(tflite)
    run.put(CANDIDATE_WEIGHTS, export_lib.weights_bytes(trained))
    run.put(CANDIDATE_MODEL, tflite)
    result.candidate_version = registry.make_version(result.started_at, sha256)
    result.counts["epochs_trained"] = trained.epochs_trained
    result.counts["resumed_from_epoch"] = trained.resumed_from_epoch
    run.write_result(result)
    logger.info("candidate trained", extra={"version": result.candidate_version, "run_id": run_id})
    return _train_output(result, sha256)


# ------------------------------------------------------------------------------------------ evaluate


def candidate_bytes(run: RunFolder, result: RetrainResult, step: str) -> bytes:
    if result.candidate_version is None:
        raise StepError(f"run {run.run_id} has no candidate: run the train step before {step!r}")
    tflite = run.require(CANDIDATE_MODEL, step)
    if registry.make_version(result.started_at, registry.sha256_hex(tflite)) != result.candidate_version:
        raise StepError(f"{run.uri}{CANDIDATE_MODEL} is not candidate {result.candidate_version}")
    return tflite


def _evaluate_output(result: RetrainResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "passed": bool(result.gate_passed),
        "reason": result.reason,
        "candidate_metrics": result.candidate_metrics,
        "live_metrics": result.live_metrics,
    }


def evaluate(aws: StepClients, settings: TrainingSettings, run_id: str) -> dict[str, Any]:
    """Score candidate and live model on the same held-out users; the gate's decision goes to run.json."""
    run = folder(aws, settings, run_id)
    result = existing_result(run, "evaluate")
    if result.status is RetrainStatus.PUBLISHED:
        return _evaluate_output(result)  # decided and acted on: a retry changes nothing
    tflite = candidate_bytes(run, result, "evaluate")
    _, dataset = dataset_of(run, "evaluate")
    dataset = dataset.with_holdout_sample(settings.gate_max_users)
    result.counts["evaluated_users"] = len(dataset.holdout_users)
    result.live_version = result.live_metrics = None
    candidate_metrics = pipeline.evaluate_candidate(tflite, dataset, settings, result)
    pointer, live_metrics, live_problem = pipeline.evaluate_live(aws.s3, settings, dataset, result)
    passed, why = pipeline.gate(settings, result, candidate_metrics, pointer, live_metrics, live_problem)
    logger.info("gate decided", extra={"passed": passed, "why": why})
    result.gate_passed, result.reason = passed, why
    result.status = RetrainStatus.RUNNING if passed else RetrainStatus.REJECTED
    run.write_result(result)
    return _evaluate_output(result)
