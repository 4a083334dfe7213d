"""The scheduled retrain job end to end, against the template's bucket and bus in moto.

The event log is written exactly as Firehose writes it (newline-terminated `TrackedEvent.log_record`
lines under `events/year=/month=/day=/`), with at-least-once duplicates and a malformed line.
Models are tiny (a few seconds of CPU) but real: trained, exported to .tflite and scored via LiteRT.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

import nextpick_training.handler as handler_module
from nextpick.adapters import model_registry as registry
from nextpick.adapters.s3_model_source import S3ModelSource
from nextpick.domain.events import EventType, ReviewEvent, SearchEvent, TrackedEvent
from nextpick.errors import ModelIntegrityError, NotFound
from nextpick_local.standin.aws_resources import Stack
from nextpick_training import model as model_lib
from nextpick_training import publish as publish_lib
from nextpick_training.parquet_log import json_lines_to_parquet
from nextpick_training.pipeline import RetrainStatus, run_retrain
from nextpick_training.settings import TrainingSettings, get_training_settings

pytestmark = pytest.mark.slow

REGION = "us-east-1"
REPO = Path(__file__).resolve().parents[2]
SCHEDULE_EVENT = json.loads((REPO / "events" / "schedule_retrain.json").read_text())
TINY = {
    "embedding_dim": 8,
    "hidden_dim": 16,
    "repeat_hidden_dim": 8,
    "decays": [0.5, 1.0],
    "epochs": 2,
    "learning_rate": 0.02,
    "negatives": 16,
}
USERS, ITEMS, PER_USER = 60, 40, 40
DUPLICATES = 30


# ------------------------------------------------------------------------------------------ the event log


def shop_log(now: datetime, users: int = USERS, per_user: int = PER_USER, seed: int = 7) -> list[str]:
    """Log lines of a shop with structured tastes: 4 groups of 10 items, users walk their group's
    items mostly in order (a learnable next item), with some noise across the whole catalog."""
    rng = random.Random(seed)
    types = [EventType.VIEW, EventType.VIEW, EventType.CLICK, EventType.ADD_TO_CART, EventType.PURCHASE]
    lines = []
    for u in range(users):
        group = u % 4
        position = rng.randrange(10)
        moment = now - timedelta(days=5, minutes=u)
        for j in range(per_user):
            if rng.random() < 0.85:
                position = (position + 1) % 10
                item = f"item-{group * 10 + position}"
            else:
                item = f"item-{rng.randrange(ITEMS)}"
            event_type = rng.choice([*types, EventType.RATE])
            rating = rng.randint(1, 5) if event_type is EventType.RATE else None
            event = TrackedEvent(
                event_id=f"evt-{seed}-{u}-{j}",
                user_id=f"user-{u}",
                item_id=item,
                event_type=event_type,
                timestamp=moment,
                rating=rating,
            )
            lines.append(json.dumps(event.log_record(moment + timedelta(seconds=2))))
            moment += timedelta(minutes=3)
    return lines


def write_log(
    s3: Any, bucket: str, lines: list[str], now: datetime, duplicates: int = 0, parquet: bool = False
) -> None:
    """Spread the lines over three Firehose-style objects; re-deliver `duplicates` of them in a fourth
    object (at-least-once delivery) next to one malformed (truncated) line. JSON lines as Firehose
    wrote them before issue 14, or with `parquet` as it writes them since (the malformed line then
    goes to Firehose's error prefix instead, as a record that fails conversion does)."""
    day = now - timedelta(days=1)
    folder = f"events/year={day:%Y}/month={day:%m}/day={day:%d}/"

    def put(key: str, body: bytes) -> None:
        if parquet:
            converted = json_lines_to_parquet(body)
            assert converted is not None
            key, body = f"{key}.parquet", converted
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    third = len(lines) // 3 + 1
    for n in range(3):
        chunk = lines[n * third : (n + 1) * third]
        put(f"{folder}nextpick-event-log-1-{n}", "".join(f"{line}\n" for line in chunk).encode())
    if duplicates:
        again = random.Random(1).sample(lines, duplicates)
        body = "".join(f"{line}\n" for line in again[:10]) + '{"event_id": "evt-trunc\n'
        body += "".join(f"{line}\n" for line in again[10:])
        put(f"{folder}nextpick-event-log-1-retry", body.encode())


# ------------------------------------------------------------------------------------------ fixtures


class Context:
    function_name = "nextpick-test-RetrainFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 4096
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:nextpick-test-RetrainFunction"
    aws_request_id = "retrain-test"


@pytest.fixture
def retrain_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """The RetrainFunction's environment from template.yaml, plus small-data thresholds for tests."""
    env = {
        **stack.env("RetrainFunction"),
        "MIN_EVENTS": "500",
        "MIN_USERS": "10",
        "HYPERPARAMETERS": json.dumps(TINY),
        "POWERTOOLS_METRICS_NAMESPACE": "NextpickTest",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_training_settings.cache_clear()
    handler_module.reset_clients()
    yield env
    get_training_settings.cache_clear()
    handler_module.reset_clients()


@pytest.fixture
def invoke(retrain_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., dict[str, Any]]:
    """Invoke the handler with events/schedule_retrain.json, after optional env overrides."""

    def call(**overrides: str) -> dict[str, Any]:
        for name, value in overrides.items():
            monkeypatch.setenv(name, value)
        get_training_settings.cache_clear()
        result: dict[str, Any] = handler_module.lambda_handler(SCHEDULE_EVENT, Context())
        return result

    return call


@pytest.fixture
def model_published(stack: Stack, aws: None) -> Callable[[], list[dict[str, Any]]]:
    """Capture ModelPublished events from the stack's bus with an SQS target on a test-only rule."""
    sqs = boto3.client("sqs", region_name=REGION)
    events = boto3.client("events", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="model-published-capture")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    events.put_rule(
        Name="test-capture-model-published",
        EventBusName=stack.event_bus,
        EventPattern=json.dumps({"source": ["nextpick"], "detail-type": ["ModelPublished"]}),
    )
    events.put_targets(
        Rule="test-capture-model-published",
        EventBusName=stack.event_bus,
        Targets=[{"Id": "capture", "Arn": queue_arn}],
    )

    def drain() -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return received
            for message in messages:
                received.append(json.loads(message["Body"]))
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    return drain


def get_json(s3: Any, bucket: str, key: str) -> Any:
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def run_records(s3: Any, bucket: str) -> list[dict[str, Any]]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="runs/").get("Contents", [])]
    return [get_json(s3, bucket, key) for key in sorted(keys)]


