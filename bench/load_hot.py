"""The hot shopper of the load test (bench.load): many events for one `user_id` at once, and the proof
afterwards that every event the stack accepted was applied exactly once.

Two ways in, against the same running local stack:

* **through the API** (`POST /events`, one event per request, `clients` threads). The local stack runs
  its in-process functions one invocation at a time (standin/functions.py: a Lambda container runs one
  at a time, and only one container is emulated), so requests queue in the gateway and the optimistic
  lock is never contended here: what this shows is that nothing is lost or doubled under concurrent HTTP.
* **through emulated containers**: `clients` threads, each with a `Recommender` of its own (its own
  boto3 clients, model, catalog: what each warm Lambda container holds), calling `track` as the API
  handler does, against the stack's DynamoDB (moto, conditional writes with real semantics). This is the
  contended case: each conflict (`VersionConflict`) is counted, a request that loses every attempt is
  the API's 409 (`ConcurrentUpdate`), and its client sends it again.

A client resends an event answered 409, 429, 5xx or not at all (same event id: events are idempotent
by id), up to `MAX_ATTEMPTS` times with jittered backoff, and finally resends a tenth of the applied
events once more to check they come back `duplicate`. The verdict reads, afterwards:
the shopper's state through `GET /users/{id}/data` (`version` = writes; one event per write, so it must
equal the applied events; `processed_event_ids` likewise while under the 200-id window) and the S3 event
log (each applied event id exactly once, no other)."""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.load import CONNECTION_FAILED, Target, catalog_item_ids, view_event
from nextpick.errors import NextpickError, VersionConflict
from nextpick_local.http_client import JsonClient, Unreachable

MAX_ATTEMPTS = 8
RESEND_EVERY = 10
LOG_WAIT_SECONDS = 120.0
# Answers a client sends again: the request may be retried as it is (docs/design.md's error table).
RETRIABLE = frozenset({"409", "429", "500", "502", "503", "504", "no answer"})


@dataclass(frozen=True)
class Verdict:
    applied: int  # events answered accepted, or duplicate after a failed attempt (applied by it)
    accepted_twice: int  # events answered accepted more than once (applied twice)
    failed: int  # events still refused after MAX_ATTEMPTS (never applied: not lost, refused)
    # Fresh events whose first answer was `duplicate`: claimed as seen, never applied (lost).
    spurious_duplicates: int
    resent: int
    resent_duplicate: int  # of the resent, answered `duplicate` (all of them, if exactly once)
    state_version: int
    processed_ids: int
    log_lines: int  # lines of this shopper in the event log
    log_missing: int  # applied events absent from the log
    log_doubled: int  # event ids present more than once
    log_foreign: int  # event ids in the log never applied

    @property
    def exactly_once(self) -> bool:
        return (
            self.accepted_twice == 0
            and self.spurious_duplicates == 0
            and self.resent_duplicate == self.resent
            and self.state_version == self.applied
            and self.processed_ids == self.applied
            and self.log_missing == self.log_doubled == self.log_foreign == 0
        )


@dataclass(frozen=True)
class HotRun:
    path: str
    clients: int
    events: int
    wall_seconds: float
    answers: Counter[str]  # every attempt's answer: accepted, duplicate, 409, 503, ...
    conflicts: int | None  # optimistic-lock conflicts inside the service (None: not observable)
    verdict: Verdict

    @property
    def retries(self) -> int:
        return sum(self.answers.values()) - self.events


Send = Callable[[dict[str, Any]], str]


def _send_until_answered(send: Send, event: dict[str, Any], answers: list[str]) -> None:
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            time.sleep(random.uniform(0, min(1.0, 0.02 * 2**attempt)))
        answer = send(event)
        answers.append(answer)
        if answer not in RETRIABLE:
            return


