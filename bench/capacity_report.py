"""docs/capacity.md from bench.capacity's measurements: `python -m bench.capacity`."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.capacity import (
    ASSUMED_EVENTS_PER_SHOPPER_MONTH,
    ASSUMED_KINESIS_RECORD_BYTES,
    ASSUMED_KMS_CALLS_PER_CONTAINER_HOUR,
    ASSUMED_NEW_SHOPPER_SHARE,
    ASSUMED_XRAY_RETRIEVED_SHARE,
    DEFAULT_OUT,
    QUOTAS,
    RATES,
    Measurements,
    concurrency,
    hot_shoppers,
    kinesis_shards,
    measure_all,
    per_event,
    shipper_concurrency,
)
from bench.capacity_cost_report import cost_tables, storage_table
from bench.common import fmt, table
from bench.cost import (
    ASSUMED_DYNAMODB_ROUND_TRIPS_MS,
    ASSUMED_LOG_BYTES_PER_INVOCATION,
    ASSUMED_PERSONALIZE_EVENT_BYTES,
    ASSUMED_PERSONALIZE_TRAINING_HOURS_PER_RUN,
    ASSUMED_RETRAIN_SECONDS,
    ASSUMED_TRAINING_RUNS_PER_MONTH,
    PRICES,
    PRICES_AS_OF,
    events_per_stream_batch,
)
from bench.kinesis_cost import NUM_ITEMS

MIB = 1_048_576
MEASUREMENTS_CACHE = Path.home() / ".cache" / "nextpick" / "bench" / "capacity-measurements.json"


def _q(name: str) -> float:
    return QUOTAS[name].value


def _verdict(need: float, limit: float) -> str:
    share = need / limit
    mark = "ok" if share <= 0.5 else ("**near**" if share <= 1 else "**over**")
    return f"{fmt(need)} of {fmt(limit)} ({share:.0%}, {mark})"


def measured_inputs(m: Measurements) -> str:
    rows = []
    for path in m.paths.values():
        rows.append(
            [
                path.path,
                fmt(path.invocations / path.events, 3),
                f"{fmt(path.duration_ms_per_invocation)} ms",
                fmt(per_event(path, path.writes), 3),
                fmt(per_event(path, path.write_units), 2),
                fmt(per_event(path, path.read_units), 2),
            ]
        )
    t = m.template
    return "\n\n".join(
        [
            table(
                [
                    "path",
                    "invocations per event",
                    "Lambda duration per invocation",
                    "state writes per event",
                    "WRU per event",
                    "RRU per event",
                ],
                rows,
            ),
            f"- A steady shopper's state item: the items the API path wrote in the measured run (200 "
            "events of history, a one-event outbox) cost "
            f"**{fmt(m.api.write_units / m.api.writes)} WRU per write and {fmt(m.api.read_units / m.api.reads)} "
            f"RRU per read, i.e. up to {fmt(m.stored_item_bytes / 1024)} KB**; every table here uses those. The "
            "item `bench.cost.state_item_growth` builds for a `bench.workload` shopper at 300 events is "
            f"{m.state_item_bytes:,} bytes ({fmt(m.state_item_bytes / 1024)} KB, another "
            "workload's history). docs/benchmarks.md §5's 4.7 KB predates the state's item history (contract "
            "v2, docs/kinesis.md); `python -m bench` refreshes it.",
            f"- An event-log line (`TrackedEvent.log_record`, one view): {m.line_bytes} bytes.",
            f"- Custom metrics the functions emit (EMF, dimension `service`): {len(m.metrics)} "
            f"({', '.join(m.metrics)}); alarms in template.yaml: {t.alarms}; customer managed KMS keys: "
            f"{t.kms_keys} (`LogsKey`; the tables, the Kinesis stream, Firehose and the bucket use AWS "
            "owned or AWS managed keys or SSE-S3).",
            f"- template.yaml: stage throttling {t.api_rate_limit} requests/s, burst {t.api_burst_limit} "
            f"(`ApiRateLimit`, `ApiBurstLimit`); Kinesis `ParallelizationFactor` {t.parallelization_factor}; "
            f"Firehose buffer {t.firehose_buffer_mb} MB or {t.firehose_buffer_seconds} s; logs kept "
            f"{t.log_retention_days} days, the event log {t.event_log_retention_days} days.",
        ]
    )


def capacity_table(m: Measurements) -> str:
    t = m.template
    rows: list[list[str]] = []

    def row(name: str, cells: list[str]) -> None:
        rows.append([name, *cells])

    row(
        "API requests/s, one event per request, vs the stage's throttle (template)",
        [_verdict(r, t.api_rate_limit) for r in RATES],
    )
    row("the same vs the account's 10,000 requests/s", [_verdict(r, _q("api_account_rps")) for r in RATES])
    row(
        "API requests/s with batches of 25 events (`POST /events` takes a batch)",
        [_verdict(r / 25, t.api_rate_limit) for r in RATES],
    )
    row(
        "Lambda concurrency, API path + log shipper, vs the account's 1,000",
        [_verdict(concurrency(m.api, r) + shipper_concurrency(r), _q("lambda_concurrency")) for r in RATES],
    )
    row(
        "DynamoDB WRU/s, API or bus path, vs the table's on-demand quota",
        [_verdict(r * per_event(m.api, m.api.write_units), _q("ddb_table_wru")) for r in RATES],
    )
    row(
        "DynamoDB RRU/s, API or bus path",
        [_verdict(r * per_event(m.api, m.api.read_units), _q("ddb_table_rru")) for r in RATES],
    )
    row(
        "DynamoDB WRU/s, Kinesis path (batches of 100 shoppers)",
        [_verdict(r * per_event(m.kinesis, m.kinesis.write_units), _q("ddb_table_wru")) for r in RATES],
    )
    row(
        f"Kinesis provisioned shards ({ASSUMED_KINESIS_RECORD_BYTES} B records: 1,000 records/s per shard binds first)",
        [str(kinesis_shards(r)) for r in RATES],
    )
    row(
        "Kinesis on-demand: records/s vs what a new stream takes",
        [_verdict(r, _q("kinesis_ondemand_initial_records")) for r in RATES],
    )
    row(
        f"Lambda concurrency, Kinesis path (measured need) vs provisioned shards x `ParallelizationFactor` {t.parallelization_factor}",
        [_verdict(concurrency(m.kinesis, r), kinesis_shards(r) * t.parallelization_factor) for r in RATES],
    )
    row(
        "EventBridge PutEvents requests/s, one entry each / 10 entries each",
        [f"{_verdict(r, _q('eventbridge_putevents'))} / {fmt(r / 10)}" for r in RATES],
    )
    row(
        "Firehose PutRecordBatch/s (one per shipper invocation) vs 2,000",
        [_verdict(r / events_per_stream_batch(r), _q("firehose_requests")) for r in RATES],
    )
    row(
        "Firehose bytes/s vs 5 MiB/s (1 MiB/s outside the 3 big regions)",
        [_verdict(r * m.line_bytes, _q("firehose_bytes")) for r in RATES],
    )
    row(
        f"Firehose buffer ({t.firehose_buffer_mb} MB or {t.firehose_buffer_seconds} s): seconds to fill, S3 objects/hour",
        [
            f"{fmt(min(t.firehose_buffer_seconds, t.firehose_buffer_mb * MIB / (r * m.line_bytes)))} s, "
            f"{fmt(3600 / min(t.firehose_buffer_seconds, t.firehose_buffer_mb * MIB / (r * m.line_bytes)))}"
            for r in RATES
        ],
    )
    return table(["resource", *(f"{r:,} events/s" for r in RATES)], rows)


def hot_table(m: Measurements) -> str:
    api, kinesis = hot_shoppers(m)
    serial = 1000 / ASSUMED_DYNAMODB_ROUND_TRIPS_MS  # one read + one write per round, one round at a time
    one_batch_at_a_time = kinesis.events_per_write / (m.kinesis_hot.duration_ms_per_invocation / 1000)
    others = [
        (
            serial,
            f"serial read-fold-write: {fmt(serial)} writes/s at {fmt(ASSUMED_DYNAMODB_ROUND_TRIPS_MS)} ms a round",
        ),
        (
            min(_q("kinesis_shard_records"), one_batch_at_a_time),
            f"one shard: {fmt(_q('kinesis_shard_records'))} records/s; one batch of the key at a time: "
            f"{fmt(kinesis.events_per_write)} events per {fmt(m.kinesis_hot.duration_ms_per_invocation)} ms = "
            f"{fmt(one_batch_at_a_time)}/s",
        ),
    ]
    rows = [
        [
            h.path,
            fmt(h.events_per_write),
            fmt(h.write_units_per_write),
            fmt(h.read_units_per_read),
            fmt(h.partition_bound),
            note,
            f"**{fmt(min(h.partition_bound, other))}**",
        ]
        for h, (other, note) in zip((api, kinesis), others, strict=True)
    ]
    return table(
        [
            "path",
            "events per write",
            "WRU per write",
            "RRU per read",
            "events/s the partition takes (1,000 WCU, 3,000 RCU)",
            "the path's own bound",
            "one shopper's ceiling, events/s",
        ],
        rows,
    )


def _kinesis_verdict(m: Measurements) -> str:
    """Whether the stream's shards give the function the concurrency the measured batches need."""
    t = m.template
    batch_seconds = m.kinesis.duration_ms_per_invocation / 1000
    per_shard = t.parallelization_factor * m.kinesis.events / m.kinesis.invocations / batch_seconds
    short = [r for r in RATES if concurrency(m.kinesis, r) > kinesis_shards(r) * t.parallelization_factor]
    if not short:
        return "The measured need is below it at every rate here."
    return (
        f"**It binds before the records do**: a batch of 100 different shoppers takes "
        f"{fmt(batch_seconds)} s (one read and one write per shopper, in turn), so one shard drains at "
        f"most {fmt(per_shard)} events/s, less than the 1,000 it accepts. At "
        f"{', '.join(f'{r:,}' for r in short)} events/s the shards the records need leave the "
        "function behind (its iterator age grows: `StreamIteratorAgeAlarm`): size a provisioned stream "
        f"by {fmt(per_shard)} events/s per shard, or raise `ParallelizationFactor` (up to 10). An "
        "on-demand stream sizes its shards by bytes and records, not by the consumer's speed, so the "
        "same holds for it."
    )


