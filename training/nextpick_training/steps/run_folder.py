"""The run folder a retrain's steps hand over through: `s3://<ModelBucket>/<training_runs_prefix><run_id>/`.

    run.json          the RetrainResult so far (each step reads it, adds its part, writes it back)
    window.parquet    the window's deduplicated, not erased event steps (personal data: the record step
                      deletes it, a lifecycle rule on the prefix is the backstop)
    catalog.json      the catalog as the query step read it (the vocabulary every later step rebuilds)
    candidate/        model.tflite and weights.npz (the trained weights and item tokens publish needs),
                      large_catalog.json and the explore index or scan it names (`steps.large_catalog`)
    checkpoints/      training checkpoints (`nextpick_training.checkpoints`)

Every later step rebuilds the same `Dataset` from window.parquet + catalog.json, so they all see exactly
the data the query step read, whichever engine runs them and however often they are retried.
"""

from __future__ import annotations

import json
import re
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
from botocore.exceptions import ClientError

from nextpick.domain.events import CatalogItem, EventType
from nextpick_training.event_log import LogRecord
from nextpick_training.pipeline import RetrainResult

RUN_JSON = "run.json"
WINDOW = "window.parquet"
CATALOG = "catalog.json"
CANDIDATE_MODEL = "candidate/model.tflite"
CANDIDATE_WEIGHTS = "candidate/weights.npz"
CHECKPOINTS = "checkpoints/"
# A run id is one S3 key segment and a SageMaker-job-name-friendly token (Step Functions execution names
# are at most 80 characters of this set once sanitised).
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COLUMNS = ("event_id", "user_id", "item_id", "event_type", "strength", "timestamp_us", "received_us")


def _micros(moment: datetime) -> int:
    """Exact microseconds since the epoch (a float would round; the steps must see the same instants)."""
    delta = moment.astimezone(UTC) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def window_to_parquet(records: list[LogRecord]) -> bytes:
    """The records, in their order, as one Parquet object (DuckDB; the venv has no pyarrow)."""
    arrays: dict[str, Any] = {
        "position": np.arange(len(records), dtype=np.int64),
        "event_id": np.array([r.event_id for r in records], dtype=object),
        "user_id": np.array([r.user_id for r in records], dtype=object),
        "item_id": np.array([r.item_id for r in records], dtype=object),
        "event_type": np.array([r.event_type.value for r in records], dtype=object),
        "strength": np.array([r.strength for r in records], dtype=np.float64),
        "timestamp_us": np.array([_micros(r.timestamp) for r in records], dtype=np.int64),
        "received_us": np.array([_micros(r.received_at) for r in records], dtype=np.int64),
        "step": np.array([r.step for r in records], dtype=np.int32),
        "observed": np.array([r.observed for r in records], dtype=np.bool_),
    }
    with tempfile.TemporaryDirectory(prefix="nextpick-run-") as folder, duckdb.connect() as db:
        target = Path(folder, WINDOW)
        db.register("window_records", arrays)
        select = "SELECT * FROM window_records ORDER BY position"
        db.execute(f"COPY ({select}) TO '{target.as_posix()}' (FORMAT parquet, COMPRESSION zstd)")
        return target.read_bytes()


def window_from_parquet(body: bytes) -> list[LogRecord]:
    """The records `window_to_parquet` wrote, equal field by field and in the same order."""
    with tempfile.TemporaryDirectory(prefix="nextpick-run-") as folder, duckdb.connect() as db:
        source = Path(folder, WINDOW)
        source.write_bytes(body)
        rows = db.execute(
            f"SELECT {', '.join(_COLUMNS)}, step, observed FROM read_parquet('{source.as_posix()}') "
            "ORDER BY position"
        ).fetchall()
    types = {t.value: t for t in EventType}
    return [
        LogRecord(
            event_id=event_id,
            user_id=user_id,
            item_id=item_id,
            event_type=types[event_type],
            strength=float(strength),
            timestamp=_moment(timestamp_us),
            received_at=_moment(received_us),
            step=int(step),
            observed=bool(observed),
        )
        for event_id, user_id, item_id, event_type, strength, timestamp_us, received_us, step, observed in rows
    ]


def catalog_from_json(body: bytes) -> list[CatalogItem]:
    return [CatalogItem.model_validate(item) for item in json.loads(body)]


def _is_missing(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound")


class RunFolder:
    """One run's folder in the model bucket; every read and write of the steps' hand-over goes here."""

    def __init__(self, s3: Any, bucket: str, prefix: str, run_id: str) -> None:
        if not RUN_ID.match(run_id):
            raise ValueError(f"run_id {run_id!r} is not a run id (letters, digits, '.', '_', '-')")
        self.s3, self.bucket, self.run_id = s3, bucket, run_id
        self.prefix = f"{prefix}{run_id}/"

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def put(self, name: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.s3.put_object(Bucket=self.bucket, Key=self.key(name), Body=body, ContentType=content_type)

    def get(self, name: str) -> bytes | None:
        try:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=self.key(name))["Body"].read()
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise
        return body

    def require(self, name: str, step: str) -> bytes:
        body = self.get(name)
        if body is None:
            raise FileNotFoundError(f"{self.uri}{name} is missing: run the steps before {step!r} first")
        return body

    def read_result(self) -> RetrainResult | None:
        body = self.get(RUN_JSON)
        return RetrainResult.model_validate_json(body) if body is not None else None

    def write_result(self, result: RetrainResult) -> None:
        self.put(RUN_JSON, result.model_dump_json(indent=2).encode(), "application/json")

    def write_window(self, records: list[LogRecord], catalog: list[CatalogItem]) -> None:
        self.put(WINDOW, window_to_parquet(records))
        body = json.dumps([item.model_dump(mode="json") for item in catalog]).encode()
        self.put(CATALOG, body, "application/json")

    def read_window(self, step: str) -> tuple[list[LogRecord], list[CatalogItem]]:
        return window_from_parquet(self.require(WINDOW, step)), catalog_from_json(self.require(CATALOG, step))

    def delete(self, prefix: str) -> int:
        """Delete every object under `prefix` of the folder (or the one object named so); how many."""
        deleted = 0
        paginator = self.s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key(prefix)):
            # One DeleteObject per key (a handful): the role needs s3:DeleteObject on the run folder only.
            for entry in page.get("Contents", ()):
                self.s3.delete_object(Bucket=self.bucket, Key=entry["Key"])
                deleted += 1
        return deleted