def hammer(
    send_for_client: Callable[[int], Send], clients: int, events: list[dict[str, Any]]
) -> list[list[str]]:
    """Every event sent by one of `clients` threads (event n by client n % clients); each event's answers."""
    answers: list[list[str]] = [[] for _ in events]

    def client_loop(client: int) -> None:
        send = send_for_client(client)
        for n in range(client, len(events), clients):
            _send_until_answered(send, events[n], answers[n])

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client_loop, range(clients)))
    return answers


def applied_ids(events: list[dict[str, Any]], answers: list[list[str]]) -> list[str]:
    """The events this run applied: answered `accepted`, or `duplicate` after a failed attempt (that
    attempt stored it before its answer was lost). A first answer `duplicate` applied nothing."""
    applied = []
    for event, got in zip(events, answers, strict=True):
        if "accepted" in got or (len(got) > 1 and got[-1] == "duplicate"):
            applied.append(str(event["event_id"]))
    return applied


def log_event_ids(target: Target, user_id: str, since: datetime) -> Counter[str]:
    """The event ids of `user_id`'s lines in the log objects written since `since`, read through the
    stack's stand-in (older objects cannot hold this run's events)."""
    import json

    import boto3

    from nextpick.adapters.s3_event_log import S3EventLog
    from nextpick.domain.erasure import user_lines
    from nextpick.domain.impressions import IMPRESSION_RECORD
    from nextpick_training.parquet_log import json_lines_of

    s3 = boto3.session.Session().client("s3")
    log = S3EventLog(target.state["resources"]["ModelBucket"], s3)
    found: Counter[str] = Counter()
    for obj in log.list_objects():
        if obj.last_modified < since:
            continue
        # The log is Parquet (issue 14), read as the JSON records it holds; the answers' impressions
        # (issue 13) name the shopper too, and are not events.
        for line in user_lines(json_lines_of(log.read(obj) or b""), user_id):
            record = json.loads(line)
            if record.get("record_type") != IMPRESSION_RECORD:
                found[str(record.get("event_id"))] += 1
    return found


def verdict(
    target: Target,
    user_id: str,
    events: list[dict[str, Any]],
    answers: list[list[str]],
    resend: Send,
    since: datetime,
) -> Verdict:
    applied = applied_ids(events, answers)
    by_id = {str(event["event_id"]): event for event in events}
    resent = [by_id[event_id] for event_id in applied[::RESEND_EVERY]]
    resent_answers = [resend(event) for event in resent]
    code, exported = JsonClient(target.api_url, target.state["admin_key"]).request(
        "GET", f"/users/{user_id}/data"
    )
    if code != 200:
        raise RuntimeError(f"GET /users/{user_id}/data answered {code}: {exported}")
    state = exported["state"] or {}
    # The shipper reads the stream every 0.5 s; wait until the log holds every applied event.
    deadline = time.monotonic() + LOG_WAIT_SECONDS
    logged = log_event_ids(target, user_id, since)
    while set(applied) - set(logged) and time.monotonic() < deadline:
        time.sleep(1.0)
        logged = log_event_ids(target, user_id, since)
    return Verdict(
        applied=len(applied),
        accepted_twice=sum(1 for got in answers if got.count("accepted") > 1)
        + sum(1 for answer in resent_answers if answer == "accepted"),
        failed=sum(1 for got in answers if not got or got[-1] in RETRIABLE),
        spurious_duplicates=sum(1 for got in answers if got[:1] == ["duplicate"]),
        resent=len(resent),
        resent_duplicate=sum(1 for answer in resent_answers if answer == "duplicate"),
        state_version=int(state.get("version", 0)),
        processed_ids=int(state.get("processed_event_ids", 0)),
        log_lines=sum(logged.values()),
        log_missing=len(set(applied) - set(logged)),
        log_doubled=sum(1 for count in logged.values() if count > 1),
        log_foreign=len(set(logged) - set(applied)),
    )


def _http_send(target: Target) -> Send:
    client = target.client()

    def send(event: dict[str, Any]) -> str:
        try:
            code, body = client.request("POST", "/events", event)
        except Unreachable:
            return "no answer"
        if code == 200:
            return str(body["results"][0]["status"]) if "results" in body else str(body["status"])
        return str(code) if code != CONNECTION_FAILED else "no answer"

    return send


