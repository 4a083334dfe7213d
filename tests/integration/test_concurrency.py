"""Many Lambda containers writing one user's state at once: no update lost, none applied twice.

Each thread plays one container: its own service, adapters, boto3 clients and LiteRT interpreter,
exactly as `handlers.wiring` builds them. (Threads cannot share one imported handler module: a Lambda
container serves one request at a time, and Powertools' resolver keeps the current request on the
app object, so the realistic unit of concurrency is the container, not the handler function.)"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
from nextpick.adapters.dynamodb_state import DynamoDbStateRepository
from nextpick.adapters.s3_model_source import S3ModelSource
from nextpick.domain.events import TrackedEvent
from nextpick.domain.ranking import RecommendOptions
from nextpick.domain.service import Recommender, ServiceConfig
from nextpick.domain.state import EventStatus, StateLimits
from nextpick_local.standin.aws_resources import Stack
from tests.conftest import TinyModel
from tests.integration.serving import publish_model

CONTAINERS = 8
EVENTS_PER_CONTAINER = 12


def container(stack: Stack, limits: StateLimits) -> Recommender:
    return Recommender(
        states=DynamoDbStateRepository(stack.state_table, limits),
        models=S3ModelSource(stack.model_bucket, "models/", refresh_seconds=60),
        catalog=DynamoDbCatalog(stack.items_table, refresh_seconds=30),
        config=ServiceConfig(limits=limits, max_write_attempts=50),
    )


def test_concurrent_events_for_one_user_lose_and_double_nothing(
    stack: Stack, tiny_model: TinyModel, atomic_moto_put_item: None
) -> None:
    publish_model(stack, tiny_model)
    limits = StateLimits(recent_events=500, processed_ids=500, purchased_items=500)
    start = datetime.now(UTC) - timedelta(hours=1)
    statuses: list[EventStatus] = []
    failures: list[BaseException] = []

    def run(worker: int) -> None:
        service = container(stack, limits)
        try:
            for n in range(EVENTS_PER_CONTAINER):
                event = TrackedEvent(
                    event_id=f"evt-{worker}-{n}",
                    user_id="shopper-1",
                    item_id=f"item-{(worker + n) % 24 + 1}",
                    event_type="view",  # type: ignore[arg-type]
                    timestamp=start + timedelta(seconds=n),
                )
                result = service.track([event], RecommendOptions(k=5))
                statuses.append(result.results[0].status)
                assert result.users[0].model_version is not None
        except BaseException as error:  # surfaced below: a thread's exception would otherwise vanish
            failures.append(error)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in range(CONTAINERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    total = CONTAINERS * EVENTS_PER_CONTAINER
    assert statuses == [EventStatus.ACCEPTED] * total
    state = DynamoDbStateRepository(stack.state_table, limits).load("shopper-1")
    assert len(state.processed_keys) == len(set(state.processed_keys)) == total
    assert len(state.recent) == total
    assert state.version == total  # one successful conditional write per event
