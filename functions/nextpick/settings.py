"""Runtime settings, read once per container (at cold start) from the Lambda environment.

Domain code never reads os.environ; handlers call `get_settings()` and pass values down."""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Self

from pydantic import BaseModel, ConfigDict, Field


class EnvSettings(BaseModel):
    """Settings whose fields are read from the upper-cased environment variable of the same name."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        values = {name: env[name.upper()] for name in cls.model_fields if name.upper() in env}
        return cls.model_validate(values)


class Settings(EnvSettings):
    state_table_name: str = "nextpick-user-state"
    items_table_name: str = "nextpick-items"
    model_bucket_name: str = "nextpick-models"
    # Prefix in the bucket under which models/<version>/... and the pointer live.
    model_prefix: str = "models/"
    event_bus_name: str = "nextpick"
    event_log_stream_name: str = "nextpick-event-log"
    # Live trending (docs/trending.md): hour buckets of weighted event counts.
    trending_table_name: str = "nextpick-trending"
    # GET /trending reads this many hour buckets (the current one included) in one BatchGetItem (<= 100 keys).
    trending_window_hours: int = Field(default=24, ge=1, le=48)
    # An hour's counts weigh half as much this many hours later.
    trending_half_life_hours: float = Field(default=6.0, gt=0, le=168)
    # How long a container reuses the buckets it read (within the same hour; docs/trending.md, "Speed").
    trending_refresh_seconds: float = Field(default=60.0, ge=0)
    # Distinct items one hour bucket holds (400 KB item limit: 2,000 x (128-character id + number) < 300 KB).
    trending_max_items_per_bucket: int = Field(default=2000, ge=1, le=2500)
    # How often a warm container asks S3 whether a new model version was published.
    model_refresh_seconds: float = Field(default=60.0, ge=0)
    # How often a container asks the catalog artifact's pointer whether a new version was written
    # (docs/catalog-artifact.md); also the table fallback's re-read interval.
    catalog_refresh_seconds: float = Field(default=30.0, ge=0)
    # Where the catalog artifact lives in the model bucket.
    catalog_artifact_prefix: str = "catalog/"
    # How long a container serves the artifact version it holds while the artifact cannot be read, before
    # it reads the items table instead: the bound on serving an out-of-stock item in stock when S3 fails.
    catalog_max_stale_seconds: float = Field(default=120.0, ge=0)
    # How long a container serves a named rule set (or its absence) before it re-reads it from S3: an
    # admin's change reaches every container within it (docs/rules.md, "Where named sets live").
    rule_sets_refresh_seconds: float = Field(default=30.0, ge=0)
    recent_events_limit: int = Field(default=50, ge=1, le=500)
    processed_ids_limit: int = Field(default=200, ge=1, le=2000)
    purchased_items_limit: int = Field(default=200, ge=1, le=2000)
    max_write_attempts: int = Field(default=5, ge=1, le=20)
    exclude_purchased_default: bool = True
    default_k: int = Field(default=10, ge=1, le=100)
    max_k: int = Field(default=100, ge=1, le=1000)
    max_batch_events: int = Field(default=25, ge=1, le=100)
    max_body_bytes: int = Field(default=256 * 1024, ge=1024)
    # Bytes of event-log records one request may add to a user's state item (domain/requests.py says
    # why 192 KiB keeps every write under DynamoDB's 400 KB item limit).
    max_batch_log_bytes: int = Field(default=192 * 1024, ge=16 * 1024, le=256 * 1024)
    # Kinesis path (docs/kinesis.md): where records that are not valid events are parked.
    stream_rejects_queue_url: str = ""
    # Events stamped further than this in the future are rejected (clock skew allowance).
    max_future_skew_seconds: int = Field(default=300, ge=0)
    # Privacy (issue 9). The compaction's schedule, a rate(...) expression: an erasure's answer states
    # by when the event log is rewritten without the shopper (domain/erasure.log_erasure_bound).
    log_compaction_schedule: str = Field(
        default="rate(6 hours)", pattern=r"^rate\(\d+ (minute|hour|day)s?\)$"
    )
    # How long the event log keeps objects (the bucket's lifecycle rule): compaction forgets older
    # tombstones, which can match nothing left.
    event_log_retention_days: int = Field(default=395, ge=1)
    # `nextpick report`'s scheduled run (docs/attribution.md): the days of impressions it reports on.
    report_window_days: int = Field(default=14, ge=1, le=90)
    # The Secrets Manager secret (name or ARN) every credential derives from (domain/credentials.py).
    auth_secret_id: str = "nextpick-auth"
    # How long the authorizer reuses the secret's values: a rotation reaches every container within it.
    auth_secret_refresh_seconds: float = Field(default=300.0, ge=0)
    # The longest lifetime (exp - iat) of a shopper token that is accepted.
    shopper_token_max_seconds: int = Field(default=86400, ge=60)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings for this container: parsed on first use, then reused for every invocation."""
    return Settings.from_env()
