"""Live trending in DynamoDB (docs/trending.md): one item per hour bucket, partition key `bucket` =
`<category>#<yyyy-mm-ddThh>`, attribute `counts` M (item id -> weighted count N) and `expires_at` N
(epoch seconds, the table's TTL: 48 h after the hour, twice the longest window a read asks for).

Writes add a batch's counts to existing ones (`SET counts.#i = if_not_exists(counts.#i, :0) + :n`), at
most CHUNK_ITEMS item ids per UpdateItem (DynamoDB's 4 KB expression limit: ~60 bytes of expression per
id), conditional on the bucket holding at most `max_items - len(chunk)` ids (400 KB item limit). When a
bucket is (nearly) full, one GetItem of the chunk's ids tells which it holds already: those are still
added to (conditional on each existing, which cannot grow the item), the new ones are dropped and
counted by the caller. Reads are one BatchGetItem of the window's buckets."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nextpick.adapters import LazyClient, error_code, raise_translated
from nextpick.errors import StorageUnavailable

CHUNK_ITEMS = 50
EXPIRY_AFTER_HOUR = timedelta(hours=48)
# BatchGetItem returns unprocessed keys when throttled: re-ask up to 3 more times, 50 ms apart.
READ_ATTEMPTS = 4
READ_BACKOFF_SECONDS = 0.05


class DynamoDbTrending:
    def __init__(self, table_name: str, max_items: int, client: Any = None) -> None:
        self._table_name = table_name
        self._max_items = max_items
        self._client = LazyClient("dynamodb", client)

    def add(self, bucket: str, expires_at: int, counts: Mapping[str, float]) -> int:
        """Add `counts` to the bucket; returns how many item ids were dropped because it was full."""
        ids = sorted(counts)
        dropped = 0
        for start in range(0, len(ids), CHUNK_ITEMS):
            chunk = {item_id: counts[item_id] for item_id in ids[start : start + CHUNK_ITEMS]}
            dropped += self._add_chunk(bucket, expires_at, chunk)
        return dropped

    def _add_chunk(self, bucket: str, expires_at: int, chunk: Mapping[str, float]) -> int:
        """Add one chunk; returns how many of its ids were dropped."""
        # Update if the bucket exists and has room; else create it; a lost creation race means it exists
        # now, so update once more; failing again means it is full: add to the ids it already holds.
        if self._update(bucket, expires_at, chunk, full=False) or self._create(bucket, expires_at, chunk):
            return 0
        if self._update(bucket, expires_at, chunk, full=False):
            return 0
        held = {item_id: chunk[item_id] for item_id in self._held(bucket, list(chunk))}
        if held and not self._update(bucket, expires_at, held, full=True):
            return len(chunk)  # the bucket expired between the two calls: drop the chunk
        return len(chunk) - len(held)

    def _update(self, bucket: str, expires_at: int, chunk: Mapping[str, float], *, full: bool) -> bool:
        """Add `chunk` to the bucket. Not `full`: if it has room for every id. `full`: if it holds every
        id already (so the item cannot grow)."""
        names: dict[str, str] = {"#c": "counts"}
        values: dict[str, Any] = {":zero": {"N": "0"}, ":expires": {"N": str(expires_at)}}
        clauses = []
        for position in range(len(chunk)):
            clauses.append(f"#c.#i{position} = if_not_exists(#c.#i{position}, :zero) + :n{position}")
        for position, (item_id, count) in enumerate(chunk.items()):
            names[f"#i{position}"] = item_id
            values[f":n{position}"] = {"N": _number(count)}
        if full:
            condition = " AND ".join(f"attribute_exists(#c.#i{position})" for position in range(len(chunk)))
        else:
            values[":room"] = {"N": str(self._max_items - len(chunk))}
            condition = "attribute_exists(#c) AND size(#c) <= :room"
        return self._conditional(
            "update_item",
            Key={"bucket": {"S": bucket}},
            UpdateExpression="SET expires_at = :expires, " + ", ".join(clauses),
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def _held(self, bucket: str, item_ids: list[str]) -> list[str]:
        """Which of `item_ids` the bucket holds (projected: reads only those counts)."""
        names = {"#c": "counts", **{f"#i{position}": item_id for position, item_id in enumerate(item_ids)}}
        try:
            response = self._client.get().get_item(
                TableName=self._table_name,
                Key={"bucket": {"S": bucket}},
                ProjectionExpression=", ".join(f"#c.#i{position}" for position in range(len(item_ids))),
                ExpressionAttributeNames=names,
            )
        except (ClientError, BotoCoreError) as e:
            raise_translated(e, self._table_name)
        held = response.get("Item", {}).get("counts", {}).get("M", {})
        return [item_id for item_id in item_ids if item_id in held]

    def _create(self, bucket: str, expires_at: int, chunk: Mapping[str, float]) -> bool:
        return self._conditional(
            "put_item",
            Item={
                "bucket": {"S": bucket},
                "expires_at": {"N": str(expires_at)},
                "counts": {"M": {item_id: {"N": _number(count)} for item_id, count in chunk.items()}},
            },
            ConditionExpression="attribute_not_exists(#b)",
            ExpressionAttributeNames={"#b": "bucket"},
        )

    def _conditional(self, operation: str, **request: Any) -> bool:
        try:
            getattr(self._client.get(), operation)(TableName=self._table_name, **request)
        except ClientError as e:
            if error_code(e) == "ConditionalCheckFailedException":
                return False
            raise_translated(e, self._table_name)
        except BotoCoreError as e:
            raise_translated(e, self._table_name)
        return True

    def read(self, buckets: Sequence[str]) -> dict[str, dict[str, float]]:
        """Bucket -> item id -> count for the buckets that exist (at most 100: one BatchGetItem)."""
        keys: list[dict[str, Any]] = [{"bucket": {"S": bucket}} for bucket in buckets]
        found: dict[str, dict[str, float]] = {}
        for attempt in range(READ_ATTEMPTS):
            if not keys:
                return found
            if attempt:
                time.sleep(READ_BACKOFF_SECONDS)
            try:
                response = self._client.get().batch_get_item(
                    RequestItems={
                        self._table_name: {
                            "Keys": keys,
                            "ProjectionExpression": "#b, #c",
                            "ExpressionAttributeNames": {"#b": "bucket", "#c": "counts"},
                        }
                    }
                )
            except (ClientError, BotoCoreError) as e:
                raise_translated(e, self._table_name)
            for item in response.get("Responses", {}).get(self._table_name, []):
                found[item["bucket"]["S"]] = {
                    item_id: float(value["N"])
                    for item_id, value in item.get("counts", {}).get("M", {}).items()
                }
            keys = response.get("UnprocessedKeys", {}).get(self._table_name, {}).get("Keys", [])
        if keys:
            raise StorageUnavailable(f"{self._table_name}: {len(keys)} buckets unread after throttling")
        return found


def _number(value: float) -> str:
    # Weights are quarters (history.EVENT_INTENT), so a batch's sums are exact floats; repr reads back exactly.
    return repr(float(value))
