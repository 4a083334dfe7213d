"""The catalog in DynamoDB (items table, partition key `item_id`): what ranking masks, and the admin writes.

Item layout: `item_id` S, `category` S, `price` N, `stock` N, `title` S (absent when None),
`attributes` M (S / N / BOOL values), `updated_at` S (ISO-8601 UTC).

Ranking needs stock and category (exclusion masks), price and attributes (business-rule filters,
docs/rules.md), and search events need titles (their query is resolved against them, domain/search.py),
so a snapshot holds those (a `Scan` projected without `updated_at`). Serving reads them from the
catalog artifact instead (docs/catalog-artifact.md); this Scan is its fail-safe (kept for
`refresh_seconds`) and the artifact writer's bootstrap and daily reconciliation (`scan_snapshot`). A Scan is billed by the size of the items it reads whatever
the projection, so reading price and attributes too costs no extra capacity, only bytes on the wire. The snapshot's id changes only when its content does, so the exclusion masks
derived from it stay cached across refreshes that found nothing new."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from nextpick.adapters import LazyClient, raise_translated
from nextpick.domain.catalog import CatalogSnapshot, SnapshotBuilder
from nextpick.domain.catalog_changes import CatalogRow
from nextpick.domain.events import CatalogItem
from nextpick.errors import InvalidInput, StorageUnavailable

logger = Logger(child=True)

# BatchWriteItem's hard limit per request.
BATCH_WRITE_MAX = 25
# Unprocessed items mean the table is throttling: back off 50 ms, 100 ms, ... capped at 1 s, then give up
# (about 3 s in all) rather than eat the API's latency budget.
WRITE_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 0.05
BACKOFF_CAP_SECONDS = 1.0

_SCAN_PROJECTION = {
    "ProjectionExpression": "#i, #c, #s, #p, #a, #t",
    # Names, not literals, so no attribute ever collides with DynamoDB's reserved words.
    "ExpressionAttributeNames": {
        "#i": "item_id",
        "#c": "category",
        "#s": "stock",
        "#p": "price",
        "#a": "attributes",
        "#t": "title",
    },
}


class DynamoDbCatalog:
    """`CatalogSource` and `CatalogWriter` on the items table."""

    def __init__(
        self,
        table_name: str,
        refresh_seconds: float,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._table_name = table_name
        self._refresh_seconds = refresh_seconds
        self._client = LazyClient("dynamodb", client)
        self._clock = clock
        self._sleep = sleep
        self._snapshot: CatalogSnapshot | None = None
        # When the cached snapshot was read; None forces the next snapshot() to read the table.
        self._loaded_at: float | None = None

    # --- CatalogSource -------------------------------------------------------------------------------

    def snapshot(self) -> CatalogSnapshot:
        now = self._clock()
        fresh = self._loaded_at is not None and now - self._loaded_at < self._refresh_seconds
        if self._snapshot is not None and fresh:
            return self._snapshot
        try:
            scanned = self._scan()
        except StorageUnavailable:
            if self._snapshot is None:
                raise
            # A slightly stale catalog ranks far better than none: keep it, try again next interval.
            logger.exception("catalog refresh failed; keeping snapshot %s", self._snapshot.snapshot_id)
            self._loaded_at = now
            return self._snapshot
        previous = self._snapshot
        if previous is None or not previous.same_content(scanned):
            snapshot_id = previous.snapshot_id + 1 if previous is not None else 1
            self._snapshot = replace(scanned, snapshot_id=snapshot_id)
        self._loaded_at = now
        assert self._snapshot is not None
        return self._snapshot

    def _scan(self) -> CatalogSnapshot:
        """The table's content, as a snapshot with id 0 (`snapshot()` numbers it if it changed)."""
        return scan_snapshot(self._client.get(), self._table_name)

    # --- CatalogWriter ---------------------------------------------------------------------------------

    def put_items(self, items: Sequence[CatalogItem]) -> None:
        # BatchWriteItem rejects a request naming the same key twice; the last version of an item wins,
        # as if the items had been written one after the other.
        latest = {item.item_id: item for item in items}
        now = datetime.now(UTC).isoformat()
        requests = [{"PutRequest": {"Item": encode_item(item, now)}} for item in latest.values()]
        try:
            for start in range(0, len(requests), BATCH_WRITE_MAX):
                self._write_chunk(requests[start : start + BATCH_WRITE_MAX])
        finally:
            # Even a partly failed batch may have changed items: this container must see its own writes.
            self._loaded_at = None

    def _write_chunk(self, requests: list[dict[str, Any]]) -> None:
        pending = requests
        for attempt in range(WRITE_ATTEMPTS):
            if attempt:
                self._sleep(_backoff(attempt))
            try:
                response = self._client.get().batch_write_item(RequestItems={self._table_name: pending})
            except (ClientError, BotoCoreError) as e:
                raise_translated(e, self._table_name)
            pending = response.get("UnprocessedItems", {}).get(self._table_name, [])
            if not pending:
                return
        raise StorageUnavailable(
            f"{self._table_name}: {len(pending)} of {len(requests)} items still unprocessed after "
            f"{WRITE_ATTEMPTS} attempts (throttled)"
        )

    def get_item(self, item_id: str) -> CatalogItem | None:
        try:
            # Consistent: an admin reading back what it just wrote must see it.
            response = self._client.get().get_item(
                TableName=self._table_name, Key={"item_id": {"S": item_id}}, ConsistentRead=True
            )
        except (ClientError, BotoCoreError) as e:
            raise_translated(e, self._table_name)
        item = response.get("Item")
        return decode_item(item) if item else None


