"""One retrain run: event log -> candidate model -> gate against the live model -> publish or not.

    read the log window -> (too little data: skipped, nothing touched)
    -> hold out each user's last event -> train on the rest -> export to .tflite
    -> evaluate the candidate through LiteRT on the exported bytes
    -> evaluate the live model (pointer -> manifest -> sha256-checked bytes) on the same held-out users,
       mapping their items through the live manifest's vocabulary (unknown -> index 0)
    -> gate: first model, or the candidate is not worse than the live model: the mean per-user NDCG@k
       difference is above -max(tolerance, z x its standard error) (a paired comparison)
    -> publish (model, manifest, pointer, ModelPublished) or reject
    -> record the decision and both scores as runs/<timestamp>.json

The published model is the one trained on the training split, i.e. exactly the bytes the gate
scored (see docs/retrain.md). Any exception makes the run `failed`; the pointer is the last thing a
publish writes, so a failed run never changes what is served.

The stages are `nextpick_training.steps` (query, train, evaluate, publish, record), which hand over
through a run folder in the model bucket (docs/retrain.md, section 8); this module holds what they share
(the result, reading the window, evaluation, the gate, the run record) and `run_retrain`, the steps in
sequence in one process.
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from nextpick.adapters import model_registry as registry
from nextpick.adapters.dynamodb_catalog import scan_catalog
from nextpick.domain.events import CatalogItem, EventType
from nextpick.domain.state import TimedInteraction
from nextpick.errors import ModelIntegrityError, NotFound
from nextpick_training import data as data_lib
from nextpick_training import evaluate as evaluate_lib
from nextpick_training import event_log, window_query
from nextpick_training import export as export_lib
from nextpick_training import model as model_lib
from nextpick_training.athena_log import AthenaWindow
from nextpick_training.scoring import ServedScorer
from nextpick_training.settings import TrainingSettings

logger = Logger(child=True)

PURCHASE = EventType.PURCHASE.code


class RetrainStatus(StrEnum):
    # Only in a run folder's run.json while the steps run; a recorded run is one of the other four.
    RUNNING = "running"
    PUBLISHED = "published"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    FAILED = "failed"


class RetrainResult(BaseModel):
    """What a run decided and why; also the body of `runs/<timestamp>.json`."""

    status: RetrainStatus
    reason: str
    started_at: datetime
    finished_at: datetime | None = None
    window_start: datetime | None = None
    window_end: datetime | None = None
    candidate_version: str | None = None
    candidate_metrics: dict[str, float] | None = None
    live_version: str | None = None
    live_metrics: dict[str, float] | None = None
    gate_metric: str = "ndcg@10"
    gate_tolerance: float = 0.0
    # The paired comparison behind the gate: mean per-user NDCG difference (candidate - live), its
    # standard error, and how far below zero the difference may go before the candidate is "worse".
    gate_difference: float | None = None
    gate_standard_error: float | None = None
    gate_allowance: float | None = None
    published_version: str | None = None
    previous_version: str | None = None
    # Whether the ModelPublished event was accepted by the bus (published runs only).
    notified: bool | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, int] = Field(default_factory=dict)
    durations: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    run_key: str | None = None
    # The steps' hand-over (docs/retrain.md, "Steps"): the run folder's id, the engine the query step
    # chose for training, and the gate's decision between the evaluate and publish steps.
    run_id: str | None = None
    engine: str | None = None
    gate_passed: bool | None = None


def hyperparameters_from(overrides: dict[str, Any]) -> model_lib.Hyperparameters:
    """`model.Hyperparameters` with the settings' overrides (lists become tuples); unknown names fail."""
    known = {f.name for f in dataclasses.fields(model_lib.Hyperparameters)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown hyperparameters: {', '.join(unknown)}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return model_lib.Hyperparameters(**values)


def metrics_dict(metrics: evaluate_lib.BasketMetrics) -> dict[str, float]:
    k = metrics.k
    return {
        f"hr@{k}": round(metrics.hit_rate, 6),
        f"ndcg@{k}": round(metrics.ndcg, 6),
        f"recall@{k}": round(metrics.recall, 6),
        "users": float(metrics.users),
    }


class _GateScorer(ServedScorer):
    """Scores like serving, excluding what the request would exclude (index 0 always; by default the
    shopper's purchased items, `gate_exclusion`)."""

    def __init__(self, model: Any, exclusion: str) -> None:
        super().__init__(model)
        self._exclusion = exclusion

    def __call__(self, history: Sequence[TimedInteraction], now: float, exclude: np.ndarray) -> np.ndarray:
        mask = np.array(exclude, dtype=np.float32)
        if self._exclusion == "purchased":
            bought = [e[0] for e in history if e[1] == PURCHASE and 0 < e[0] < len(mask)]
            mask[bought] = 1.0
        return np.asarray(super().__call__(history, now, mask), dtype=np.float32)


def _evaluate(
    model: Any, histories: Any, nows: Any, targets: Any, num_items: int, settings: TrainingSettings
) -> evaluate_lib.BasketMetrics:
    """The gate's protocol is the benchmarks' next-basket protocol (docs/quality.md): the whole held-out
    basket is the target, repeats allowed, nothing excluded beyond what serving would exclude."""
    return evaluate_lib.evaluate_baskets(
        _GateScorer(model, settings.gate_exclusion),
        histories,
        nows,
        targets,
        num_items,
        k=settings.gate_k,
        exclude_seen=settings.gate_exclusion == "seen",
    )


def paired_difference(
    candidate: Sequence[float] | np.ndarray, live: Sequence[float] | np.ndarray
) -> tuple[float, float]:
    """Mean and standard error of the per-user differences (candidate - live) on the same users.

    Both models rank the same held-out events, so the per-user differences are paired: their spread,
    not each model's own, is what says whether a gap between the two means is more than noise."""
    differences = np.asarray(candidate, dtype=np.float64) - np.asarray(live, dtype=np.float64)
    if len(differences) < 2:
        return float(differences.mean()) if len(differences) else 0.0, 0.0
    return float(differences.mean()), float(differences.std(ddof=1) / np.sqrt(len(differences)))


def _map_holdout(
    dataset: data_lib.Dataset, items: Sequence[str | None]
) -> tuple[list[list[TimedInteraction]], list[list[int]]]:
    """The held-out histories and target baskets in another vocabulary (unknown items -> index 0)."""
    index = data_lib.vocabulary_index(items)
    histories = [
        [(index.get(item_id, 0), t, s, ts) for item_id, t, s, ts in history]
        for history in dataset.holdout_history_ids()
    ]
    targets = [[index.get(item_id, 0) for item_id in basket] for basket in dataset.holdout_item_ids]
    return histories, targets


def _run_key(settings: TrainingSettings, started_at: datetime) -> str:
    return f"{settings.runs_prefix}{started_at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"


def _recorded_run_id(s3: Any, settings: TrainingSettings, key: str) -> str | None:
    body = s3.get_object(Bucket=settings.model_bucket_name, Key=key)["Body"].read()
    run_id = json.loads(body).get("run_id")
    return str(run_id) if run_id is not None else None


def record_run(s3: Any, settings: TrainingSettings, result: RetrainResult) -> str:
    """Write `runs/<timestamp>.json` (never overwriting: a same-second run gets a `-N` suffix; a retried
    record step finds its own run's record instead of writing a second one)."""
    base = _run_key(settings, result.started_at)
    for attempt in range(100):
        key = base if attempt == 0 else base.replace(".json", f"-{attempt}.json")
        result.run_key = key
        body = result.model_dump_json(indent=2).encode()
        try:
            s3.put_object(
                Bucket=settings.model_bucket_name,
                Key=key,
                Body=body,
                ContentType="application/json",
                IfNoneMatch="*",
            )
            return key
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("PreconditionFailed", "412"):
                raise
            if result.run_id is not None and _recorded_run_id(s3, settings, key) == result.run_id:
                return key  # this run's own record, written by an attempt that died before noting it
    raise RuntimeError(f"could not find a free run key next to {base}")


def new_result(settings: TrainingSettings, now: datetime, run_id: str | None = None) -> RetrainResult:
    """A run's result before any step has run."""
    return RetrainResult(
        status=RetrainStatus.RUNNING,
        reason="not finished",
        started_at=now,
        window_start=now - timedelta(days=settings.training_window_days),
        window_end=now,
        gate_metric=f"ndcg@{settings.gate_k}",
        gate_tolerance=settings.gate_tolerance,
        run_id=run_id,
    )


def run_retrain(
    s3: Any,
    events: Any,
    settings: TrainingSettings,
    now: datetime | None = None,
    dynamodb: Any = None,
    run_id: str | None = None,
) -> RetrainResult:
    """Run the whole pipeline once: the steps (`nextpick_training.steps`) in sequence in this process,
    through the same run folder a state machine's steps hand over through. Never raises: every outcome
    (including errors) is a result."""
    # Imported here: the steps build on this module's result, gate and evaluation helpers.
    from nextpick_training import steps

    started = time.perf_counter()
    now = (now or datetime.now(UTC)).astimezone(UTC)
    run_id = run_id or f"run-{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
    aws = steps.StepClients(s3=s3, events=events, dynamodb=dynamodb)
    status, error, trace = RetrainStatus.FAILED, None, None
    try:
        if steps.query(aws, settings, run_id, now)["status"] == "skipped":
            status = RetrainStatus.SKIPPED
        else:
            steps.train(aws, settings, run_id)
            passed = steps.evaluate(aws, settings, run_id)["passed"]
            if passed:
                steps.publish(aws, settings, run_id)
            status = RetrainStatus.PUBLISHED if passed else RetrainStatus.REJECTED
    except Exception as exc:
        error = {"Error": type(exc).__name__, "Cause": str(exc)}
        trace = "".join(traceback.format_exception(exc, limit=-8))
        logger.exception("retrain failed; the live model is unchanged")
    try:
        return steps.record(
            aws, settings, run_id, status, error, trace, total_seconds=time.perf_counter() - started
        )
    except Exception as exc:
        logger.exception("could not record the run")
        result = new_result(settings, now, run_id)
        result.status = RetrainStatus.FAILED
        result.reason = f"{error['Error']}: {error['Cause']}" if error else f"{type(exc).__name__}: {exc}"
        result.error = trace or "".join(traceback.format_exception(exc, limit=-8))
        result.durations["total"] = round(time.perf_counter() - started, 3)
        result.finished_at = datetime.now(UTC)
        return result


def timed(result: RetrainResult, name: str, started: float) -> None:
    result.durations[name] = round(time.perf_counter() - started, 3)


def read_log_window(
    s3: Any, settings: TrainingSettings, start: datetime, end: datetime, stats: event_log.LogStats
) -> list[event_log.LogRecord]:
    """The window's distinct, not erased events, through the configured query engine (issue 14)."""
    if settings.event_log_engine == "athena":
        import boto3

        engine = AthenaWindow(
            boto3.client("athena"),
            settings.event_log_database,
            settings.event_log_table,
            settings.event_log_work_group,
        )
        records = window_query.read_window(engine, start, end, stats)
        logger.info("window query ran on Athena", extra={"athena": engine.statistics})
        return records
    return window_query.read_window_duckdb(
        s3, settings.model_bucket_name, settings.event_log_prefix, start, end, stats
    )


def read_window(
    s3: Any, dynamodb: Any, settings: TrainingSettings, now: datetime, result: RetrainResult
) -> tuple[list[event_log.LogRecord], list[CatalogItem], data_lib.Dataset]:
    """1. The log window and the catalog."""
    assert result.window_start is not None
    t = time.perf_counter()
    stats = event_log.LogStats()
    records = read_log_window(s3, settings, result.window_start, now, stats)
    # The vocabulary is the catalog (plus whatever the events mention): every catalog item is published,
    # including items that never had an event. No catalog client: the events alone (tests, tiny shops).
    catalog = scan_catalog(dynamodb, settings.items_table_name) if dynamodb is not None else []
    dataset = data_lib.build_dataset(records, catalog)
    timed(result, "read", t)
    result.counts = {
        **stats.as_dict(),
        "events": dataset.events,
        "users": len(dataset.users),
        "items": dataset.num_items - 1,
        "catalog_items": len(catalog),
        "train_events": dataset.train_events,
        "holdout_users": len(dataset.holdout_users),
    }
    logger.info("event log read", extra={"counts": result.counts})
    return records, catalog, dataset


def too_little(dataset: data_lib.Dataset, settings: TrainingSettings) -> str | None:
    """2. Why there is not enough to learn from, if there is not."""
    if dataset.events < settings.min_events:
        return f"only {dataset.events} events in the window (min_events={settings.min_events})"
    if len(dataset.users) < settings.min_users:
        return f"only {len(dataset.users)} users in the window (min_users={settings.min_users})"
    if not dataset.holdout_users or not any(len(s) >= 2 for s in dataset.train_sequences):
        return "no user has enough baskets to both train and hold one out"
    return None


def evaluate_candidate(
    tflite: bytes, dataset: data_lib.Dataset, settings: TrainingSettings, result: RetrainResult
) -> evaluate_lib.BasketMetrics:
    """The exported bytes scored through LiteRT on the held-out baskets."""
    t = time.perf_counter()
    candidate = export_lib.ExportedModel(tflite)
    metrics = _evaluate(
        candidate,
        dataset.holdout_histories,
        dataset.holdout_nows,
        dataset.holdout_targets,
        candidate.num_items,
        settings,
    )
    result.candidate_metrics = metrics_dict(metrics)
    timed(result, "evaluate_candidate", t)
    return metrics


def evaluate_live(
    s3: Any, settings: TrainingSettings, dataset: data_lib.Dataset, result: RetrainResult
) -> tuple[dict[str, Any] | None, evaluate_lib.BasketMetrics | None, str | None]:
    """4. The live model on the same held-out users: (pointer, metrics, why it cannot be compared)."""
    t = time.perf_counter()
    live_problem = None
    live_metrics: evaluate_lib.BasketMetrics | None = None
    try:
        pointer = registry.current_pointer(s3, settings.model_bucket_name, settings.model_prefix)
    except ModelIntegrityError as exc:
        # Serving cannot read it either; publishing replaces it (publish.py swaps it by its ETag).
        pointer, live_problem = None, f"the live pointer is unreadable ({exc})"
        logger.warning(live_problem)
    if pointer is not None:
        result.live_version = str(pointer.get("version"))
        try:
            manifest, live_bytes = registry.load_live(s3, settings.model_bucket_name, pointer)
        except (NotFound, ModelIntegrityError) as exc:
            # Serving refuses such a model too, so there is nothing live to protect.
            live_problem = f"live model {result.live_version} is unusable ({exc})"
            logger.warning(live_problem)
        else:
            live = export_lib.ExportedModel(live_bytes)
            live_histories, live_targets = _map_holdout(dataset, manifest["items"])
            live_metrics = _evaluate(
                live, live_histories, dataset.holdout_nows, live_targets, live.num_items, settings
            )
            result.live_metrics = metrics_dict(live_metrics)
    timed(result, "evaluate_live", t)
    return pointer, live_metrics, live_problem


def gate(
    settings: TrainingSettings,
    result: RetrainResult,
    candidate_metrics: evaluate_lib.BasketMetrics,
    pointer: dict[str, Any] | None,
    live_metrics: evaluate_lib.BasketMetrics | None,
    live_problem: str | None,
) -> tuple[bool, str]:
    """5. Publish unless the candidate is worse than the live model beyond the held-out set's noise."""
    if live_problem is not None:
        return True, live_problem
    if pointer is None:
        return True, "first model"
    assert result.live_metrics is not None and live_metrics is not None and result.candidate_metrics
    metric = result.gate_metric
    candidate_score, live_score = result.candidate_metrics[metric], result.live_metrics[metric]
    difference, standard_error = paired_difference(
        candidate_metrics.ndcg_per_user, live_metrics.ndcg_per_user
    )
    allowance = max(settings.gate_tolerance, settings.gate_confidence_z * standard_error)
    result.gate_difference, result.gate_standard_error = difference, standard_error
    result.gate_allowance = allowance
    passed = difference >= -allowance
    verdict = "not worse than" if passed else "worse than"
    return passed, (
        f"candidate {metric} {candidate_score:.4f} {verdict} live {live_score:.4f}: paired difference "
        f"{difference:+.4f} (standard error {standard_error:.4f}), allowed down to -{allowance:.4f}"
    )
