"""DynamoDB read units per serving container per minute, before (a Scan of the items table every
CATALOG_REFRESH_SECONDS) and after (the catalog artifact in S3), at 10,000 and 1,000,000 items
(issue 15 item 2; docs/catalog-artifact.md quotes the table).

    .venv/bin/python -m bench.catalog_reads [--measure-items 2000] [--changes-per-minute 10]

Measured, not assumed: the template's stack in moto (in process) holds `--measure-items` items shaped
like the demo shop's (title, category, price, stock, two attributes). The real adapters run through a
spy that counts every call: the old `DynamoDbCatalog` and the new `ArtifactCatalog`, each asked for a
snapshot once a second for ten simulated minutes (a busy container), while the real
CatalogArtifactFunction folds `--changes-per-minute` stock changes into the artifact.

Read units follow DynamoDB's rules (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/
read-write-operations.html): an item's size is the UTF-8 length of its attribute names plus values
(a number: 1 byte per 2 significant digits + 1; a map: 3 bytes + 1 per element; a boolean 1 byte); a
Scan is charged per page of up to 1 MB by the sum of its items' sizes (the projection does not reduce it)
rounded up to 4 KB, half a unit per 4 KB when eventually consistent, one when consistent. The 1M column
scales the measured bytes per item linearly (a Scan's cost is linear in the table's size); moto is not
asked to hold a million items."""

from __future__ import annotations

import argparse
import math
import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

SIMULATED_MINUTES = 10
REFRESH_SECONDS = 30.0
PAGE_BYTES = 1024 * 1024
SIZES = (10_000, 1_000_000)


def attribute_size(value: dict[str, Any]) -> int:
    """One attribute value's size in bytes, by DynamoDB's documented rules."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode())
    if kind == "N":
        digits = Decimal(inner).normalize().as_tuple().digits
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    raise ValueError(f"no size rule for {kind}")


def item_size(item: dict[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def scan_read_units(sizes: list[int], consistent: bool = False) -> float:
    """A full paged Scan over items of these sizes: per page of <= 1 MB, its bytes rounded up to 4 KB."""
    units, page = 0.0, 0
    for size in sizes:
        if page + size > PAGE_BYTES:
            units += math.ceil(page / 4096)
            page = 0
        page += size
    units += math.ceil(page / 4096) if page else 0
    return units if consistent else units / 2


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@contextmanager
def stack_in_moto() -> Iterator[Any]:
    os.environ.update(
        AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench"
    )
    from moto import mock_aws

    with mock_aws():
        from nextpick_local.standin.aws_resources import create_stack

        stack = create_stack("bench-catalog")
        os.environ.update(stack.env("ApiFunction"))
        os.environ.update(stack.env("CatalogArtifactFunction"))
        yield stack


def measure(measure_items: int, changes_per_minute: int) -> dict[str, Any]:
    import boto3

    from bench.common import BenchLambdaContext
    from nextpick.adapters.artifact_catalog import ArtifactCatalog
    from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
    from nextpick.adapters.s3_catalog_artifact import CatalogArtifact
    from nextpick.handlers import catalog_artifact
    from nextpick_local.demo.demo_shop import DemoConfig, generate_catalog

    with stack_in_moto() as stack:
        table = stack.refs["ItemsTable"]
        items = generate_catalog(DemoConfig(items=measure_items), random.Random(7))
        DynamoDbCatalog(table, 0).put_items(items)
        sizes = [item_size(i) for i in _all_items(boto3.client("dynamodb"), table)]
        stream = ItemsStream(table)
        stream.next()  # the initial load: the bootstrap below reads it from the table
        catalog_artifact.reset()
        catalog_artifact.lambda_handler({"action": "reconcile"}, BenchLambdaContext())

        clock = Clock()
        before_client = Counting(boto3.client("dynamodb"))
        before = DynamoDbCatalog(table, REFRESH_SECONDS, client=before_client, clock=clock)
        after_dynamodb = Counting(boto3.client("dynamodb"))
        after = ArtifactCatalog(
            CatalogArtifact(stack.model_bucket),
            DynamoDbCatalog(table, REFRESH_SECONDS, client=after_dynamodb, clock=clock),
            refresh_seconds=REFRESH_SECONDS,
            max_stale_seconds=120.0,
            clock=clock,
        )
        after.snapshot()
        cold_reads = after.artifact.reads
        rng = random.Random(11)
        writer = DynamoDbCatalog(table, 0)
        for second in range(1, SIMULATED_MINUTES * 60 + 1):
            clock.now = float(second)
            if changes_per_minute and second % max(1, 60 // changes_per_minute) == 0:
                changed = rng.choice(items)
                stock = 0 if rng.random() < 0.5 else rng.randint(1, 500)
                writer.put_items([changed.model_copy(update={"stock": stock})])
                catalog_artifact.lambda_handler(stream.next(), BenchLambdaContext())
            before.snapshot()
            after.snapshot()
        warm = after.artifact.reads
        return {
            "items": len(sizes),
            "bytes_per_item": sum(sizes) / len(sizes),
            "before_scans_per_minute": before_client.scans() / SIMULATED_MINUTES,
            "after_dynamodb_calls": len(after_dynamodb.calls),
            "after_gets_per_minute": (warm.pointer_checks + warm.deltas - cold_reads.pointer_checks)
            / SIMULATED_MINUTES,
            "after_bytes_per_minute": (warm.bytes - cold_reads.bytes) / SIMULATED_MINUTES,
            "cold_gets": cold_reads.pointer_checks + cold_reads.snapshots + cold_reads.deltas,
            "cold_bytes": cold_reads.bytes,
            "versions": after.artifact.state.version if after.artifact.state else 0,
        }


class Counting:
    """Forwards to a boto3 client, recording each call (operation, parameters)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, operation: str) -> Any:
        def call(**kwargs: Any) -> Any:
            self.calls.append((operation, kwargs))
            return getattr(self._client, operation)(**kwargs)

        return call

    def count(self, operation: str) -> int:
        return sum(1 for name, _ in self.calls if name == operation)

    def scans(self) -> int:
        """Whole Scans (a Scan's later pages carry ExclusiveStartKey)."""
        return sum(1 for name, kwargs in self.calls if name == "scan" and "ExclusiveStartKey" not in kwargs)