def _backoff(attempt: int) -> float:
    # Full jitter: many containers retrying in step would otherwise throttle each other again.
    return random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))


def encode_item(item: CatalogItem, updated_at: str) -> dict[str, Any]:
    encoded: dict[str, Any] = {
        "item_id": {"S": item.item_id},
        "category": {"S": item.category},
        "price": {"N": _number(item.price, "price")},
        "stock": {"N": str(item.stock)},
        "attributes": {
            "M": {name: _value(value, f"attributes.{name}") for name, value in item.attributes.items()}
        },
        "updated_at": {"S": updated_at},
    }
    if item.title is not None:
        encoded["title"] = {"S": item.title}
    return encoded


def scan_snapshot(client: Any, table_name: str, consistent: bool = False) -> CatalogSnapshot:
    """The table's content as serving sees it, with id 0: one paged Scan, projected (docs/catalog-artifact.md:
    the serving fallback, and the artifact writer's bootstrap and daily reconciliation, consistent)."""
    builder = SnapshotBuilder()
    kwargs: dict[str, Any] = {"TableName": table_name, **_SCAN_PROJECTION}
    if consistent:
        kwargs["ConsistentRead"] = True
    while True:
        try:
            page = client.scan(**kwargs)
        except (ClientError, BotoCoreError) as e:
            raise_translated(e, table_name)
        for item in page.get("Items", ()):
            builder.add(item["item_id"]["S"], *_serving_fields(item))
        if "LastEvaluatedKey" not in page:
            return builder.build(0)
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _serving_fields(
    item: dict[str, Any],
) -> tuple[str | None, float | None, float | None, dict[str, str | int | float | bool], str | None]:
    """(category, price, stock, attributes, title) of a stored item, each None where it is absent."""
    return (
        item["category"]["S"] if "category" in item else None,
        float(item["price"]["N"]) if "price" in item else None,
        float(item["stock"]["N"]) if "stock" in item else None,
        {name: _plain(value) for name, value in item.get("attributes", {}).get("M", {}).items()},
        item["title"]["S"] if "title" in item else None,
    )


def row_of_image(image: dict[str, Any]) -> CatalogRow:
    """A stream record's NEW_IMAGE as the row serving holds (the same reading as `scan_snapshot`)."""
    category, price, stock, attributes, title = _serving_fields(image)
    return CatalogRow.of(category, price, stock, attributes, title)


def scan_catalog(client: Any, table_name: str) -> list[CatalogItem]:
    """Every catalog item with all its fields (the retrain's and the catalog refresh's read: one paged
    Scan, never on the request path)."""
    items: list[CatalogItem] = []
    kwargs: dict[str, Any] = {"TableName": table_name}
    while True:
        try:
            page = client.scan(**kwargs)
        except (ClientError, BotoCoreError) as e:
            raise_translated(e, table_name)
        items.extend(decode_item(item) for item in page.get("Items", ()))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def decode_item(item: dict[str, Any]) -> CatalogItem:
    return CatalogItem(
        item_id=item["item_id"]["S"],
        category=item["category"]["S"],
        price=float(item["price"]["N"]),
        stock=int(Decimal(item["stock"]["N"])),
        title=item["title"]["S"] if "title" in item else None,
        attributes={name: _plain(value) for name, value in item.get("attributes", {}).get("M", {}).items()},
    )


def _value(value: str | int | float | bool, field: str) -> dict[str, Any]:
    # bool first: it is an int to Python, but must come back as a bool.
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": _number(value, field)}
    return {"S": value}


def _number(value: int | float, field: str) -> str:
    if isinstance(value, int):
        return str(value)
    # DynamoDB has no NaN or infinity; pydantic lets them through in free-form attributes.
    if not math.isfinite(value):
        raise InvalidInput(field, "must be a finite number")
    # Positional notation ("0.0000001", not repr's "1e-07"), exact to the float's shortest repr.
    return format(Decimal(repr(value)), "f")


def _plain(value: dict[str, Any]) -> str | int | float | bool:
    if "BOOL" in value:
        return bool(value["BOOL"])
    if "N" in value:
        text = value["N"]
        number = Decimal(text)
        return int(number) if number == number.to_integral_value() and "." not in text else float(number)
    return str(value["S"])
