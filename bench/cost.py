"""AWS calls per event (counted on the real code path against moto), DynamoDB capacity per event from
the size of the state item as `encode_state` builds it, Firehose billing from the records the log
shipper really sends, and what a million events cost, next to Amazon Personalize."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench import models, workload
from bench.common import Check, Config, Section, fmt, table
from bench.serving import SHOPPERS, MotoResult
from bench.training import TrainingRun
from nextpick.adapters.dynamodb_state import encode_state
from nextpick.adapters.litert_model import LiteRTModel
from nextpick.adapters.memory import InMemoryCatalog, InMemoryStateRepository, StaticModelSource
from nextpick.domain.events import TrackedEvent
from nextpick.domain.ranking import RecommendOptions
from nextpick.domain.service import Recommender
from nextpick.domain.state import StateLimits, UserState

PRICES_AS_OF = "list prices as I know them (2024-2025), us-east-1 — to be checked against the linked pages"
HOURS_PER_MONTH = 730
# Lambda gives a function CPU in proportion to its memory: one full vCPU at 1769 MB.
FULL_VCPU_MB = 1769
# Not measurable here: the in-region round trips of the two DynamoDB calls (GetItem, conditional PutItem).
ASSUMED_DYNAMODB_ROUND_TRIPS_MS = 10.0
ASSUMED_LOG_BYTES_PER_INVOCATION = 1024  # START/END/REPORT lines + one EMF metrics document
ASSUMED_FIREHOSE_CALL_MS = 15.0
ASSUMED_SHIPPER_OVERHEAD_MS = 20.0  # the shipper's own work per invocation, besides the Firehose calls
ASSUMED_TRAINING_RUNS_PER_MONTH = 30
ASSUMED_RETRAIN_SECONDS = 300.0
ASSUMED_PERSONALIZE_TRAINING_HOURS_PER_RUN = 2.0
ASSUMED_PERSONALIZE_EVENT_BYTES = 1024
HISTORY_LENGTHS = (1, 10, 50, 200, 300)
# The state stream's event source mapping (template.yaml): up to 100 records, or what 5 s brought.
STREAM_BATCH_SIZE = 100
STREAM_BATCHING_WINDOW_S = 5.0


@dataclass(frozen=True)
class Price:
    amount: float
    unit: str
    source: str


PRICES = {
    "lambda_gb_second": Price(0.0000133334, "GB-second (arm64)", "https://aws.amazon.com/lambda/pricing/"),
    "lambda_request": Price(0.20, "1M requests", "https://aws.amazon.com/lambda/pricing/"),
    "api_rest": Price(
        3.50, "1M REST API requests (first 333M/month)", "https://aws.amazon.com/api-gateway/pricing/"
    ),
    "wru": Price(
        0.625, "1M write request units (on-demand)", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
    ),
    "rru": Price(
        0.125, "1M read request units (on-demand)", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
    ),
    "ddb_storage": Price(
        0.25, "GB-month (table storage)", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
    ),
    "streams_lambda": Price(
        0.0, "stream reads by a Lambda trigger (free)", "https://aws.amazon.com/dynamodb/pricing/on-demand/"
    ),
    "firehose_gb": Price(
        0.029, "GB ingested, each record rounded up to 5 KB", "https://aws.amazon.com/firehose/pricing/"
    ),
    # The Parquet event log (issue 14, docs/event-log.md, bench.event_log_query).
    "firehose_conversion_gb": Price(
        0.018, "GB billed for ingestion, converted to Parquet", "https://aws.amazon.com/firehose/pricing/"
    ),
    "athena_tb_scanned": Price(
        5.00, "TB scanned (each query at least 10 MB)", "https://aws.amazon.com/athena/pricing/"
    ),
    # The other ways in (docs/kinesis.md, bench.kinesis_cost).
    "eventbridge_event": Price(
        1.00, "1M custom events put on a bus", "https://aws.amazon.com/eventbridge/pricing/"
    ),
    "kinesis_ondemand_gb_in": Price(
        0.08,
        "GB ingested, on-demand stream, each record rounded up to 1 KB",
        "https://aws.amazon.com/kinesis/data-streams/pricing/",
    ),
    "kinesis_ondemand_gb_out": Price(
        0.04, "GB retrieved, on-demand stream", "https://aws.amazon.com/kinesis/data-streams/pricing/"
    ),
    "kinesis_ondemand_stream_hour": Price(
        0.04, "stream-hour, on-demand", "https://aws.amazon.com/kinesis/data-streams/pricing/"
    ),
    "s3_put": Price(0.005, "1,000 PUT requests", "https://aws.amazon.com/s3/pricing/"),
    "s3_storage": Price(0.023, "GB-month (S3 Standard)", "https://aws.amazon.com/s3/pricing/"),
    "logs_gb": Price(0.50, "GB ingested (CloudWatch Logs)", "https://aws.amazon.com/cloudwatch/pricing/"),
    "xray_trace": Price(5.00, "1M traces recorded", "https://aws.amazon.com/xray/pricing/"),
    # What the capacity model (bench.capacity, docs/capacity.md) adds to the per-event lines above.
    "api_http": Price(
        1.00,
        "1M HTTP API requests (first 300M/month, then $0.90)",
        "https://aws.amazon.com/api-gateway/pricing/",
    ),
    "api_http_next": Price(
        0.90, "1M HTTP API requests over 300M/month", "https://aws.amazon.com/api-gateway/pricing/"
    ),
    "api_rest_next": Price(
        2.80,
        "1M REST API requests, the next 667M after 333M/month",
        "https://aws.amazon.com/api-gateway/pricing/",
    ),
    "xray_trace_retrieved": Price(
        0.50, "1M traces retrieved or scanned", "https://aws.amazon.com/xray/pricing/"
    ),
    "kms_key_month": Price(1.00, "customer managed KMS key-month", "https://aws.amazon.com/kms/pricing/"),
    "kms_request": Price(0.03, "10,000 KMS API requests", "https://aws.amazon.com/kms/pricing/"),
    "cw_metric_month": Price(
        0.30,
        "custom metric-month (first 10,000; EMF metrics are custom metrics)",
        "https://aws.amazon.com/cloudwatch/pricing/",
    ),
    "cw_alarm_month": Price(
        0.10, "standard-resolution alarm-month", "https://aws.amazon.com/cloudwatch/pricing/"
    ),
    "logs_storage": Price(0.03, "GB-month of log storage", "https://aws.amazon.com/cloudwatch/pricing/"),
    "ddb_pitr": Price(
        0.20,
        "GB-month of continuous backup (point-in-time recovery)",
        "https://aws.amazon.com/dynamodb/pricing/on-demand/",
    ),
    "kinesis_shard_hour": Price(
        0.015, "shard-hour, provisioned stream", "https://aws.amazon.com/kinesis/data-streams/pricing/"
    ),
    "kinesis_put_unit": Price(
        0.014,
        "1M PUT payload units (25 KB each), provisioned stream",
        "https://aws.amazon.com/kinesis/data-streams/pricing/",
    ),
    "personalize_ingest_gb": Price(
        0.05, "GB of events ingested (PutEvents)", "https://aws.amazon.com/personalize/pricing/"
    ),
    "personalize_training_hour": Price(0.24, "training hour", "https://aws.amazon.com/personalize/pricing/"),
    "personalize_tps_hour": Price(
        0.20,
        "TPS-hour, first 20K/month (then $0.10, then $0.05 over 200K)",
        "https://aws.amazon.com/personalize/pricing/",
    ),
}
GB = 2**30
FIREHOSE_RECORD_ROUNDING = 5 * 1024


def attribute_size(name: str, value: dict[str, Any]) -> int:
    """DynamoDB's size of one attribute (name + value), per the developer guide's item-size rules."""
    return len(name.encode()) + _value_size(value)


def _value_size(value: dict[str, Any]) -> int:
    (kind, content), *_ = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "B":
        return len(content)
    if kind == "N":
        digits = content.lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + _value_size(element) for element in content)
    if kind == "M":
        return 3 + sum(1 + len(key.encode()) + _value_size(element) for key, element in content.items())
    raise ValueError(f"unsupported attribute type {kind}")


def item_size(item: dict[str, Any]) -> int:
    return sum(attribute_size(name, value) for name, value in item.items())


def write_units(item_bytes: int) -> int:
    return max(1, math.ceil(item_bytes / 1024))


@dataclass(frozen=True)
class ItemGrowth:
    events: int
    # The item the write of this event stores (with its outbox), and the item that write's read returned.
    written_bytes: int
    read_bytes: int
    # The same written item in the layout before the 8-byte keys (`processed_ids`: a list of the raw
    # event ids instead of `processed`, 8-byte keys), computed from the same state for comparison.
    old_layout_written_bytes: int
    # Of `written_bytes`, the `processed` attribute (name + value).
    processed_bytes: int
    old_layout_processed_bytes: int

    @property
    def write_units(self) -> int:
        return write_units(self.written_bytes)

    @property
    def old_layout_write_units(self) -> int:
        return write_units(self.old_layout_written_bytes)

    @property
    def read_units(self) -> int:
        # Strongly consistent: 1 unit per 4 KB; reading a user not stored yet still costs one.
        return max(1, math.ceil(self.read_bytes / 4096))


def old_layout_processed(event_ids: list[str]) -> tuple[str, dict[str, Any]]:
    """The attribute the state item stored before the 8-byte keys: the kept event ids, raw."""
    kept = event_ids[-StateLimits().processed_ids :]
    return "processed_ids", {"L": [{"S": event_id} for event_id in kept]}


def state_item_growth(num_items: int) -> list[ItemGrowth]:
    """One shopper's state item as their history grows: what each write stores and each read returns."""
    model_bytes, manifest = models.load(num_items)
    states = InMemoryStateRepository()
    recommender = Recommender(
        states, StaticModelSource(LiteRTModel(model_bytes, manifest)), InMemoryCatalog()
    )
    bodies = workload.event_bodies(num_items, max(HISTORY_LENGTHS), users=1, seed=3)
    growth = []
    previous = 0
    event_ids: list[str] = []
    for position, body in enumerate(bodies, start=1):
        event = TrackedEvent.model_validate_json(body)
        recommender.track([event], RecommendOptions())
        event_ids.append(event.event_id)
        stored: UserState = states.load(event.user_id)
        # The in-memory repository keeps the outbox of the last write, exactly what PutItem stored.
        item = encode_state(stored, updated_at=datetime.now(UTC))
        written = item_size(item)
        if position in HISTORY_LENGTHS:
            processed = attribute_size("processed", item["processed"]) if "processed" in item else 0
            old_processed = attribute_size(*old_layout_processed(event_ids))
            growth.append(
                ItemGrowth(
                    position,
                    written,
                    previous,
                    old_layout_written_bytes=written - processed + old_processed,
                    processed_bytes=processed,
                    old_layout_processed_bytes=old_processed,
                )
            )
        previous = written
    return growth


