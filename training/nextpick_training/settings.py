"""Settings of the scheduled retrain job, read once per container from the Lambda environment.

Every field is read from the upper-cased environment variable of the same name (the convention
of `nextpick.settings.Settings`), e.g. `MODEL_BUCKET_NAME`, `TRAINING_WINDOW_DAYS`, `GATE_TOLERANCE`.
`HYPERPARAMETERS` is a JSON object of overrides for `nextpick_training.model.Hyperparameters`."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator

from nextpick.settings import EnvSettings


class TrainingSettings(EnvSettings):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model_bucket_name: str = "nextpick-models"
    # Prefix under which models/<version>/... and the pointer models/current.json live.
    model_prefix: str = "models/"
    # Prefix under which the Firehose stream writes the event log (events/year=.../month=.../day=...).
    event_log_prefix: str = "events/"
    # Prefix under which every run's decision is recorded as runs/<timestamp>.json.
    runs_prefix: str = "runs/"
    # Where the retrain's window query runs (issue 14, docs/event-log.md): "duckdb" over the log's objects
    # downloaded to /tmp (local stack, tests, small logs), or "athena" over the Glue table (deployed).
    event_log_engine: Literal["duckdb", "athena"] = "duckdb"
    event_log_database: str = "nextpick_event_log"
    event_log_table: str = "events"
    event_log_work_group: str = "primary"
    items_table_name: str = "nextpick-items"
    event_bus_name: str = "nextpick"
    # Only events whose `timestamp` lies in [now - training_window_days, now] are used.
    training_window_days: int = Field(default=90, ge=1, le=3650)
    # Below either threshold the run is `skipped` and nothing is touched.
    min_events: int = Field(default=1000, ge=1)
    min_users: int = Field(default=50, ge=1)
    # Gate: the candidate is published iff NDCG@10(candidate) >= NDCG@10(live) - gate_tolerance.
    gate_tolerance: float = Field(default=0.0, ge=0.0, le=1.0)
    # "Not worse" is judged against the noise of the held-out set: the candidate is rejected only if
    # its mean per-user NDCG is below the live model's by more than this many standard errors of the
    # paired difference (1.64: worse with 95 % one-sided confidence), or by more than gate_tolerance,
    # whichever allows more. 0 turns the gate into a plain comparison of the two means.
    gate_confidence_z: float = Field(default=1.64, ge=0.0, le=10.0)
    # Cut-off of the gate's ranking metrics (HR@k, NDCG@k, MRR@k).
    gate_k: int = Field(default=10, ge=1, le=100)
    # At most this many held-out users are scored (a deterministic sample by user-id hash), which
    # bounds the evaluation time of both models on large shops.
    gate_max_users: int = Field(default=5000, ge=1)
    # What the gate's rankings leave out besides index 0, as serving would: the user's purchased
    # items (serving's default), every item in the history, or nothing.
    gate_exclusion: Literal["purchased", "seen", "none"] = "purchased"
    # What a publish does (docs/retrain.md, "Publishing as a challenger"): `replace` makes the new model
    # the control; `challenger` makes it an A/B variant with `challenger_share` of the shoppers, the
    # control staying live, so it proves itself on real traffic first (docs/variants.md).
    publish_mode: Literal["replace", "challenger"] = "replace"
    challenger_share: float = Field(default=0.1, gt=0.0, lt=1.0)
    # The retrain's steps (issue 14, docs/retrain.md "Steps") hand over through
    # <model bucket>/<training_runs_prefix><run_id>/ (run.json, window.parquet, candidate/, checkpoints/).
    training_runs_prefix: str = "training-runs/"
    # Where the train step runs: "auto" chooses by the window's size (below), or one engine is forced.
    training_engine: Literal["auto", "lambda", "sagemaker", "batch"] = "auto"
    # The engine "auto" takes when the window is too large for one Lambda.
    large_training_engine: Literal["sagemaker", "batch"] = "sagemaker"
    # "auto" keeps training in Lambda while window events x epochs is at most this. 6,500,000 (~540k
    # events x 12 epochs) is docs/training-scale.md's threshold: the whole retrain measured at 300k, 1M
    # and 10M events costs 113 s + 76.6 us per event + 81.5 us per event-epoch, and the measured phases
    # may take 80 % of Lambda's 900 s.
    lambda_training_max_event_epochs: int = Field(default=6_500_000, ge=0)
    # ... and while the catalog has at most this many items: the train step's export and large-catalog
    # build peak at 2.9 GB at 300k items and 8.2 GB at 1M (docs/ranking-1m.md "Memory"), against
    # RetrainFunction's 4,096 MB; 300,000 is the largest size measured to fit, with 1.2 GB to spare.
    lambda_training_max_items: int = Field(default=300_000, ge=0)
    # TensorFlow's intra- and inter-op threads for training; 0 = TensorFlow's default, one per vCPU. The
    # model's bytes depend on the thread count (reductions are split per thread; docs/retrain.md
    # section 8), so engines with different vCPU counts give byte-identical models only when this pins
    # them to the same number.
    training_threads: int = Field(default=0, ge=0, le=256)
    # Overrides of model.Hyperparameters fields (unknown names are rejected when the run starts).
    hyperparameters: dict[str, Any] = Field(default_factory=dict)

    @field_validator("hyperparameters", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object of hyperparameter overrides")
        return value

    @field_validator("model_prefix", "event_log_prefix", "runs_prefix", "training_runs_prefix")
    @classmethod
    def _slash_terminated(cls, value: str) -> str:
        value = value.lstrip("/")
        return value if not value or value.endswith("/") else value + "/"


@lru_cache(maxsize=1)
def get_training_settings() -> TrainingSettings:
    """Settings for this container: parsed on first use, then reused for every invocation."""
    return TrainingSettings.from_env()