class CountingStates:
    """A container's state repository, counting the optimistic-lock conflicts its writes meet."""

    def __init__(self, inner: Any, counter: Counter[str], lock: threading.Lock) -> None:
        self._inner = inner
        self._counter = counter
        self._lock = lock

    def save(self, state: Any) -> Any:
        try:
            return self._inner.save(state)
        except VersionConflict:
            with self._lock:
                self._counter["conflicts"] += 1
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _containers(target: Target, clients: int, counter: Counter[str]) -> list[Any]:
    """One `Recommender` per emulated container, built as wiring.recommender() builds it, each on
    its own boto3 clients (built here, in one thread: boto3's default session is not thread-safe)."""
    import boto3

    from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
    from nextpick.adapters.dynamodb_state import DynamoDbStateRepository
    from nextpick.adapters.s3_model_source import S3ModelSource
    from nextpick.domain.service import Recommender, ServiceConfig
    from nextpick.handlers import wiring
    from nextpick.settings import get_settings
    from nextpick_local.standin.stack import local_client_config

    os.environ.update(target.state["function_env"])
    wiring.reset()
    settings = get_settings()
    lock = threading.Lock()
    built = []
    for _ in range(clients):
        session = boto3.session.Session()
        dynamodb = session.client("dynamodb", config=local_client_config())
        s3 = session.client("s3", config=local_client_config())
        limits = wiring._state_limits()
        built.append(
            Recommender(
                states=CountingStates(
                    DynamoDbStateRepository(settings.state_table_name, limits, dynamodb), counter, lock
                ),
                models=S3ModelSource(settings.model_bucket_name, settings.model_prefix, 3600, s3),
                catalog=DynamoDbCatalog(settings.items_table_name, 3600, dynamodb),
                config=ServiceConfig(limits=limits, max_write_attempts=settings.max_write_attempts),
            )
        )
        # Warm, as a container is after its first request: the model and the catalog snapshot are
        # loaded before the clock starts, so what runs concurrently is the read-fold-write cycle.
        built[-1].models.current()
        built[-1].catalog.snapshot()
    return built


def _container_send(recommender: Any) -> Send:
    from nextpick.domain.events import TrackedEvent
    from nextpick.domain.ranking import RecommendOptions

    def send(event: dict[str, Any]) -> str:
        try:
            result = recommender.track([TrackedEvent.model_validate(event)], RecommendOptions())
        except NextpickError as error:  # what the API handler answers for it (ConcurrentUpdate: 409)
            return str(error.status)
        return str(result.results[0].status)

    return send


def hot_run(target: Target, path: str, clients: int, count: int, run_id: str) -> HotRun:
    items = catalog_item_ids(target)[:40]
    user_id = f"hot-{run_id}-{'api' if path == 'API' else 'containers'}"
    events = [view_event(user_id, items[n % len(items)], f"{user_id}-{n}") for n in range(count)]
    counter: Counter[str] = Counter()
    since = datetime.now(UTC) - timedelta(seconds=5)
    if path == "API":
        senders: list[Send] = [_http_send(target) for _ in range(clients)]
    else:
        senders = [_container_send(r) for r in _containers(target, clients, counter)]
    started = time.perf_counter()
    answers = hammer(lambda client: senders[client], clients, events)
    wall = time.perf_counter() - started
    result = HotRun(
        path,
        clients,
        count,
        wall,
        Counter(answer for got in answers for answer in got),
        counter["conflicts"] if path != "API" else None,
        verdict(target, user_id, events, answers, senders[0], since),
    )
    print(f"[load] hot shopper, {path}: {result.verdict}", file=sys.stderr, flush=True)
    return result


def hot_shopper_runs(target: Target, clients: int, count: int, run_id: str) -> list[HotRun]:
    return [
        hot_run(target, "API", clients, count, run_id),
        hot_run(target, "emulated containers", clients, count, run_id),
    ]