def firehose_billed_bytes(record_bytes: int) -> int:
    """Firehose bills ingestion per record, rounded up to the next 5 KB."""
    return math.ceil(record_bytes / FIREHOSE_RECORD_ROUNDING) * FIREHOSE_RECORD_ROUNDING


def packed_records(lines: int, line_bytes: float) -> list[int]:
    """The Firehose records `FirehoseEventLog` sends `lines` lines of `line_bytes` in: one each, as
    record-format conversion to Parquet needs (issue 14, docs/event-log.md)."""
    return [round(line_bytes)] * lines


def events_per_stream_batch(events_per_second: float) -> float:
    """Stream records per shipper invocation at a steady rate (one shard): the batching window fills
    a batch up to its size."""
    return max(1.0, min(STREAM_BATCH_SIZE, events_per_second * STREAM_BATCHING_WINDOW_S))


def _per_event(calls: dict[str, int], events: int) -> list[list[str]]:
    return [[f"`{name}`", f"{count:,}", fmt(count / events)] for name, count in sorted(calls.items())]


@dataclass(frozen=True)
class EventLog:
    """The event log as the shipper sent it in the moto run, from the records it really sent."""

    lines: int
    line_bytes: float  # median, with the newline
    calls: int
    batches: int
    records: list[int]  # bytes of each Firehose record sent

    @property
    def billed_bytes_per_event(self) -> float:
        return sum(firehose_billed_bytes(size) for size in self.records) / max(self.lines, 1)

    @property
    def calls_per_batch(self) -> float:
        return self.calls / max(self.batches, 1)

    @property
    def events_per_batch(self) -> float:
        return self.lines / max(self.batches, 1)