class ItemsStream:
    """The items table's stream read the way Lambda's event source mapping does: each `next()` is the
    records since the previous one (one shard: moto's table has one)."""

    def __init__(self, table: str) -> None:
        import boto3

        self._streams = boto3.client("dynamodbstreams")
        arn = boto3.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
        shard = self._streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self._iterator = self._streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]

    def next(self) -> dict[str, Any]:
        response = self._streams.get_records(ShardIterator=self._iterator)
        self._iterator = response["NextShardIterator"]
        return {"Records": response["Records"]}


def _all_items(client: Any, table: str) -> Iterator[dict[str, Any]]:
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**kwargs)
        yield from page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def report(found: dict[str, Any], changes_per_minute: int) -> str:
    per_item = found["bytes_per_item"]
    lines = [
        f"Measured at {found['items']:,} items ({per_item:.0f} bytes per item by DynamoDB's rules), "
        f"{changes_per_minute} stock changes per minute, a snapshot asked for every second for "
        f"{SIMULATED_MINUTES} simulated minutes, CATALOG_REFRESH_SECONDS = {REFRESH_SECONDS:.0f}.",
        "",
        "| per serving container per minute | 10k items before | 10k items after | 1M items before | 1M items after |",
        "|---|---|---|---|---|",
    ]
    scans = found["before_scans_per_minute"]
    cells: dict[str, list[str]] = {"rcu": [], "calls": [], "s3": [], "bytes": []}
    for size in SIZES:
        sizes = [round(per_item)] * size
        pages = math.ceil(size * per_item / PAGE_BYTES)
        cells["rcu"] += [f"{scans * scan_read_units(sizes):,.0f}", f"{found['after_dynamodb_calls']}"]
        cells["calls"] += [f"{scans * pages:,.0f} Scan pages", f"{found['after_dynamodb_calls']}"]
        cells["s3"] += ["0", f"{found['after_gets_per_minute']:.1f}"]
        cells["bytes"] += ["-", f"{found['after_bytes_per_minute'] / 1024:.1f} KiB"]
    lines += [
        "| DynamoDB read units | " + " | ".join(cells["rcu"]) + " |",
        "| DynamoDB calls | " + " | ".join(cells["calls"]) + " |",
        "| S3 GETs (pointer, deltas) | " + " | ".join(cells["s3"]) + " |",
        "| S3 bytes read | " + " | ".join(cells["bytes"]) + " |",
        "",
        f"A cold container: {found['cold_gets']} S3 GETs and {found['cold_bytes'] / 1024:.0f} KiB at "
        f"{found['items']:,} items (about {found['cold_bytes'] / found['items']:.0f} bytes per item "
        f"compressed: {found['cold_bytes'] / found['items'] * 1e6 / 2**20:.0f} MiB at 1M), no table read. "
        f"The artifact reached version {found['versions']}.",
        "",
        "The writer (once for the whole fleet, not per container): one consistent Scan a day, "
        + ", ".join(
            f"{scan_read_units([round(per_item)] * size, consistent=True):,.0f} read units at {size:,} items"
            for size in SIZES
        )
        + "; stream reads by Lambda's event source mapping are not billed as read units.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--measure-items", type=int, default=2000)
    parser.add_argument("--changes-per-minute", type=int, default=10)
    args = parser.parse_args()
    found = measure(args.measure_items, args.changes_per_minute)
    print(report(found, args.changes_per_minute))


if __name__ == "__main__":
    main()