def _reading(m: Measurements) -> list[str]:
    t = m.template
    top = RATES[-1]
    api_concurrency = concurrency(m.api, top)
    wru = top * per_event(m.api, m.api.write_units)
    kinesis_wru = top * per_event(m.kinesis, m.kinesis.write_units)
    return [
        "Reading the table:",
        f"- **The stage throttle is the first wall.** template.yaml's `ApiRateLimit` ({t.api_rate_limit}/s) "
        f"and `ApiBurstLimit` ({t.api_burst_limit}) protect the account from a runaway client; a shop "
        "sending more single-event requests than that raises them (`sam deploy --parameter-overrides "
        "ApiRateLimit=...`), batches events (`POST /events` takes up to 25), or sends its server-side "
        f"events by the bus or Kinesis. Then comes the account's {fmt(_q('api_account_rps'))} requests/s "
        f"({fmt(_q('api_account_burst'))} burst), shared by every API of the account and region.",
        f"- **Lambda concurrency is not the limit** at these rates: {fmt(m.api.duration_ms_per_invocation)} ms "
        f"per event on the API path is {fmt(api_concurrency)} concurrent executions at {top:,} events/s, "
        f"{api_concurrency / _q('lambda_concurrency'):.0%} of the default {fmt(_q('lambda_concurrency'))}. "
        f"Scaling out is {fmt(_q('lambda_scaling'))} new executions per function every 10 s, so a cold burst "
        "to that rate is absorbed in seconds (each new container pays a cold start: "
        "[benchmarks.md](benchmarks.md) §3).",
        f"- **DynamoDB is the limit at {top:,} events/s on the API or bus path**: each single-event write "
        f"rewrites the whole state item, {fmt(wru)} WRU/s against the table's default on-demand quota of "
        f"{fmt(_q('ddb_table_wru'))}. Ask for more (on-demand follows up to twice the previous peak at "
        "once; a new table takes 4,000 writes/s unless pre-warmed) or use the Kinesis path, whose one "
        f"write per shopper per batch needs {fmt(kinesis_wru)} WRU/s for batches of 100 different "
        "shoppers (fewer when a batch holds several events of a shopper).",
        f"- **Kinesis**: on-demand takes {fmt(_q('kinesis_ondemand_initial_records'))} records/s at creation "
        "and adapts; provisioned shards take 1,000 records/s each. The function runs at most "
        f"`ParallelizationFactor` ({t.parallelization_factor}) batches per shard at once, so shards x "
        f"{t.parallelization_factor} bounds its concurrency. " + _kinesis_verdict(m),
        "- **Firehose** is far from its limits: the shipper packs a stream batch into one "
        "`PutRecordBatch`, so its requests/s are the rate over the batch size, and the bytes "
        f"{m.line_bytes} per event. The buffer ({t.firehose_buffer_mb} MB or {t.firehose_buffer_seconds} s) "
        "decides how late the event log is and how many S3 objects the retrain job reads: at high rates "
        f"the {t.firehose_buffer_mb} MB closes a buffer before {t.firehose_buffer_seconds} s.",
    ]


