"""The capacity model (issue 15 item 4): what 100, 1,000 and 10,000 events per second need of each AWS
limit, what one hot shopper can sustain, and the cost per month at 10M, 100M and 1B events next to
Amazon Personalize, counting what bench.cost's per-event table leaves out. Writes docs/capacity.md.

    .venv/bin/python -m bench.capacity            # a few minutes: bench.kinesis_cost's moto run

Measured here, on the real code: every path's Lambda duration and state reads/writes per event, with
the real items' sizes (bench.kinesis_cost.measure: API, bus, Kinesis batches, a 1,000-item model, steady
shoppers with 200 events of history); a steady shopper's state item (bench.cost.state_item_growth); an
event-log line (`TrackedEvent.log_record`); the custom metrics the code emits (its `add_metric` names)
and the template's alarms and keys. Prices are bench.cost.PRICES (one definition each); AWS quotas
are `QUOTAS` below, each with its documentation page. Everything else is an assumption, named
`ASSUMED_*`, and the report says where it is used."""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from bench.aws_quotas import QUOTAS
from bench.common import REPO_ROOT
from bench.cost import (
    ASSUMED_FIREHOSE_CALL_MS,
    ASSUMED_LOG_BYTES_PER_INVOCATION,
    ASSUMED_RETRAIN_SECONDS,
    ASSUMED_SHIPPER_OVERHEAD_MS,
    ASSUMED_TRAINING_RUNS_PER_MONTH,
    GB,
    PRICES,
    _lambda_cost,
    billed_bytes_per_event,
    events_per_stream_batch,
    state_item_growth,
)
from bench.kinesis_cost import KINESIS_RECORD_ROUNDING, NUM_ITEMS, Measured, cost_rows, measure

DEFAULT_OUT = REPO_ROOT / "docs" / "capacity.md"
RATES = (100, 1_000, 10_000)  # events per second, sustained
MONTHLY_EVENTS = (10_000_000, 100_000_000, 1_000_000_000)
SECONDS_PER_MONTH = 730 * 3600
MEMORY_MB = 1024
RETRAIN_MEMORY_MB = 4096  # template.yaml RetrainFunction

# Assumptions (the report names each where it is used).
ASSUMED_EVENTS_PER_SHOPPER_MONTH = 20  # active shoppers = events / 20
ASSUMED_NEW_SHOPPER_SHARE = 0.25  # of a month's active shoppers, never seen before (state items never expire)
ASSUMED_XRAY_RETRIEVED_SHARE = 1.0  # every recorded trace scanned once (service map, console queries)
ASSUMED_KMS_CALLS_PER_CONTAINER_HOUR = 24  # a data key per service every ~5 min (DynamoDB, Logs), cached
ASSUMED_KINESIS_RECORD_BYTES = 300  # one event as a JSON record (docs/kinesis.md)


@dataclass(frozen=True)
class Template:
    """The template's figures the model uses, read from template.yaml itself."""

    api_rate_limit: int
    api_burst_limit: int
    parallelization_factor: int
    firehose_buffer_mb: int
    firehose_buffer_seconds: int
    log_retention_days: int
    event_log_retention_days: int
    alarms: int
    kms_keys: int

    @classmethod
    def read(cls, path: Path = REPO_ROOT / "template.yaml") -> Template:
        text = path.read_text(encoding="utf-8")

        def default(parameter: str) -> int:
            found = re.search(rf"^  {parameter}:\n(?:    .*\n)*?    Default: \"?(\d+)", text, re.M)
            if found is None:
                raise ValueError(f"template.yaml: no default for {parameter}")
            return int(found.group(1))

        def first(pattern: str) -> int:
            found = re.search(pattern, text)
            if found is None:
                raise ValueError(f"template.yaml: {pattern} not found")
            return int(found.group(1))

        return cls(
            api_rate_limit=default("ApiRateLimit"),
            api_burst_limit=default("ApiBurstLimit"),
            parallelization_factor=first(r"ParallelizationFactor: (\d+)"),
            firehose_buffer_mb=first(r"SizeInMBs: (\d+)"),
            firehose_buffer_seconds=first(r"IntervalInSeconds: (\d+)"),
            log_retention_days=default("LogRetentionDays"),
            event_log_retention_days=default("EventLogRetentionDays"),
            alarms=len(re.findall(r"Type: AWS::CloudWatch::Alarm\b", text)),
            kms_keys=len(re.findall(r"Type: AWS::KMS::Key\b", text)),
        )


