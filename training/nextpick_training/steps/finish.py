"""The retrain's last two steps: publish the candidate the gate passed, record the run (stages.py has the
first three and what they share; the contract: docs/retrain.md, section 8)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger

from nextpick.adapters import model_artifacts
from nextpick.adapters import model_registry as registry
from nextpick_training import data as data_lib
from nextpick_training import pipeline
from nextpick_training import publish as publish_lib
from nextpick_training import together as together_lib
from nextpick_training.pipeline import RetrainResult, RetrainStatus
from nextpick_training.settings import TrainingSettings

from . import large_catalog
from .run_folder import CANDIDATE_WEIGHTS, CHECKPOINTS, WINDOW
from .stages import (
    StepClients,
    StepError,
    candidate_bytes,
    dataset_of,
    existing_result,
    folder,
    forget_window,
)

logger = Logger(child=True)


# ------------------------------------------------------------------------------------------ publish


def _publish_output(result: RetrainResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "published_version": result.published_version,
        "previous_version": result.previous_version,
        "notified": result.notified,
    }


def _is_live(s3: Any, settings: TrainingSettings, version: str) -> bool:
    try:
        pointer = registry.current_pointer(s3, settings.model_bucket_name, settings.model_prefix)
    except Exception:
        return False
    if pointer is None:
        return False
    live = {pointer.get("version"), *(v.get("version") for v in pointer.get("variants") or ())}
    return version in live


def publish(aws: StepClients, settings: TrainingSettings, run_id: str) -> dict[str, Any]:
    """Publish the candidate the gate passed (the pointer switch is the commit point)."""
    run = folder(aws, settings, run_id)
    result = existing_result(run, "publish")
    if result.status is RetrainStatus.PUBLISHED:
        return _publish_output(result)
    if not result.gate_passed:
        raise StepError(f"run {run_id}: the gate has not passed its candidate ({result.reason})")
    tflite = candidate_bytes(run, result, "publish")
    assert result.candidate_version is not None and result.window_start is not None
    assert result.window_end is not None and result.candidate_metrics is not None
    if _is_live(aws.s3, settings, result.candidate_version):
        # An earlier attempt switched the pointer and died before noting it: published, once.
        result.published_version, result.previous_version = result.candidate_version, result.live_version
        result.status = RetrainStatus.PUBLISHED
        run.write_result(result)
        return _publish_output(result)
    weights = run.require(CANDIDATE_WEIGHTS, "publish")
    records, dataset = dataset_of(run, "publish")
    dataset = dataset.with_holdout_sample(settings.gate_max_users)
    # The weights are published as they are; the large-catalog artifacts were built from them by the
    # train step, so nothing here decodes them.
    hparams = pipeline.hyperparameters_from(result.hyperparameters)
    now = result.window_end
    t = time.perf_counter()
    # Bought together from every purchase of the window (no gate: it is not what the gate scores).
    scoring = together_lib.PartnerScoring()
    orders = together_lib.purchase_orders(records, data_lib.vocabulary_index(dataset.items))
    partners = together_lib.partner_table(orders, len(dataset.items), scoring)
    result.counts["orders"] = len(orders)
    pipeline.timed(result, "bought_together", t)
    # The large-catalog index or scan (docs/ranking-1m.md), as the train step built them beside the export.
    explore_index, explore_scan = large_catalog.read(run, "publish")
    t = time.perf_counter()
    outcome = publish_lib.publish(
        aws.s3,
        aws.events,
        settings.model_bucket_name,
        settings.model_prefix,
        settings.event_bus_name,
        tflite,
        state_dim=hparams.state_dim(),
        items=dataset.items,
        training_window={
            "start": registry.utc_iso(result.window_start),
            "end": registry.utc_iso(now),
            "events": dataset.train_events,
            "users": sum(1 for s in dataset.train_sequences if s),
            "first_event": registry.utc_iso(dataset.first_timestamp) if dataset.first_timestamp else None,
            "last_event": registry.utc_iso(dataset.last_timestamp) if dataset.last_timestamp else None,
            "holdout_users": len(dataset.holdout_users),
        },
        hyperparameters=result.hyperparameters,
        metrics=dict(result.candidate_metrics),
        created_at=now,
        weights=weights,
        trending=data_lib.trending_items(records, now),
        bought_together=model_artifacts.encode_partner_table(partners),
        bought_together_parameters={**scoring.as_dict(), "orders": len(orders)},
        explore_index=explore_index,
        explore_scan=explore_scan,
        mode=publish_lib.PublishMode(settings.publish_mode),
        challenger_share=settings.challenger_share,
    )
    pipeline.timed(result, "publish", t)
    result.published_version, result.previous_version = outcome.version, outcome.previous_version
    result.notified = outcome.notified
    result.status = RetrainStatus.PUBLISHED
    run.write_result(result)
    return _publish_output(result)


# ------------------------------------------------------------------------------------------ record


def _reason_of(error: dict[str, str]) -> str:
    """`Error: message`; a Lambda's Cause is its JSON error object, whose errorMessage is the message."""
    cause = error.get("Cause") or ""
    try:
        parsed = json.loads(cause)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and parsed.get("errorMessage"):
        cause = str(parsed["errorMessage"])
    return f"{error.get('Error') or 'Error'}: {cause}" if cause else str(error.get("Error") or "Error")


def record(
    aws: StepClients,
    settings: TrainingSettings,
    run_id: str | None,
    status: RetrainStatus | str,
    error: dict[str, str] | None = None,
    traceback_text: str | None = None,
    total_seconds: float | None = None,
) -> RetrainResult:
    """Write the run record (runs/<timestamp>.json) with the run's final status, then delete the window
    copy and the checkpoints (erasure: a window copy must not outlive its run). `run_id` None: the query
    step itself failed before naming a folder."""
    forget_window()  # the run is over: a warm container does not keep its events in memory
    final = RetrainStatus(status)
    if final is RetrainStatus.RUNNING:
        raise ValueError("status: a run is recorded as published, rejected, skipped or failed")
    now = datetime.now(UTC)
    run = folder(aws, settings, run_id) if run_id is not None else None
    result = run.read_result() if run is not None else None
    if result is None:
        result = pipeline.new_result(settings, now, run_id)
    if result.run_key is None:
        result.status = final
        if error is not None:
            result.reason = _reason_of(error)
            result.error = traceback_text or error.get("Cause")
        elif final is RetrainStatus.FAILED and result.reason in ("not finished", ""):
            result.reason = "failed without an error"
        result.finished_at = now
        total = total_seconds if total_seconds is not None else (now - result.started_at).total_seconds()
        result.durations["total"] = round(total, 3)
        pipeline.record_run(aws.s3, settings, result)
        if run is not None:
            run.write_result(result)
    if run is not None:
        erased = run.delete(WINDOW) + run.delete(CHECKPOINTS)
        logger.info("run recorded", extra={"run_key": result.run_key, "deleted_objects": erased})
    return result