def pointer_bytes(s3: Any, bucket: str) -> bytes | None:
    try:
        body: bytes = s3.get_object(Bucket=bucket, Key="models/current.json")["Body"].read()
    except ClientError:
        return None
    return body


# ------------------------------------------------------------------------------------------ tests


def test_first_run_publishes_a_model_serving_can_load(
    stack: Stack, s3: Any, invoke: Callable[..., dict[str, Any]], model_published: Callable[[], list[Any]]
) -> None:
    now = datetime.now(UTC)
    write_log(s3, stack.model_bucket, shop_log(now), now, duplicates=DUPLICATES)

    result = invoke()

    assert result["status"] == "published", result["reason"]
    assert result["reason"] == "first model"
    version = result["published_version"]
    assert version == result["candidate_version"]
    # Duplicates counted once, the malformed line dropped and counted.
    assert result["counts"]["events"] == USERS * PER_USER
    assert result["counts"]["duplicates"] == DUPLICATES
    assert result["counts"]["malformed"] == 1
    assert result["counts"]["holdout_users"] == result["counts"]["evaluated_users"] == USERS

    pointer = get_json(s3, stack.model_bucket, "models/current.json")
    manifest = get_json(s3, stack.model_bucket, f"models/{version}/manifest.json")
    tflite = s3.get_object(Bucket=stack.model_bucket, Key=f"models/{version}/model.tflite")["Body"].read()
    digest = hashlib.sha256(tflite).hexdigest()
    assert pointer["version"] == version
    assert pointer["model_key"] == f"models/{version}/model.tflite"
    assert pointer["manifest_key"] == f"models/{version}/manifest.json"
    assert pointer["sha256"] == manifest["sha256"] == digest
    assert version.endswith("-" + digest[:8])
    assert manifest["format"] == registry.MANIFEST_FORMAT
    assert manifest["size_bytes"] == len(tflite)
    assert manifest["items"][0] is None
    assert manifest["num_items"] == len(manifest["items"]) == ITEMS + 1
    assert manifest["event_types"] == [t.value for t in EventType]
    # Each user's last basket (a run of purchases minutes apart, or one other event) is held out.
    held_out = USERS * PER_USER - manifest["training_window"]["events"]
    assert manifest["training_window"]["events"] == result["counts"]["train_events"]
    assert USERS <= held_out < 3 * USERS
    assert manifest["hyperparameters"]["embedding_dim"] == TINY["embedding_dim"]
    assert manifest["metrics"]["ndcg@10"] == result["candidate_metrics"]["ndcg@10"]

    # Serving's own loader accepts it (checksums, manifest, signatures).
    served = S3ModelSource(stack.model_bucket, client=s3).current()
    assert served is not None and served.version == version
    assert served.state_dim == manifest["state_dim"]
    # Bought together is published beside it, computed from the log's orders, and loaded with it.
    entry = manifest["bought_together"]
    assert (
        entry["shape"] == [ITEMS + 1, 20] and entry["parameters"]["orders"] == result["counts"]["orders"] > 0
    )
    stored = s3.get_object(Bucket=stack.model_bucket, Key=registry.bought_together_key("models/", version))
    assert hashlib.sha256(stored["Body"].read()).hexdigest() == entry["sha256"]
    assert served.partner_table is not None and served.partner_table.partners.any()

    (event,) = model_published()
    assert event["source"] == "nextpick" and event["detail-type"] == "ModelPublished"
    assert event["detail"]["version"] == version
    assert event["detail"]["previous_version"] is None
    assert event["detail"]["metrics"]["ndcg@10"] == result["candidate_metrics"]["ndcg@10"]

    (record,) = run_records(s3, stack.model_bucket)
    assert record["status"] == "published"
    assert record["candidate_metrics"] == result["candidate_metrics"]
    assert record["live_version"] is None


