"""CatalogArtifactFunction: the items table's stream -> the catalog availability artifact in S3
(docs/catalog-artifact.md). Serving code only (no TensorFlow): a cold start is the runtime layer's.

Two triggers, one at a time (reserved concurrency 1; the pointer's compare-and-swap guards the rest):
* a stream batch (INSERT, MODIFY, REMOVE): each item's last row in the batch, against the version held;
  what differs becomes version N + 1 (a delta, and a full snapshot every SNAPSHOT_EVERY versions). A
  redelivered batch finds its rows applied and writes nothing. Without an artifact, the first batch
  builds version 1 from one consistent scan of the table (the bootstrap).
* the daily schedule (or an operator's invoke with `{"action": "reconcile"}`, docs/catalog-artifact.md):
  one consistent scan of the table, whatever differs from the artifact becomes a new version, and the
  snapshot is rewritten so the one the pointer names never ages out of the bucket's 7-day lifecycle.

A failure raises: Lambda retries the batch (bisecting it), then parks it on the failure queue; the
`CatalogArtifactErrors` and iterator-age alarms watch both."""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from nextpick.adapters import LazyClient
from nextpick.adapters.dynamodb_catalog import row_of_image, scan_snapshot
from nextpick.adapters.s3_catalog_artifact import ArtifactState, CatalogArtifact
from nextpick.domain.catalog_changes import CatalogChanges, CatalogRow, diff, last_word, net_changes
from nextpick.settings import get_settings

logger = Logger()
tracer = Tracer()
metrics = Metrics(namespace="Nextpick")


@cache
def artifact() -> CatalogArtifact:
    settings = get_settings()
    return CatalogArtifact(settings.model_bucket_name, settings.catalog_artifact_prefix)


@cache
def items_client() -> LazyClient:
    return LazyClient("dynamodb")


def reset() -> None:
    artifact.cache_clear()
    items_client.cache_clear()


def stream_rows(records: list[dict[str, Any]]) -> dict[str, CatalogRow | None]:
    """Each item's last row in the batch (None: removed). A record without an `item_id` key is not the
    items table's (only a misrouted test event can be): skipped, not retried forever."""

    def rows() -> Iterator[tuple[str, CatalogRow | None]]:
        for record in records:
            change = record["dynamodb"]
            if "item_id" not in change.get("Keys", {}):
                logger.warning("a stream record without an item_id key skipped")
                continue
            removed = record["eventName"] == "REMOVE"
            yield change["Keys"]["item_id"]["S"], None if removed else row_of_image(change["NewImage"])

    return last_word(rows())


def apply_batch(
    store: CatalogArtifact, records: list[dict[str, Any]]
) -> tuple[ArtifactState, CatalogChanges]:
    latest = stream_rows(records)
    held = store.refresh()
    if held is None:
        return bootstrap(store), CatalogChanges()
    changes = net_changes(held.snapshot, latest)
    return store.commit(changes), changes


def bootstrap(store: CatalogArtifact) -> ArtifactState:
    """Version 1 from a consistent scan (its reads see every write the stream has delivered so far)."""
    table = get_settings().items_table_name
    state = store.commit(CatalogChanges(), full=scan_snapshot(items_client().get(), table, consistent=True))
    logger.info("catalog artifact bootstrapped", extra={"items": len(state.snapshot.item_ids)})
    return state


def reconcile(store: CatalogArtifact) -> tuple[ArtifactState, CatalogChanges]:
    """The table's content against the artifact: differences become a version, the snapshot is rewritten."""
    held = store.refresh()
    if held is None:
        return bootstrap(store), CatalogChanges()
    scanned = scan_snapshot(items_client().get(), get_settings().items_table_name, consistent=True)
    changes = diff(held.snapshot, scanned)
    if changes:
        # The stream should have carried these: a missed change (a stream outage past its 24 h) is a bug
        # or an incident, and worth a metric.
        metrics.add_metric(name="CatalogArtifactDrift", unit=MetricUnit.Count, value=changes.item_count)
    return store.commit(changes, force_snapshot=True), changes


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    store = artifact()
    if "Records" in event:
        state, changes = apply_batch(store, event["Records"])
    else:  # the schedule, or an operator's {"action": "reconcile"}
        state, changes = reconcile(store)
    metrics.add_metric(name="CatalogArtifactItemsChanged", unit=MetricUnit.Count, value=changes.item_count)
    logger.info("catalog artifact at version %s", state.version, extra={"changed": changes.item_count})
    return {"version": state.version, "changed": changes.item_count}
