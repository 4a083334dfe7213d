"""`CatalogRefreshFunction`: the items table's stream -> a catalog refresh (`refresh.py`).

Same image as the retrain (it needs TensorFlow to export), another entry point. Lambda batches the
stream for `MaximumBatchingWindowInSeconds` and runs one invocation at a time (reserved concurrency
1), which sets the minimum interval between refreshes. A failure raises: the stream retries the batch
(bisecting), and a batch that keeps failing goes to the on-failure queue; a refresh is idempotent
(nothing new once published), so a retry can never publish twice."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.adapters.dynamodb_catalog import decode_item
from nextpick.domain.events import CatalogItem
from nextpick_training.handler import clients
from nextpick_training.refresh import RefreshStatus, run_catalog_refresh
from nextpick_training.settings import get_training_settings

logger = Logger(service=os.getenv("POWERTOOLS_SERVICE_NAME") or "nextpick")
tracer = Tracer(service=os.getenv("POWERTOOLS_SERVICE_NAME") or "nextpick")
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE") or "Nextpick")


def changed_items(event: dict[str, Any]) -> list[CatalogItem]:
    """The new images of inserted or modified items, in stream order (deletions carry no new item)."""
    items = []
    for record in event.get("Records", ()):
        image = record.get("dynamodb", {}).get("NewImage")
        if record.get("eventName") in ("INSERT", "MODIFY") and image:
            items.append(decode_item(image))
    return items


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    aws = clients()
    result = run_catalog_refresh(
        aws.s3, aws.events, get_training_settings(), changed_items(event), datetime.now(UTC)
    )
    metrics.add_metric(
        name="CatalogRefreshItems",
        unit=MetricUnit.Count,
        value=len(result.new_items) if result.status is RefreshStatus.PUBLISHED else 0,
    )
    logger.info(f"catalog refresh {result.status.value}", extra={"result": result.loggable()})
    return result.model_dump(mode="json")