def test_a_run_on_the_parquet_log_reads_its_window_through_the_query_and_publishes(
    stack: Stack, s3: Any, invoke: Callable[..., dict[str, Any]]
) -> None:
    """The log as Firehose writes it since issue 14: Parquet objects, read by the window query (DuckDB
    here, the stand-in for Athena), de-duplicated per (user_id, event_id) in SQL."""
    now = datetime.now(UTC)
    write_log(s3, stack.model_bucket, shop_log(now), now, duplicates=DUPLICATES, parquet=True)
    assert all(
        o["Key"].endswith(".parquet")
        for o in s3.list_objects_v2(Bucket=stack.model_bucket, Prefix="events/")["Contents"]
    )

    result = invoke()

    assert result["status"] == "published", result["reason"]
    assert result["counts"]["events"] == USERS * PER_USER
    assert result["counts"]["duplicates"] == DUPLICATES
    assert result["counts"]["malformed"] == 0  # a line Firehose cannot convert goes to events-errors/
    assert result["counts"]["holdout_users"] == USERS


def test_searches_and_reviews_in_the_log_train_as_their_stored_steps(
    stack: Stack, s3: Any, invoke: Callable[..., dict[str, Any]]
) -> None:
    """The retrain reads search and review records (issue 12): a search folds the items it was
    resolved to at ingest (views) and its clicks, a review is a rating; their text is not read."""
    now = datetime.now(UTC)
    lines = shop_log(now)
    for u in range(USERS):
        moment = now - timedelta(days=6, minutes=u)
        group = u % 4
        search = SearchEvent.model_validate(
            {
                "event_id": f"search-{u}",
                "user_id": f"user-{u}",
                "event_type": "search",
                "query": f"group {group} things",
                "clicked_items": [f"item-{group * 10}"],
                "timestamp": moment,
            }
        ).resolved([f"item-{group * 10 + 1}", f"item-{group * 10 + 2}"])
        review = ReviewEvent.model_validate(
            {
                "event_id": f"review-{u}",
                "user_id": f"user-{u}",
                "event_type": "review",
                "item_id": f"item-{group * 10 + 3}",
                "rating": 1 + u % 5,
                "text": "Fine.\nThanks",
                "timestamp": moment + timedelta(minutes=1),
            }
        )
        lines += [json.dumps(e.log_record(moment + timedelta(seconds=2))) for e in (search, review)]
    write_log(s3, stack.model_bucket, lines, now)

    result = invoke()

    assert result["status"] == "published", result["reason"]
    # Every shop event, plus per user the search's 2 matched views and 1 click and the review's rating.
    assert result["counts"]["events"] == USERS * PER_USER + USERS * 4
    assert result["counts"]["malformed"] == 0


