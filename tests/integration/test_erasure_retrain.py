"""A retrain after an erasure never sees the erased shopper's events (issue 9), before and after the
log is compacted: the scheduled retrain handler on the template's bucket in moto, a small generated
shop, a real (tiny) model trained, exported and published."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import nextpick_training.handler as retrain_handler
from nextpick.domain.erasure import Erasure
from nextpick.domain.events import EventType, TrackedEvent
from nextpick.handlers import log_compactor, wiring
from nextpick_local.standin.aws_resources import Stack
from nextpick_training.settings import get_training_settings
from tests.integration.serving import sample_event
from tests.integration.test_log_compaction import CompactionContext
from tests.integration.test_retrain import PER_USER, SCHEDULE_EVENT, TINY, USERS, Context, shop_log

pytestmark = pytest.mark.slow

ERASED = "user-0"
# Items only the erased shopper ever touched: in the model's vocabulary iff it saw their events.
SECRETS = [f"secret-{n}" for n in range(5)]
NEW_LIFE_ITEM = "after-erasure-item"


def event_line(event_id: str, item: str, moment: datetime) -> str:
    event = TrackedEvent(
        event_id=event_id, user_id=ERASED, item_id=item, event_type=EventType.PURCHASE, timestamp=moment
    )
    return json.dumps(event.log_record(moment + timedelta(seconds=1)), separators=(",", ":"))


def write(s3: Any, bucket: str, key: str, lines: list[str]) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body="".join(f"{line}\n" for line in lines).encode())


@pytest.fixture
def retrain(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], dict[str, Any]]]:
    """RetrainFunction's handler with its template environment (small-data thresholds, a tiny model),
    and the compactor's environment beside it (one process, as the local stack runs them)."""
    env = {
        **stack.env("EventLogCompactionFunction"),
        **stack.env("RetrainFunction"),
        "MIN_EVENTS": "500",
        "MIN_USERS": "10",
        "HYPERPARAMETERS": json.dumps(TINY),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_training_settings.cache_clear()
    retrain_handler.reset_clients()
    wiring.reset()

    def run() -> dict[str, Any]:
        get_training_settings.cache_clear()
        result: dict[str, Any] = retrain_handler.lambda_handler(SCHEDULE_EVENT, Context())
        assert result["status"] == "published", result["reason"]
        return result

    yield run
    get_training_settings.cache_clear()
    retrain_handler.reset_clients()
    wiring.reset()


def manifest(s3: Any, bucket: str, version: str) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads(
        s3.get_object(Bucket=bucket, Key=f"models/{version}/manifest.json")["Body"].read()
    )
    return manifest


def test_a_model_trained_after_an_erasure_never_saw_the_shoppers_events(
    stack: Stack, s3: Any, retrain: Callable[[], dict[str, Any]]
) -> None:
    now = datetime.now(UTC)
    days_ago = now - timedelta(days=3)
    old_day, today = (f"events/year={d:%Y}/month={d:%m}/day={d:%d}/" for d in (days_ago, now))
    secrets = [
        event_line(f"secret-evt-{n}", item, days_ago + timedelta(minutes=n)) for n, item in enumerate(SECRETS)
    ]
    write(s3, stack.model_bucket, f"{old_day}nextpick-1-shop", shop_log(now) + secrets)
    erasure = Erasure(ERASED, now - timedelta(hours=1))
    new_life = event_line("new-life-1", NEW_LIFE_ITEM, now - timedelta(minutes=30))
    write(s3, stack.model_bucket, f"{today}nextpick-1-today", [erasure.log_record(), new_life])

    before_compaction = retrain()

    erased_events = PER_USER + len(SECRETS)
    counts = before_compaction["counts"]
    assert (counts["tombstones"], counts["erased"], counts["malformed"]) == (1, erased_events, 0)
    assert counts["events"] == USERS * PER_USER - PER_USER + 1
    seen = manifest(s3, stack.model_bucket, before_compaction["published_version"])
    assert not set(SECRETS) & set(seen["items"]), "the model's vocabulary holds the erased shopper's items"
    assert NEW_LIFE_ITEM in seen["items"]  # their life after the erasure is kept
    assert not set(SECRETS) & {item for item, _ in seen["trending"]}

    compacted = log_compactor.lambda_handler(
        sample_event("schedule_log_compaction.json"), CompactionContext()
    )
    assert compacted["lines_erased"] == erased_events

    after_compaction = retrain()

    # Nothing left to erase: the log itself no longer holds them; the same data trains the same counts.
    assert after_compaction["counts"]["erased"] == 0 and after_compaction["counts"]["tombstones"] == 1
    assert after_compaction["counts"]["events"] == counts["events"]
    again = manifest(s3, stack.model_bucket, after_compaction["published_version"])
    assert not set(SECRETS) & set(again["items"]) and NEW_LIFE_ITEM in again["items"]