def event_log_of(moto: MotoResult) -> EventLog:
    return EventLog(
        lines=len(moto.log_record_bytes),
        line_bytes=statistics.median(moto.log_record_bytes) if moto.log_record_bytes else 0.0,
        calls=sum(count for name, count in moto.shipper_calls.items() if name.startswith("firehose.")),
        batches=moto.shipper_batches,
        records=list(moto.firehose_record_bytes),
    )


def billed_bytes_per_event(line_bytes: float, per_batch: float) -> float:
    """Firehose bytes billed per event when each shipper invocation sends `per_batch` lines (one record each)."""
    lines = max(1, round(per_batch))
    return sum(firehose_billed_bytes(size) for size in packed_records(lines, line_bytes)) / lines


def section(config: Config, results: dict[str, Any]) -> Section:
    moto: MotoResult = results["moto"]
    growth = state_item_growth(moto.num_items)
    steady, light = growth[-1], growth[1]
    events = moto.events
    reads = sum(count for name, count in moto.calls.items() if name == "dynamodb.GetItem StateTable")
    writes = sum(count for name, count in moto.calls.items() if name == "dynamodb.PutItem StateTable")
    log = event_log_of(moto)
    moto_sizes = sorted(item_size(item) for item in moto.state_items)
    one_per_line = FIREHOSE_RECORD_ROUNDING / max(log.line_bytes, 1)

    calls_text = "\n\n".join(
        [
            "Counted with botocore event hooks (`before-parameter-build`, once per API call whatever the "
            "retries) on the session the handlers' clients come from, over "
            f"{events:,} `POST /events` requests (one event each, {SHOPPERS:,} shoppers) after warm-up, "
            "through `nextpick.handlers.api.lambda_handler` against moto:",
            table(["API handler call", "calls", "per event"], _per_event(moto.calls, events)),
            "Not in the steady state above, and amortised over time rather than events: the model pointer "
            "(`s3.GetObject models/current.json`, at most once per `MODEL_REFRESH_SECONDS` = 60 s per "
            "container, plus the manifest and model when the version changed) and the catalog artifact "
            "(`s3.GetObject catalog/current.json`, once per `CATALOG_REFRESH_SECONDS` = 30 s per container, "
            "plus the deltas since; no table scan: docs/catalog-artifact.md).",
            f"Then the {moto.stream_records:,} records of the state table's stream (warm-up included), read "
            "from moto's stream and given to `nextpick.handlers.log_shipper.lambda_handler` in batches of "
            f"{STREAM_BATCH_SIZE} (the template's `BatchSize`), {moto.shipper_batches} invocations:",
            table(
                ["log shipper call", "calls", "per invocation", "per stream record"],
                [
                    [
                        f"`{name}`",
                        f"{count:,}",
                        fmt(count / max(log.batches, 1)),
                        fmt(count / moto.stream_records),
                    ]
                    for name, count in sorted(moto.shipper_calls.items())
                ],
            ),
            (
                f"The shipper makes **{fmt(log.calls_per_batch)} `PutRecordBatch` per invocation** "
                f"({fmt(log.calls / max(log.lines, 1), 2)} per event): the outboxes of the whole stream batch go out "
                "in one append (before it, one call per stream record: 100 per "
                "full batch)."
                if log.calls <= log.batches
                else f"**The shipper makes {fmt(log.calls_per_batch)} `PutRecordBatch` per invocation**, more "
                "than one per stream batch: the outboxes of a batch are not sent in one append."
            ),
        ]
    )
    capacity_text = "\n\n".join(
        [
            "One shopper's state item as their history grows, encoded by "
            "`nextpick.adapters.dynamodb_state.encode_state` (item size by DynamoDB's rules: attribute "
            "names + values, 3 bytes per list/map plus 1 per element). Each event reads the item the previous "
            "write stored and writes it whole again, with the outbox of the events it accepted. On-demand: a "
            "write costs 1 WRU per started KB, a strongly consistent read 1 RRU per started 4 KB. The last "
            "two columns are the **old layout, computed for comparison only**: the same item with the kept "
            "event ids stored raw (`processed_ids`, a list of 36-character UUIDs, as before the 8-byte keys) "
            "instead of `processed` (8-byte keys).",
            table(
                [
                    "events in history",
                    "item read (bytes)",
                    "item written (bytes)",
                    "of which `processed`",
                    "RRU per event",
                    "WRU per event",
                    "old layout: item written (bytes)",
                    "old layout: WRU per event",
                ],
                [
                    [
                        f"{g.events:,}",
                        f"{g.read_bytes:,}",
                        f"{g.written_bytes:,}",
                        f"{g.processed_bytes:,}",
                        g.read_units,
                        f"**{g.write_units}**",
                        f"{g.old_layout_written_bytes:,}",
                        g.old_layout_write_units,
                    ]
                    for g in growth
                ],
            ),
            f"In the moto run (young histories, ~{fmt(moto.stream_records / SHOPPERS)} events per shopper) the "
            f"stored items were {fmt(statistics.median(moto_sizes))} bytes at the median and "
            f"{max(moto_sizes):,} at most. At steady state ({StateLimits().processed_ids} processed events "
            f"kept) the window of processed events is {steady.processed_bytes:,} bytes instead of "
            f"{steady.old_layout_processed_bytes:,} with raw ids, and the item "
            f"{fmt(steady.written_bytes / 1024)} KB instead of {fmt(steady.old_layout_written_bytes / 1024)} KB: "
            f"**{steady.write_units} WRU per event instead of {steady.old_layout_write_units}**. What is left is "
            f"mostly the float32 state vector ({models.hyperparameters().state_dim() * 4:,} bytes), the 50 "
            "recent events and the purchased items.",
            f"Event-log lines are {fmt(log.line_bytes)} bytes at the median (with the newline). The shipper "
            f"sent {log.lines:,} of them in {len(log.records):,} Firehose record(s) of "
            f"{fmt(statistics.median(log.records) / 1024 if log.records else 0)} KB at the median "
            f"({fmt(log.lines / max(len(log.records), 1))} lines per record: Firehose's conversion to Parquet "
            "reads one record as one JSON document, docs/event-log.md). Firehose bills each record rounded "
            f"up to {FIREHOSE_RECORD_ROUNDING // 1024} KB: **{fmt(log.billed_bytes_per_event)} bytes billed per "
            f"event** ({fmt(one_per_line)}x the line), and conversion is billed on the same bytes.",
        ]
    )
    cost_text, totals = _cost_tables(results, steady, light, log)
    checks = [
        Check(
            "DynamoDB reads per event",
            1,
            "calls",
            reads / events,
            "state table GetItem, counted on the API path",
        ),
        Check("DynamoDB writes per event", 1, "calls", writes / events, "state table conditional PutItem"),
    ]
    body = "\n\n".join(
        [
            "### AWS calls per event",
            calls_text,
            "### Consumed capacity per event",
            capacity_text,
            "### Cost per million events",
            cost_text,
        ]
    )
    findings = [
        f"**Fixed** (processed events kept as 8-byte keys): a steady shopper's state item is "
        f"{fmt(steady.written_bytes / 1024)} KB, {steady.write_units} WRU + {steady.read_units} RRU per event; "
        f"the old list of raw ids, computed on the same state in this run, gives "
        f"{fmt(steady.old_layout_written_bytes / 1024)} KB and {steady.old_layout_write_units} WRU. DynamoDB "
        f"writes are now {totals['writes_share']:.0%} of ${totals['steady']:.2f} per million events"
        + (
            ", still the largest line"
            if totals["writes_rank"] == 1
            else f", no longer the largest line (that is {totals['largest']}, {totals['largest_share']:.0%})"
        )
        + f"; with the old layout the total was ${totals['steady_old_layout']:.2f} and writes "
        f"{totals['writes_share_old_layout']:.0%} of it.",
        (
            f"**Fixed** (one append per stream batch): the log shipper makes {fmt(log.calls_per_batch)} Firehose "
            f"`PutRecordBatch` per stream batch ({fmt(log.calls / max(log.lines, 1), 2)} per event), down from "
            "one per stream record (100 per full batch)."
            if log.calls <= log.batches
            else f"The log shipper makes {fmt(log.calls_per_batch)} Firehose calls per stream batch, more "
            "than one: the outboxes of a batch are not sent in one append."
        ),
        f"**Changed** (issue 14, Parquet log): one Firehose record per event, billed "
        f"{fmt(log.billed_bytes_per_event)} bytes per event ({fmt(one_per_line)}x a ~{fmt(log.line_bytes)}-byte "
        "line): record-format conversion needs one JSON document per record (docs/event-log.md).",
        f"API Gateway REST is ${PRICES['api_rest'].amount:.2f} of the ${totals['steady']:.2f} per million "
        f"events ({PRICES['api_rest'].amount / totals['steady']:.0%}); an HTTP API or the event bus would be "
        "$1.00.",
    ]
    return Section("5. AWS calls and cost per million events", body, checks, findings=findings)