def test_a_worse_candidate_is_rejected_and_the_live_model_stays(
    stack: Stack, s3: Any, invoke: Callable[..., dict[str, Any]], model_published: Callable[[], list[Any]]
) -> None:
    now = datetime.now(UTC)
    write_log(s3, stack.model_bucket, shop_log(now), now)
    first = invoke()
    assert first["status"] == "published", first["reason"]
    live_pointer = pointer_bytes(s3, stack.model_bucket)
    model_published()

    # learning_rate 0: the candidate keeps its random initial weights, so it must lose to the live model.
    second = invoke(HYPERPARAMETERS=json.dumps({**TINY, "learning_rate": 0.0}))

    assert second["status"] == "rejected", second["reason"]
    assert second["live_version"] == first["published_version"]
    assert second["candidate_metrics"]["ndcg@10"] < second["live_metrics"]["ndcg@10"]
    # The live model scored on the same held-out users as the candidate, with the same score as
    # when it was the candidate (same data, same vocabulary).
    assert second["live_metrics"] == first["candidate_metrics"]
    assert pointer_bytes(s3, stack.model_bucket) == live_pointer
    assert registry.list_versions(s3, stack.model_bucket) == [first["published_version"]]
    assert model_published() == []

    records = run_records(s3, stack.model_bucket)
    assert [r["status"] for r in records] == ["published", "rejected"]
    assert records[1]["candidate_metrics"] == second["candidate_metrics"]
    assert records[1]["live_metrics"] == second["live_metrics"]
    assert "worse than live" in records[1]["reason"]
    # The paired comparison that decided it is recorded, and it says "worse beyond the noise".
    assert records[1]["gate_difference"] < -records[1]["gate_allowance"] <= 0

    # With enough tolerance the same weak candidate passes the gate and replaces the live model.
    third = invoke(HYPERPARAMETERS=json.dumps({**TINY, "learning_rate": 0.0, "seed": 1}), GATE_TOLERANCE="1")
    assert third["status"] == "published", third["reason"]
    assert third["previous_version"] == first["published_version"]
    (event,) = model_published()
    assert event["detail"]["previous_version"] == first["published_version"]
    assert event["detail"]["rollback"] is False


def test_too_little_data_is_skipped_and_nothing_is_touched(
    stack: Stack, s3: Any, invoke: Callable[..., dict[str, Any]], model_published: Callable[[], list[Any]]
) -> None:
    now = datetime.now(UTC)
    write_log(s3, stack.model_bucket, shop_log(now, users=8, per_user=10), now, duplicates=5)
    fake_pointer = b'{"version": "20260101T000000Z-00000000"}'
    s3.put_object(Bucket=stack.model_bucket, Key="models/current.json", Body=fake_pointer)

    result = invoke()

    assert result["status"] == "skipped"
    assert "80 events" in result["reason"] and "min_events=500" in result["reason"]
    assert result["candidate_version"] is None
    assert pointer_bytes(s3, stack.model_bucket) == fake_pointer
    assert registry.list_versions(s3, stack.model_bucket) == []
    assert model_published() == []
    (record,) = run_records(s3, stack.model_bucket)
    assert record["status"] == "skipped"

    # Enough events but too few users is skipped too.
    assert invoke(MIN_EVENTS="10", MIN_USERS="9")["reason"].startswith("only 8 users")
    # A configuration mistake fails the run (returned, not raised) before anything is read.
    failed = invoke(HYPERPARAMETERS='{"epochz": 3}')
    assert failed["status"] == "failed" and "unknown hyperparameters: epochz" in failed["reason"]
    assert pointer_bytes(s3, stack.model_bucket) == fake_pointer