def render(m: Measurements, seconds: float | None) -> str:
    """`seconds`: how long the measurements took; None when re-rendered from saved ones."""
    prices = table(
        ["item", "price (USD)", "unit", "source"],
        [[name, f"{price.amount:g}", price.unit, price.source] for name, price in PRICES.items()],
    )
    quotas = table(
        ["quota", "default", "what", "source"],
        [[name, fmt(q.value), q.unit, q.source] for name, q in QUOTAS.items()],
    )
    parts = [
        "# Capacity and cost at scale",
        "Generated by `python -m bench.capacity` (bench/capacity.py, bench/capacity_report.py) — do not "
        "edit by hand; rerun it and commit the result. "
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}"
        + (
            f"; run time {seconds / 60:.1f} min. "
            if seconds is not None
            else " (re-rendered from saved measurements). "
        )
        + "The "
        "local load test (what the code does under concurrency, and that nothing is lost or doubled) is "
        "[load-test.md](load-test.md); the per-event cost breakdown is [benchmarks.md](benchmarks.md) §5 "
        "and the Kinesis path [kinesis.md](kinesis.md).",
        "**What is measured and what is not.** Lambda durations, state reads and writes and their sizes "
        f"are measured on the real handlers against moto with a {NUM_ITEMS:,}-item model "
        "(`bench.kinesis_cost.measure`): the handler's CPU time outside AWS calls, scaled to the 1024 MB "
        "function's share of a vCPU, plus an assumed 10 ms of DynamoDB round trips per write (moto is "
        "not DynamoDB). AWS quotas are the documented defaults (table at the end; most are raised on "
        "request). Traffic is taken as evenly spread: size for the peak, not the month's average (a "
        "shop's evening peak is often 3-5x its average).",
        "## Measured inputs",
        measured_inputs(m),
        "## What 100, 1,000 and 10,000 events per second need",
        "Each cell: what the rate needs, of what the limit allows (share; *near* above 50 %, *over* above "
        "100 %).",
        capacity_table(m),
        *_reading(m),
        "## A hot shopper",
        "All of one shopper's writes go to one partition key: DynamoDB allows 1,000 WCU/s and 3,000 "
        "RCU/s per partition whatever the table's capacity, and each write rewrites the whole item:",
        hot_table(m),
        "On the API and bus paths one shopper's writes are also serial (read, fold, conditional write), "
        "about as tight a bound as the partition's, and concurrent writers for one shopper make it "
        "worse: they conflict and retry (the load test's *emulated containers* row, "
        "[load-test.md](load-test.md): conflicts grow with the writers, a request losing "
        "`MAX_WRITE_ATTEMPTS` times answers 409 and is resent, nothing is lost or doubled). A real "
        "shopper sends a few events a minute; a hot key is a bot, a shared kiosk account or a replay, and "
        "the Kinesis path is the way in for it: a batch folds up to 100 of its events into one write.",
        "## Cost per month",
        f"Prices: {PRICES_AS_OF}. API Gateway REST as deployed today, traffic evenly spread, steady "
        "shoppers. Beyond bench.cost's per-event lines this counts: X-Ray (`Tracing: Active`, default "
        "sampling: the first request each second and 5 % of the rest, for the API function and the "
        f"log shipper; recorded at ${PRICES['xray_trace'].amount:g}/M and, assumed, "
        f"{ASSUMED_XRAY_RETRIEVED_SHARE:.0%} retrieved at ${PRICES['xray_trace_retrieved'].amount:g}/M); KMS "
        f"(the template's customer managed key at ${PRICES['kms_key_month'].amount:g}/month, and "
        f"~{ASSUMED_KMS_CALLS_PER_CONTAINER_HOUR} requests per warm container per hour, assumed: DynamoDB "
        "and CloudWatch Logs cache data keys for minutes); CloudWatch custom metrics (each EMF metric "
        f"name x dimension set, ${PRICES['cw_metric_month'].amount:g}/metric-month) and the template's "
        f"alarms; log ingestion (~{ASSUMED_LOG_BYTES_PER_INVOCATION} B per invocation, assumed) and "
        "storage for the retention; the first month's storage (state items: "
        f"{ASSUMED_EVENTS_PER_SHOPPER_MONTH} events per active shopper a month, assumed; the event "
        "log's lines). Storage growth over months is below. The retrain is bench.cost's: "
        f"{ASSUMED_TRAINING_RUNS_PER_MONTH} runs a month of {fmt(ASSUMED_RETRAIN_SECONDS)} s (assumed); "
        "how long a retrain really takes as the log grows, and the largest log one retrain Lambda takes, "
        "is [training-scale.md](training-scale.md).",
        "Amazon Personalize at the same traffic, with the price components bench.cost uses: real-time "
        f"inference ${PRICES['personalize_tps_hour'].amount:g} per TPS-hour for the first 20K a month, "
        "$0.10 to 200K, $0.05 above, a campaign billed for at least 1 TPS around the clock; ingestion "
        f"${PRICES['personalize_ingest_gb'].amount:g}/GB (~{ASSUMED_PERSONALIZE_EVENT_BYTES} B per event, "
        f"assumed); training ${PRICES['personalize_training_hour'].amount:g} per training hour "
        f"({ASSUMED_TRAINING_RUNS_PER_MONTH} retrains of {fmt(ASSUMED_PERSONALIZE_TRAINING_HOURS_PER_RUN)} "
        "h a month, assumed, though training time grows with data); plus the same API Gateway and "
        "Lambda in front, because a shop's page cannot call Personalize directly. Each event is a "
        "`PutEvents` and its fresh list a `GetRecommendations` (1 TPS-hour = 3,600 requests). These are "
        "Personalize's list prices as of 2024-2025 (aws.amazon.com/personalize/pricing, us-east-1), "
        "not re-checked online for this report (no network here).",
        cost_tables(m),
        "## Storage growth",
        f"State items never expire (only erasure markers do), so the table grows with every new shopper: "
        f"{ASSUMED_EVENTS_PER_SHOPPER_MONTH} events per active shopper a month and "
        f"{ASSUMED_NEW_SHOPPER_SHARE:.0%} of each month's shoppers new (assumed), "
        f"{fmt(m.stored_item_bytes / 1024)} KB each (measured, a steady history; a shopper with few events "
        "has a smaller item, so this is an upper bound). The event log keeps `EventLogRetentionDays` "
        "of uncompressed JSON lines (Firehose `CompressionFormat: UNCOMPRESSED`).",
        storage_table(m),
        "## Prices and quotas used",
        prices,
        quotas,
    ]
    return "\n\n".join(parts).rstrip() + "\n\n" + _training_section()


def _training_section() -> str:
    """`bench.training_scale`'s summary from its saved results (docs/benchmarks/training-scale.json)."""
    from bench.training_scale import RESULTS, load_results
    from bench.training_scale_doc import capacity_section

    if not RESULTS.exists():
        return "## Training\n\nTraining capacity (issue 14) is measured in [training-scale.md](training-scale.md).\n"
    return capacity_section(load_results(RESULTS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"report (default {DEFAULT_OUT})")
    parser.add_argument(
        "--measurements",
        type=Path,
        default=MEASUREMENTS_CACHE,
        help=f"where the measurements are saved (default {MEASUREMENTS_CACHE})",
    )
    parser.add_argument(
        "--render-only", action="store_true", help="re-render the report from the saved measurements"
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.render_only:
        measured = Measurements.from_json(args.measurements.read_text(encoding="utf-8"))
    else:
        measured = measure_all()
        args.measurements.parent.mkdir(parents=True, exist_ok=True)
        args.measurements.write_text(measured.to_json(), encoding="utf-8")
    seconds = None if args.render_only else time.perf_counter() - started
    args.out.write_text(render(measured, seconds), encoding="utf-8")
    print(f"[capacity] wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