def _where_the_money_goes(rows: list[tuple[str, float, float, str]], total: float) -> str:
    first, second = sorted(rows, key=lambda row: -row[1])[:2]
    return (
        f"Where the money goes (steady users): {first[0]}, {first[1] / total:.0%} of the total, then "
        f"{second[0]}, {second[1] / total:.0%}. API Gateway REST would cost $1.00 instead of $3.50 per "
        "million as an HTTP API, as would events sent on the bus (EventBridge custom events, $1.00 per "
        "million)."
    )


def _lambda_cost(duration_ms: float, memory_mb: int) -> float:
    """$ per million invocations at this billed duration (1 ms granularity) and memory."""
    gb_seconds = math.ceil(duration_ms) / 1000 * memory_mb / 1024 * 1_000_000
    return gb_seconds * PRICES["lambda_gb_second"].amount + PRICES["lambda_request"].amount


def _tps_hours_cost(tps_hours: float) -> float:
    tiers = ((20_000, 0.20), (180_000, 0.10), (math.inf, 0.05))
    cost, remaining = 0.0, tps_hours
    for size, price in tiers:
        used = min(remaining, size)
        cost += used * price
        remaining -= used
    return cost


def _cost_tables(
    results: dict[str, Any],
    steady: ItemGrowth,
    light: ItemGrowth,
    log: EventLog,
) -> tuple[str, dict[str, Any]]:
    moto: MotoResult = results["moto"]
    memory_mb = 1024  # template.yaml Globals.Function.MemorySize
    handler_cpu_ms = moto.outside_aws_calls_cpu_ms
    cpu_ms = handler_cpu_ms * FULL_VCPU_MB / memory_mb
    duration_ms = cpu_ms + ASSUMED_DYNAMODB_ROUND_TRIPS_MS
    lambda_cost = _lambda_cost(duration_ms, memory_mb)
    shipper_ms_per_batch = log.calls_per_batch * ASSUMED_FIREHOSE_CALL_MS + ASSUMED_SHIPPER_OVERHEAD_MS

    def shipper_cost(per_batch: float) -> float:
        """$ per million events with one shipper invocation per `per_batch` writes."""
        calls = max(1.0, log.calls_per_batch * per_batch / max(log.events_per_batch, 1))
        return (
            _lambda_cost(calls * ASSUMED_FIREHOSE_CALL_MS + ASSUMED_SHIPPER_OVERHEAD_MS, memory_mb)
            / per_batch
        )

    def firehose_cost(billed_bytes: float) -> float:
        return 1_000_000 * billed_bytes / GB * PRICES["firehose_gb"].amount

    log_gb = 1_000_000 * log.line_bytes / GB
    rows: list[tuple[str, float, float, str]] = [
        ("API Gateway REST", PRICES["api_rest"].amount, PRICES["api_rest"].amount, "1 request per event"),
        (
            "Lambda (API function, arm64, 1024 MB)",
            lambda_cost,
            lambda_cost,
            f"{math.ceil(duration_ms)} ms billed: {fmt(handler_cpu_ms)} ms handler CPU time measured (moto run, "
            f"Powertools included, AWS calls excluded) x {FULL_VCPU_MB}/{memory_mb} for the fractional vCPU + {fmt(ASSUMED_DYNAMODB_ROUND_TRIPS_MS)} "
            "ms assumed for the GetItem and PutItem round trips",
        ),
        (
            "DynamoDB writes",
            steady.write_units * PRICES["wru"].amount,
            light.write_units * PRICES["wru"].amount,
            "WRU per event from the item sizes above",
        ),
        (
            "DynamoDB reads (strongly consistent)",
            steady.read_units * PRICES["rru"].amount,
            light.read_units * PRICES["rru"].amount,
            "RRU per event from the item sizes above",
        ),
        ("DynamoDB Streams read by the shipper", 0.0, 0.0, "free for Lambda triggers"),
        (
            "Lambda (log shipper)",
            shipper_cost(log.events_per_batch),
            shipper_cost(log.events_per_batch),
            f"1 invocation per {fmt(log.events_per_batch)} writes (full stream batches), "
            f"{fmt(shipper_ms_per_batch)} ms each ({fmt(log.calls_per_batch)} PutRecordBatch measured per "
            f"invocation x {fmt(ASSUMED_FIREHOSE_CALL_MS)} ms + {fmt(ASSUMED_SHIPPER_OVERHEAD_MS)} ms, assumed)",
        ),
        (
            "Firehose ingestion",
            firehose_cost(log.billed_bytes_per_event),
            firehose_cost(log.billed_bytes_per_event),
            f"{fmt(log.billed_bytes_per_event)} B billed per event: the records the shipper sent in the moto "
            f"run, each rounded up to 5 KB ({fmt(log.line_bytes)} B per line)",
        ),
        (
            "S3 (event log)",
            log_gb * PRICES["s3_storage"].amount,
            log_gb * PRICES["s3_storage"].amount,
            f"{fmt(log_gb)} GB stored per month of retention; Firehose PUTs are per buffer (64 MB / 300 s), "
            "≤ 8,640/month at any volume: ≤ $0.04/month, not per event",
        ),
        (
            "CloudWatch Logs",
            ASSUMED_LOG_BYTES_PER_INVOCATION * 1_000_000 / GB * PRICES["logs_gb"].amount,
            ASSUMED_LOG_BYTES_PER_INVOCATION * 1_000_000 / GB * PRICES["logs_gb"].amount,
            f"~{ASSUMED_LOG_BYTES_PER_INVOCATION} B per invocation assumed (Lambda's lines + EMF metrics)",
        ),
    ]
    total_steady = sum(row[1] for row in rows)
    total_light = sum(row[2] for row in rows)
    writes_steady = next(row[1] for row in rows if row[0] == "DynamoDB writes")
    total_old_layout = total_steady - writes_steady + steady.old_layout_write_units * PRICES["wru"].amount
    # The shipper and Firehose lines at full stream batches, replaced per traffic level below.
    full_batch_log = shipper_cost(log.events_per_batch) + firehose_cost(log.billed_bytes_per_event)
    lines = [
        f"Prices: {PRICES_AS_OF}. Every row is $ per million events; *steady* users have ≥ "
        f"{HISTORY_LENGTHS[-2]} events in their state ({steady.read_units} RRU + {steady.write_units} WRU per event), "
        f"*young* ones {HISTORY_LENGTHS[1]} ({light.read_units} RRU + {light.write_units} WRU). The shipper "
        f"and Firehose rows are for full stream batches ({STREAM_BATCH_SIZE} records, from "
        f"~{fmt(STREAM_BATCH_SIZE / STREAM_BATCHING_WINDOW_S)} events/s per shard); lower traffic is "
        "priced in the Personalize comparison below. With the old state layout (raw event ids) the "
        f"steady-user total would be ${total_old_layout:.2f} ({steady.old_layout_write_units} WRU per event).",
        table(
            ["nextpick", "$ / 1M events, steady users", "$ / 1M events, young users", "what is assumed"],
            [
                [name, f"{steady_cost:.3f}", f"{light_cost:.3f}", note]
                for name, steady_cost, light_cost, note in rows
            ]
            + [["**total**", f"**{total_steady:.2f}**", f"**{total_light:.2f}**", ""]],
        ),
        "Not per event, so not in the total: DynamoDB storage "
        f"({fmt(PRICES['ddb_storage'].amount)} $/GB-month: 100k steady users x {fmt(steady.written_bytes / 1024)} KB = "
        f"${100_000 * steady.written_bytes / GB * PRICES['ddb_storage'].amount:.2f}/month, PITR adds $0.20/GB-month), "
        "the retrain (below), and X-Ray: `Tracing: Active` with the default sampling rule records the first "
        f"request each second and 5 % of the rest, at ${PRICES['xray_trace'].amount:.2f} per million traces — up to "
        "$5 per million events at low traffic, ~$0.4 at a steady 40 events/s.",
        _where_the_money_goes(rows, total_steady),
    ]
    training: TrainingRun | None = results.get("training")
    measured_retrain = training is not None and training.exit_code == 0
    # The whole quality benchmark (two trainings, baselines) over-estimates one retrain on ML-100K.
    retrain_s = (
        training.wall_seconds if training is not None and measured_retrain else ASSUMED_RETRAIN_SECONDS
    )
    retrain_basis = (
        "the quality benchmark's whole wall time in §6, an over-estimate of one ML-100K retrain"
        if measured_retrain
        else "assumed: the retrain was not measured in this run"
    )
    retrain_month = ASSUMED_TRAINING_RUNS_PER_MONTH * retrain_s * 4 * PRICES["lambda_gb_second"].amount
    comparison = []
    for monthly_events in (1_000_000, 100_000_000):
        millions = monthly_events / 1e6
        tps_hours = max(HOURS_PER_MONTH * 1.0, monthly_events / 3600)
        inference = _tps_hours_cost(tps_hours)
        ingest = (
            monthly_events * ASSUMED_PERSONALIZE_EVENT_BYTES / GB * PRICES["personalize_ingest_gb"].amount
        )
        training_cost = (
            ASSUMED_TRAINING_RUNS_PER_MONTH
            * ASSUMED_PERSONALIZE_TRAINING_HOURS_PER_RUN
            * PRICES["personalize_training_hour"].amount
        )
        front = (PRICES["api_rest"].amount + _lambda_cost(duration_ms, memory_mb)) * millions
        personalize_total = inference + ingest + training_cost + front
        per_batch = events_per_stream_batch(monthly_events / HOURS_PER_MONTH / 3600)
        log_at_rate = shipper_cost(per_batch) + firehose_cost(
            billed_bytes_per_event(log.line_bytes, per_batch)
        )
        nextpick_total = (total_steady - full_batch_log + log_at_rate) * millions + retrain_month
        comparison.append(
            [
                f"{millions:,.0f}M events/month (~{monthly_events / HOURS_PER_MONTH / 3600:.2f}/s)",
                f"${nextpick_total:,.2f} (~{fmt(per_batch)} events per stream batch)",
                f"${inference:,.2f} ({tps_hours:,.0f} TPS-h)",
                f"${ingest:,.2f}",
                f"${training_cost:,.2f}",
                f"${front:,.2f}",
                f"**${personalize_total:,.2f}**",
                f"{personalize_total / nextpick_total:.0f}x",
            ]
        )
    lines += [
        "#### Next to Amazon Personalize, same traffic",
        "Personalize with a custom solution and a campaign: every event is a `PutEvents` and the fresh "
        'list a `GetRecommendations` (the same "event in, fresh top-K out" call); the shop still needs an '
        "API in front (counted as the same API Gateway + Lambda as nextpick). A campaign bills provisioned "
        "TPS-hours with a minimum of 1 TPS, 24/7, whatever the traffic; training is billed per training "
        f"hour. Assumed: {ASSUMED_TRAINING_RUNS_PER_MONTH} retrains a month of "
        f"{fmt(ASSUMED_PERSONALIZE_TRAINING_HOURS_PER_RUN)} training hours each, ~{ASSUMED_PERSONALIZE_EVENT_BYTES} B "
        "per ingested event, traffic spread evenly (peaks only make Personalize dearer). nextpick's side is "
        "the steady-user total above, with the shipper and Firehose rows priced for the stream batches "
        f"that traffic fills in {fmt(STREAM_BATCHING_WINDOW_S)} s (one shard), plus {ASSUMED_TRAINING_RUNS_PER_MONTH} retrains a month on the 4096 MB "
        f"retrain function at {fmt(retrain_s)} s each ({retrain_basis}; ${retrain_month:.2f}/month). A shop "
        "with 100M events a month trains on far more than ML-100K's 100k ratings, so its retrain takes "
        "longer; it would still be small next to the per-event costs.",
        table(
            [
                "traffic",
                "nextpick / month",
                "Personalize inference",
                "ingestion",
                "training",
                "API + Lambda front",
                "Personalize / month",
                "Personalize ÷ nextpick",
            ],
            comparison,
        ),
        "Prices used (each is per the unit shown):\n\n"
        + table(
            ["item", "price (USD)", "unit", "source"],
            [[name, f"{price.amount:g}", price.unit, price.source] for name, price in PRICES.items()],
        ),
    ]
    ranked = sorted(rows, key=lambda row: -row[1])
    writes_old = steady.old_layout_write_units * PRICES["wru"].amount
    return "\n\n".join(lines), {
        "writes_rank": 1 + [row[0] for row in ranked].index("DynamoDB writes"),
        "largest": ranked[0][0],
        "largest_share": ranked[0][1] / total_steady,
        "writes_share_old_layout": writes_old / total_old_layout,
        "steady": total_steady,
        "young": total_light,
        "writes_share": writes_steady / total_steady,
        "steady_old_layout": total_old_layout,
    }