def test_training_that_raises_fails_the_run_without_raising(
    stack: Stack,
    s3: Any,
    invoke: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime.now(UTC)
    write_log(s3, stack.model_bucket, shop_log(now), now)
    fake_pointer = b'{"version": "20260101T000000Z-00000000"}'
    s3.put_object(Bucket=stack.model_bucket, Key="models/current.json", Body=fake_pointer)

    def broken_train(*args: Any, **kwargs: Any) -> Any:
        raise MemoryError("out of memory while training")

    monkeypatch.setattr(model_lib, "train", broken_train)
    result = invoke()

    assert result["status"] == "failed"
    assert "out of memory while training" in result["reason"]
    assert "MemoryError" in result["error"]
    assert pointer_bytes(s3, stack.model_bucket) == fake_pointer
    (record,) = run_records(s3, stack.model_bucket)
    assert record["status"] == "failed"


def test_a_live_model_that_fails_its_checksum_is_replaced(
    stack: Stack, s3: Any, invoke: Callable[..., dict[str, Any]]
) -> None:
    now = datetime.now(UTC)
    write_log(s3, stack.model_bucket, shop_log(now), now)
    broken = {
        "version": "20260101T000000Z-00000000",
        "model_key": "models/20260101T000000Z-00000000/model.tflite",
        "manifest_key": "models/20260101T000000Z-00000000/manifest.json",
        "sha256": "0" * 64,
        "published_at": "2026-01-01T00:00:00Z",
    }
    s3.put_object(Bucket=stack.model_bucket, Key="models/current.json", Body=json.dumps(broken).encode())

    result = invoke()

    # Serving refuses such a model as well, so there is nothing live for the gate to protect.
    assert result["status"] == "published", result["reason"]
    assert "unusable" in result["reason"]
    assert result["live_version"] == broken["version"] and result["live_metrics"] is None
    assert result["previous_version"] == broken["version"]
    assert get_json(s3, stack.model_bucket, "models/current.json")["version"] == result["published_version"]


class DenyPointerWrites:
    """An S3 client whose PutObject on the pointer is denied (as by a missing IAM permission)."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)

    def put_object(self, **kwargs: Any) -> Any:
        if kwargs["Key"].endswith("current.json"):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject")
        return self._s3.put_object(**kwargs)


def test_a_publish_that_cannot_switch_the_pointer_fails_and_the_live_model_stays(
    stack: Stack, s3: Any, retrain_env: dict[str, str], model_published: Callable[[], list[Any]]
) -> None:
    now = datetime.now(UTC)
    write_log(s3, stack.model_bucket, shop_log(now), now)
    events = boto3.client("events", region_name=REGION)
    settings = TrainingSettings.from_env(retrain_env)
    first = run_retrain(s3, events, settings, now)
    assert first.status is RetrainStatus.PUBLISHED
    live_pointer = pointer_bytes(s3, stack.model_bucket)
    model_published()

    loose = settings.model_copy(update={"gate_tolerance": 1.0, "hyperparameters": {**TINY, "seed": 3}})
    result = run_retrain(DenyPointerWrites(s3), events, loose, now + timedelta(minutes=1))

    assert result.status is RetrainStatus.FAILED
    assert "AccessDenied" in result.reason
    assert pointer_bytes(s3, stack.model_bucket) == live_pointer
    assert model_published() == []
    assert [r["status"] for r in run_records(s3, stack.model_bucket)] == ["published", "failed"]
    # The version directory written before the pointer is complete and verifiable (rollback could use it).
    assert result.candidate_version in registry.list_versions(s3, stack.model_bucket)

    # A missing bucket is a failure too, never an exception.
    gone = settings.model_copy(update={"model_bucket_name": "no-such-bucket"})
    assert run_retrain(s3, events, gone, now).status is RetrainStatus.FAILED


@pytest.fixture(scope="module")
def tiny_tflite() -> bytes:
    """One real exported model (trained on a few sequences), reused by the publish/rollback tests."""
    from nextpick_training.export import export_tflite

    sequences = [[(1 + (u + j) % 9, j % 6, 1.0, 1.79e9 + 3600.0 * j) for j in range(6)] for u in range(12)]
    hp = model_lib.Hyperparameters(
        embedding_dim=4, hidden_dim=8, repeat_hidden_dim=4, decays=(0.5, 1.0), epochs=1, negatives=4
    )
    return export_tflite(model_lib.train(sequences, 10, hp))


def publish_tiny(s3: Any, stack: Stack, tflite: bytes, created_at: datetime) -> publish_lib.PublishOutcome:
    events = boto3.client("events", region_name=REGION)
    return publish_lib.publish(
        s3,
        events,
        stack.model_bucket,
        "models/",
        stack.event_bus,
        tflite,
        state_dim=2 * 4 + 2 + 2 * 4 + 7,
        items=[None, *(f"item-{i}" for i in range(1, 10))],
        training_window={"start": "a", "end": "b", "events": 72, "users": 12},
        hyperparameters={},
        metrics={"ndcg@10": 0.5},
        created_at=created_at,
    )


def test_rollback_switches_back_and_refuses_a_corrupt_version(
    stack: Stack, s3: Any, tiny_tflite: bytes, model_published: Callable[[], list[Any]]
) -> None:
    events = boto3.client("events", region_name=REGION)
    bucket = stack.model_bucket
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    v1 = publish_tiny(s3, stack, tiny_tflite, t0).version
    v2 = publish_tiny(s3, stack, tiny_tflite, t0 + timedelta(hours=1)).version
    assert registry.list_versions(s3, bucket) == [v1, v2]
    assert (registry.current_pointer(s3, bucket) or {}).get("version") == v2
    model_published()

    outcome = publish_lib.rollback(s3, events, bucket, "models/", stack.event_bus, v1)

    assert outcome.version == v1 and outcome.previous_version == v2 and outcome.notified
    pointer = registry.current_pointer(s3, bucket)
    assert pointer is not None and pointer["version"] == v1
    assert pointer["sha256"] == hashlib.sha256(tiny_tflite).hexdigest()
    served = S3ModelSource(bucket, client=s3).current()
    assert served is not None and served.version == v1
    (event,) = model_published()
    assert event["detail"] == {
        "version": v1,
        "previous_version": v2,
        "metrics": {"ndcg@10": 0.5},
        "rollback": True,
    }

    # A version whose model no longer matches its manifest's sha256 is refused; the pointer stays.
    s3.put_object(Bucket=bucket, Key=f"models/{v2}/model.tflite", Body=tiny_tflite + b"tampered")
    before = pointer_bytes(s3, bucket)
    with pytest.raises(ModelIntegrityError):
        publish_lib.rollback(s3, events, bucket, "models/", stack.event_bus, v2)
    with pytest.raises(NotFound):
        publish_lib.rollback(s3, events, bucket, "models/", stack.event_bus, "20200101T000000Z-deadbeef")
    assert pointer_bytes(s3, bucket) == before
    assert model_published() == []


def test_versions_are_never_overwritten_and_the_pointer_is_compare_and_swap(
    stack: Stack, s3: Any, tiny_tflite: bytes
) -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    v1 = publish_tiny(s3, stack, tiny_tflite, t0).version
    with pytest.raises(publish_lib.VersionExists):
        publish_tiny(s3, stack, tiny_tflite, t0)
    assert (registry.current_pointer(s3, stack.model_bucket) or {}).get("version") == v1

    # A publisher that read the pointer before someone else switched it does not overwrite it.
    stale_etag = registry.read_pointer(s3, stack.model_bucket, "models/").etag
    v2 = publish_tiny(s3, stack, tiny_tflite, t0 + timedelta(hours=1)).version
    manifest = registry.read_manifest(s3, stack.model_bucket, "models/", v1)
    with pytest.raises(publish_lib.PointerConflict):
        publish_lib._switch_pointer(s3, stack.model_bucket, "models/", manifest, stale_etag, t0)
    assert (registry.current_pointer(s3, stack.model_bucket) or {}).get("version") == v2