def custom_metric_names(root: Path = REPO_ROOT / "functions" / "nextpick") -> list[str]:
    """The metric names the functions emit (EMF: each name x dimension set is one custom metric).
    `Events{status}` f-strings expand to names also emitted literally (EventsAccepted, EventsDuplicate)."""
    names: set[str] = set()
    for source in root.rglob("*.py"):
        names.update(re.findall(r'add_metric\(\s*name="([A-Za-z]+)"', source.read_text(encoding="utf-8")))
    return sorted(names)


def log_line_bytes() -> int:
    """One view's line in the S3 event log, newline included, as the shipper writes it."""
    from nextpick.domain.events import TrackedEvent

    event = TrackedEvent.model_validate(
        {
            "event_id": "0b6f9d1e-8c1a-4d1e-9a43-3c2f51e7a9d2",
            "user_id": "shopper-000123456",
            "item_id": "item-000042",
            "event_type": "view",
            "timestamp": "2026-11-30T10:00:00Z",
            "session_id": "sess-8f3a2c",
        }
    )
    return len(json.dumps(event.log_record(datetime.now(UTC)), separators=(",", ":")).encode()) + 1


@dataclass(frozen=True)
class Measurements:
    paths: dict[str, Measured]  # by bench.kinesis_cost path name
    state_item_bytes: int  # a steady shopper's item (300 events of history), as written
    line_bytes: int
    metrics: list[str]
    template: Template

    @property
    def stored_item_bytes(self) -> int:
        """A steady shopper's stored item, for storage: the larger of the item state_item_growth builds
        and the items the API path really wrote (their write units x 1 KB, an upper bound)."""
        written = math.ceil(self.api.write_units / self.api.writes) * 1024
        return max(self.state_item_bytes, written)

    def to_json(self) -> str:
        return json.dumps(
            {
                "paths": [asdict(m) for m in self.paths.values()],
                "state_item_bytes": self.state_item_bytes,
                "line_bytes": self.line_bytes,
                "metrics": self.metrics,
                "template": asdict(self.template),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Measurements:
        raw = json.loads(text)
        paths = [Measured(**m) for m in raw["paths"]]
        return cls(
            {m.path: m for m in paths},
            raw["state_item_bytes"],
            raw["line_bytes"],
            raw["metrics"],
            Template(**raw["template"]),
        )

    @property
    def api(self) -> Measured:
        return self.paths["API (POST /events, one event)"]

    @property
    def bus(self) -> Measured:
        return self.paths["bus (ShopperEvent, one event)"]

    @property
    def kinesis(self) -> Measured:
        """Batches of 100 records of 100 different shoppers: a busy stream's batches."""
        return self.paths["Kinesis, batch 100, spread shoppers"]

    @property
    def kinesis_hot(self) -> Measured:
        return self.paths["Kinesis, batch 100, hot shopper"]


def measure_all() -> Measurements:
    paths = {m.path: m for m in measure()}
    return Measurements(
        paths=paths,
        state_item_bytes=state_item_growth(NUM_ITEMS)[-1].written_bytes,
        line_bytes=log_line_bytes(),
        metrics=custom_metric_names(),
        template=Template.read(),
    )


# ----------------------------------------------------------------------------------------- capacity


def per_event(m: Measured, value: float) -> float:
    return value / m.events


def concurrency(m: Measured, events_per_second: float) -> float:
    """Little's law: invocations per second x seconds each."""
    return events_per_second * m.invocations / m.events * m.duration_ms_per_invocation / 1000


def shipper_concurrency(events_per_second: float) -> float:
    """The log shipper's: one invocation per stream batch, one Firehose call each (bench.cost)."""
    invocations = events_per_second / events_per_stream_batch(events_per_second)
    return invocations * (ASSUMED_FIREHOSE_CALL_MS + ASSUMED_SHIPPER_OVERHEAD_MS) / 1000


def kinesis_shards(events_per_second: float) -> int:
    by_records = events_per_second / QUOTAS["kinesis_shard_records"].value
    by_bytes = events_per_second * ASSUMED_KINESIS_RECORD_BYTES / QUOTAS["kinesis_shard_bytes"].value
    return max(1, math.ceil(max(by_records, by_bytes)))


@dataclass(frozen=True)
class HotShopper:
    path: str
    events_per_write: float
    write_units_per_write: float
    read_units_per_read: float

    @property
    def partition_bound(self) -> float:
        """Events per second one shopper's partition takes: 1,000 WCU/s over the write's units."""
        writes = QUOTAS["ddb_partition_wcu"].value / self.write_units_per_write
        reads = QUOTAS["ddb_partition_rcu"].value / max(self.read_units_per_read, 1)
        return min(writes, reads) * self.events_per_write


def hot_shoppers(measured: Measurements) -> list[HotShopper]:
    rows = []
    for label, m in (
        ("API / bus (one event per write)", measured.api),
        ("Kinesis, batch of 100", measured.kinesis_hot),
    ):
        rows.append(
            HotShopper(
                label,
                m.events / m.writes,
                m.write_units / m.writes,
                m.read_units / m.reads,
            )
        )
    return rows


# --------------------------------------------------------------------------------------------- cost


def api_rest_cost(requests: float) -> float:
    """REST API requests, tiered: $3.50/M for the first 333M a month, $2.80/M for the next 667M."""
    first = min(requests, 333e6)
    return (
        first / 1e6 * PRICES["api_rest"].amount
        + max(0.0, requests - first) / 1e6 * PRICES["api_rest_next"].amount
    )


def xray_traces(invocations: float) -> float:
    """Traces recorded a month under the default sampling rule: the first request each second, then 5 %."""
    per_second = invocations / SECONDS_PER_MONTH
    return SECONDS_PER_MONTH * (min(per_second, 1.0) + 0.05 * max(0.0, per_second - 1.0))


@dataclass(frozen=True)
class MonthlyCost:
    events: int
    lines: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.lines.values())


def monthly_cost(measured: Measurements, events: int, path: Measured, front_door: float) -> MonthlyCost:
    """Everything a month of `events` costs on `path` (its measured Lambda and DynamoDB figures), with
    `front_door` the ingress's own $ for the month."""
    millions = events / 1e6
    rows = cost_rows(path)
    rate = events / SECONDS_PER_MONTH
    per_batch = events_per_stream_batch(rate)
    shipper_calls = events / per_batch
    function_calls = events * path.invocations / path.events + shipper_calls
    log_gb = function_calls * ASSUMED_LOG_BYTES_PER_INVOCATION / GB
    line_gb = events * measured.line_bytes / GB
    containers = max(1.0, concurrency(path, rate))
    shoppers = events / ASSUMED_EVENTS_PER_SHOPPER_MONTH
    t = measured.template
    lines = {
        "front door": front_door,
        "Lambda (event path)": rows["Lambda"] * millions,
        "DynamoDB writes": rows["DynamoDB writes"] * millions,
        "DynamoDB reads": rows["DynamoDB reads"] * millions,
        "Lambda (log shipper)": shipper_calls
        * (_lambda_cost(ASSUMED_FIREHOSE_CALL_MS + ASSUMED_SHIPPER_OVERHEAD_MS, MEMORY_MB) / 1e6),
        "Firehose": events
        * billed_bytes_per_event(measured.line_bytes, per_batch)
        / GB
        * PRICES["firehose_gb"].amount,
        "CloudWatch Logs (ingestion + storage)": log_gb
        * (PRICES["logs_gb"].amount + PRICES["logs_storage"].amount * t.log_retention_days / 30),
        "X-Ray (recorded + retrieved)": xray_traces(function_calls)
        / 1e6
        * (
            PRICES["xray_trace"].amount + ASSUMED_XRAY_RETRIEVED_SHARE * PRICES["xray_trace_retrieved"].amount
        ),
        "KMS (key + requests)": t.kms_keys * PRICES["kms_key_month"].amount
        + containers * ASSUMED_KMS_CALLS_PER_CONTAINER_HOUR * 730 / 10_000 * PRICES["kms_request"].amount,
        "CloudWatch metrics + alarms": len(measured.metrics) * PRICES["cw_metric_month"].amount
        + t.alarms * PRICES["cw_alarm_month"].amount,
        "state table storage (month 1)": shoppers
        * measured.stored_item_bytes
        / GB
        * (PRICES["ddb_storage"].amount + PRICES["ddb_pitr"].amount),
        "S3 event log (month 1)": line_gb * PRICES["s3_storage"].amount,
        "Lambda (retrain, 4096 MB)": ASSUMED_TRAINING_RUNS_PER_MONTH
        * ASSUMED_RETRAIN_SECONDS
        * RETRAIN_MEMORY_MB
        / 1024
        * PRICES["lambda_gb_second"].amount,
    }
    return MonthlyCost(events, lines)


def storage_after(measured: Measurements, events: int, months: int) -> tuple[float, float, float, float]:
    """(state GB, $ a month, event-log GB, $ a month) after `months` of `events` a month: state items
    never expire, new shoppers keep arriving; the log keeps `EventLogRetentionDays`."""
    active = events / ASSUMED_EVENTS_PER_SHOPPER_MONTH
    shoppers = active * (1 + ASSUMED_NEW_SHOPPER_SHARE * (months - 1))
    state_gb = shoppers * measured.stored_item_bytes / GB
    kept_months = min(months, measured.template.event_log_retention_days / 30.4)
    log_gb = events * measured.line_bytes * kept_months / GB
    return (
        state_gb,
        state_gb * (PRICES["ddb_storage"].amount + PRICES["ddb_pitr"].amount),
        log_gb,
        log_gb * PRICES["s3_storage"].amount,
    )


def front_doors(measured: Measurements, events: int) -> dict[str, tuple[Measured, float]]:
    """Each way in: (the path's measured figures, the ingress's own $ a month)."""
    millions = events / 1e6
    kinesis_gb = (
        events
        * math.ceil(ASSUMED_KINESIS_RECORD_BYTES / KINESIS_RECORD_ROUNDING)
        * KINESIS_RECORD_ROUNDING
        / GB
    )
    rate = events / SECONDS_PER_MONTH
    http = (
        min(events, 300e6) / 1e6 * PRICES["api_http"].amount
        + max(0.0, events - 300e6) / 1e6 * PRICES["api_http_next"].amount
    )
    return {
        "API Gateway REST API (today)": (measured.api, api_rest_cost(events)),
        "API Gateway HTTP API": (measured.api, http),
        "EventBridge bus (no answer)": (measured.bus, millions * PRICES["eventbridge_event"].amount),
        "Kinesis on-demand (no answer)": (
            measured.kinesis,
            kinesis_gb * (PRICES["kinesis_ondemand_gb_in"].amount + PRICES["kinesis_ondemand_gb_out"].amount)
            + 730 * PRICES["kinesis_ondemand_stream_hour"].amount,
        ),
        "Kinesis provisioned (no answer)": (
            measured.kinesis,
            kinesis_shards(rate) * 730 * PRICES["kinesis_shard_hour"].amount
            + millions * PRICES["kinesis_put_unit"].amount,
        ),
    }


if __name__ == "__main__":
    import sys

    from bench.capacity_report import main

    sys.exit(main())
