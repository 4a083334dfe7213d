"""Serving's catalog: the availability artifact in S3, not the items table (docs/catalog-artifact.md).

`snapshot()` checks the artifact's pointer at most every CATALOG_REFRESH_SECONDS (a conditional GET of a
few KB, answered 304 when nothing changed) and applies only the deltas after the version it holds; a
cold container reads one snapshot plus at most SNAPSHOT_EVERY - 1 deltas. No request ever scans the
items table while the artifact is readable.

Fail-safe (docs/catalog-artifact.md, "When the artifact is missing or unreadable"):
* no artifact yet (a stack before its first snapshot): the table is scanned as before, every
  CATALOG_REFRESH_SECONDS, and `CatalogArtifactMissing` is counted;
* the artifact unreadable or corrupt: the version held is served for up to CATALOG_MAX_STALE_SECONDS
  after its last good check, then the table is scanned instead (`CatalogArtifactFallback`), so an item put
  out of stock is never served as in stock for longer than that, whatever S3 does.

PUT /items from this container is visible here at once ("read your own writes", as before): the written
rows are laid over the artifact until the artifact has them or OWN_WRITES_SECONDS have passed."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
from nextpick.adapters.s3_catalog_artifact import CatalogArtifact
from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.catalog_changes import CatalogChanges, CatalogRow, apply_changes, row_of
from nextpick.domain.events import CatalogItem
from nextpick.errors import StorageUnavailable

logger = Logger(child=True)

# An own write stays laid over the artifact at most this long: the writer's normal delay (stream batching
# window 5 s + one run) is far below it; past it the artifact is the truth again.
OWN_WRITES_SECONDS = 120.0


def count(name: str) -> None:
    """One CloudWatch metric data point, now (EMF), whatever handler is running."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace="Nextpick") as point:
        point.add_dimension(name="service", value="nextpick")


class ArtifactCatalog:
    """`CatalogSource` on the artifact; `CatalogWriter` on the table (writes reach the artifact through
    the table's stream)."""

    def __init__(
        self,
        artifact: CatalogArtifact,
        table: DynamoDbCatalog,
        refresh_seconds: float,
        max_stale_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        report: Callable[..., None] = count,
    ) -> None:
        self._artifact = artifact
        self._table = table
        self._refresh_seconds = refresh_seconds
        self._max_stale_seconds = max_stale_seconds
        self._clock = clock
        self._report = report
        self._checked_at: float | None = None
        # When the artifact was last read successfully; None: never (or it does not exist).
        self._good_at: float | None = None
        self._use_table = False
        # Rows this container wrote: item id -> (when, row).
        self._own: dict[str, tuple[float, CatalogRow]] = {}
        self._own_generation = 0
        # The snapshot served, what it was made from, and its id (ids are this container's own: the table
        # fallback and the artifact must never hand out the same id for different content).
        self._served: CatalogSnapshot | None = None
        self._served_from: tuple[object, ...] | None = None
        self._served_id = 0

    @property
    def artifact(self) -> CatalogArtifact:
        return self._artifact

    # --- CatalogSource ------------------------------------------------------------------------------

    def snapshot(self) -> CatalogSnapshot:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._refresh_seconds:
            self._check(now)
        if self._use_table:
            base = self._table.snapshot()
            source: tuple[object, ...] = ("table", base.snapshot_id)
        else:
            state = self._artifact.state
            assert state is not None
            base = state.snapshot
            source = ("artifact", state.pointer.lineage, state.version)
        return self._serve(base, (*source, self._own_generation), now)

    def _check(self, now: float) -> None:
        self._checked_at = now
        try:
            state = self._artifact.refresh()
        except StorageUnavailable:
            held = self._artifact.state
            if (
                held is not None
                and self._good_at is not None
                and now - self._good_at < self._max_stale_seconds
            ):
                logger.exception("catalog artifact unreadable; serving version %s", held.version)
                self._report(name="CatalogArtifactUnreadable")
                return
            logger.exception("catalog artifact unreadable for too long; reading the items table")
            self._report(name="CatalogArtifactFallback")
            self._use_table = True
            return
        if state is None:
            logger.warning("no catalog artifact yet; reading the items table (docs/catalog-artifact.md)")
            self._report(name="CatalogArtifactMissing")
            self._use_table = True
            return
        self._good_at = now
        self._use_table = False

    def _serve(self, base: CatalogSnapshot, source: tuple[object, ...], now: float) -> CatalogSnapshot:
        if self._own:
            self._forget_own_writes(base, now)
            source = (*source[:-1], self._own_generation)
        if self._served is not None and self._served_from == source:
            return self._served
        served = base
        if self._own:
            served = apply_changes(base, CatalogChanges({i: row for i, (_, row) in self._own.items()}), 0)
        self._served_id += 1
        self._served = replace(served, snapshot_id=self._served_id)
        self._served_from = source
        return self._served

    def _forget_own_writes(self, base: CatalogSnapshot, now: float) -> None:
        landed = [
            item_id
            for item_id, (written_at, row) in self._own.items()
            if row.same(row_of(base, item_id)) or now - written_at >= OWN_WRITES_SECONDS
        ]
        for item_id in landed:
            del self._own[item_id]
        if landed:
            self._own_generation += 1

    # --- CatalogWriter ------------------------------------------------------------------------------

    def put_items(self, items: Sequence[CatalogItem]) -> None:
        self._table.put_items(items)
        now = self._clock()
        for item in items:
            self._own[item.item_id] = (
                now,
                CatalogRow.of(item.category, item.price, item.stock, item.attributes, item.title),
            )
        self._own_generation += 1
