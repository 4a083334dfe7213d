"""DynamoDbCatalog against the template's items table in moto: projected scan, cache, invalidation,
BatchWriteItem chunking and the retry of unprocessed items."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from nextpick.adapters.dynamodb_catalog import BATCH_WRITE_MAX, WRITE_ATTEMPTS, DynamoDbCatalog
from nextpick.domain.events import CatalogItem
from nextpick.errors import InvalidInput, StorageUnavailable
from nextpick_local.standin.aws_resources import Stack
from tests.integration.spy import Spy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def item(item_id: str, category: str = "shoes", stock: int = 5, **fields: Any) -> CatalogItem:
    return CatalogItem(
        item_id=item_id, category=category, price=fields.pop("price", 19.99), stock=stock, **fields
    )


@pytest.fixture
def spy(dynamodb: Any) -> Spy:
    return Spy(dynamodb)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def catalog(stack: Stack, spy: Spy, clock: Clock, sleeps: list[float]) -> DynamoDbCatalog:
    return DynamoDbCatalog(
        stack.items_table, refresh_seconds=30, client=spy, clock=clock, sleep=sleeps.append
    )


def test_empty_table_gives_an_empty_snapshot(catalog: DynamoDbCatalog) -> None:
    snapshot = catalog.snapshot()
    assert snapshot.out_of_stock == frozenset() and snapshot.category_of == {}


def test_snapshot_reads_what_ranking_and_rules_need_with_a_projected_paginated_scan(
    catalog: DynamoDbCatalog, spy: Spy
) -> None:
    catalog.put_items(
        [
            item(
                f"item-{i}",
                "shoes" if i % 2 else "hats",
                stock=i % 3,
                price=i + 0.5,
                title=f"Title {i}" if i % 2 else None,
                attributes={"brand": f"b{i % 4}", "size": i, "organic": i % 5 == 0} if i % 6 else {},
            )
            for i in range(30)
        ]
    )
    # Force small pages so that pagination really happens.
    spy.rewrite["scan"] = lambda client, **kwargs: client.scan(**kwargs, Limit=7)

    snapshot = catalog.snapshot()

    assert snapshot.out_of_stock == frozenset(f"item-{i}" for i in range(30) if i % 3 == 0)
    assert snapshot.category_of == {f"item-{i}": "shoes" if i % 2 else "hats" for i in range(30)}
    # Price and attributes for the business rules' filters (docs/rules.md), as the items carry them.
    assert snapshot.price_of == {f"item-{i}": i + 0.5 for i in range(30)}
    with_attributes = [i for i in range(30) if i % 6]
    assert snapshot.attributes == {
        "brand": {f"item-{i}": f"b{i % 4}" for i in with_attributes},
        "size": {f"item-{i}": i for i in with_attributes},
        "organic": {f"item-{i}": i % 5 == 0 for i in with_attributes},
    }
    assert all(type(v) is bool for v in snapshot.attributes["organic"].values())
    scans = [kwargs for name, kwargs in spy.calls if name == "scan"]
    assert len(scans) == 5  # 30 items in pages of 7
    # Titles too: a search event's query is resolved against them (domain/search.py).
    assert snapshot.title_of == {f"item-{i}": f"Title {i}" for i in range(30) if i % 2}
    assert all(scan["ProjectionExpression"] == "#i, #c, #s, #p, #a, #t" for scan in scans)
    assert scans[0]["ExpressionAttributeNames"] == {
        "#i": "item_id",
        "#c": "category",
        "#s": "stock",
        "#p": "price",
        "#a": "attributes",
        "#t": "title",
    }
    assert "ExclusiveStartKey" not in scans[0] and all("ExclusiveStartKey" in s for s in scans[1:])


def test_snapshot_is_cached_for_refresh_seconds_and_keeps_its_id_when_nothing_changed(
    catalog: DynamoDbCatalog, spy: Spy, clock: Clock
) -> None:
    catalog.put_items([item("a", stock=0), item("b")])
    first = catalog.snapshot()
    clock.now += 29.9
    assert catalog.snapshot() is first
    assert spy.count("scan") == 1

    clock.now += 0.2  # past refresh_seconds: read again, same content, same id
    again = catalog.snapshot()
    assert spy.count("scan") == 2
    assert again.snapshot_id == first.snapshot_id
    assert again is first


def test_a_change_made_elsewhere_shows_after_the_interval_with_a_new_id(
    catalog: DynamoDbCatalog, clock: Clock, dynamodb: Any, stack: Stack
) -> None:
    catalog.put_items([item("a"), item("b")])
    first = catalog.snapshot()
    # Another container sells out item b.
    other = DynamoDbCatalog(stack.items_table, refresh_seconds=30, client=dynamodb)
    other.put_items([item("b", stock=0)])

    assert catalog.snapshot() is first  # still within the interval
    clock.now += 30
    second = catalog.snapshot()
    assert second.out_of_stock == frozenset({"b"})
    assert second.snapshot_id == first.snapshot_id + 1


def test_own_writes_invalidate_the_cache_immediately(catalog: DynamoDbCatalog, spy: Spy) -> None:
    catalog.put_items([item("a")])
    first = catalog.snapshot()
    catalog.put_items([item("a", stock=0)])

    second = catalog.snapshot()  # no clock advance
    assert second.out_of_stock == frozenset({"a"})
    assert second.snapshot_id == first.snapshot_id + 1
    assert spy.count("scan") == 2

    catalog.put_items([item("a", stock=0)])  # same content rewritten: re-read, but the id stays
    assert catalog.snapshot().snapshot_id == second.snapshot_id
    # A new price or attribute is new content for the rules' filters: a new id.
    catalog.put_items([item("a", stock=0, price=5.0)])
    third = catalog.snapshot()
    assert (third.snapshot_id, third.price_of) == (second.snapshot_id + 1, {"a": 5.0})
    catalog.put_items([item("a", stock=0, price=5.0, attributes={"brand": "acme"})])
    fourth = catalog.snapshot()
    assert (fourth.snapshot_id, fourth.attributes) == (third.snapshot_id + 1, {"brand": {"a": "acme"}})


def test_a_failed_refresh_keeps_serving_the_last_snapshot(
    catalog: DynamoDbCatalog, spy: Spy, clock: Clock
) -> None:
    catalog.put_items([item("a", stock=0)])
    first = catalog.snapshot()

    def throttled(client: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Scan")

    spy.rewrite["scan"] = throttled
    clock.now += 31
    assert catalog.snapshot() is first
    assert catalog.snapshot() is first  # and does not hammer the table on every call
    assert spy.count("scan") == 2


def test_first_snapshot_failure_is_storage_unavailable(aws: None, dynamodb: Any) -> None:
    catalog = DynamoDbCatalog("no-such-table", refresh_seconds=30, client=dynamodb)
    with pytest.raises(StorageUnavailable, match="no-such-table does not exist"):
        catalog.snapshot()


def test_put_items_writes_in_chunks_of_25(
    catalog: DynamoDbCatalog, spy: Spy, dynamodb: Any, stack: Stack
) -> None:
    catalog.put_items([item(f"item-{i:03}") for i in range(60)])

    writes = [
        kwargs["RequestItems"][stack.items_table] for name, kwargs in spy.calls if name == "batch_write_item"
    ]
    assert [len(w) for w in writes] == [BATCH_WRITE_MAX, BATCH_WRITE_MAX, 10]
    assert dynamodb.scan(TableName=stack.items_table, Select="COUNT")["Count"] == 60


def test_items_are_stored_in_the_documented_layout_and_read_back(
    catalog: DynamoDbCatalog, dynamodb: Any, stack: Stack
) -> None:
    written = item(
        "item-1",
        "shoes",
        stock=3,
        price=59.9,
        title="Trail runner",
        attributes={"color": "red", "size": 42, "weight_kg": 0.35, "waterproof": True, "tiny": 1e-7},
    )
    catalog.put_items([written])

    raw = dynamodb.get_item(TableName=stack.items_table, Key={"item_id": {"S": "item-1"}})["Item"]
    assert set(raw) == {"item_id", "category", "price", "stock", "title", "attributes", "updated_at"}
    assert raw["price"] == {"N": "59.9"} and raw["stock"] == {"N": "3"}
    assert raw["attributes"]["M"]["waterproof"] == {"BOOL": True}
    assert raw["attributes"]["M"]["size"] == {"N": "42"}
    assert raw["attributes"]["M"]["tiny"] == {"N": "0.0000001"}
    assert raw["updated_at"]["S"].endswith("+00:00")

    assert catalog.get_item("item-1") == written
    assert catalog.get_item("missing") is None


def test_title_is_absent_when_none(catalog: DynamoDbCatalog, dynamodb: Any, stack: Stack) -> None:
    catalog.put_items([item("item-1")])
    raw = dynamodb.get_item(TableName=stack.items_table, Key={"item_id": {"S": "item-1"}})["Item"]
    assert "title" not in raw and raw["attributes"] == {"M": {}}
    assert catalog.get_item("item-1") == item("item-1")


def test_the_same_item_twice_in_one_call_keeps_the_last(catalog: DynamoDbCatalog) -> None:
    # BatchWriteItem would reject the request outright if one key appeared twice in it.
    catalog.put_items([item("a", stock=1), item("b"), item("a", stock=7)])
    stored = catalog.get_item("a")
    assert stored is not None and stored.stock == 7


def test_non_finite_attribute_is_rejected_with_its_field(catalog: DynamoDbCatalog) -> None:
    with pytest.raises(InvalidInput) as caught:
        # Past the API's validation (a caller of the adapter that skipped it): the adapter refuses too.
        catalog.put_items([item("a").model_copy(update={"attributes": {"score": float("nan")}})])
    assert caught.value.field == "attributes.score"


def unprocess(first_calls: int, keep: int) -> Callable[..., Any]:
    """A BatchWriteItem that, for its first `first_calls` calls, writes only `keep` of the items and
    hands the rest back as UnprocessedItems, like a throttled table does."""
    state = {"calls": 0}

    def batch_write_item(client: Any, RequestItems: dict[str, list[Any]]) -> Any:
        state["calls"] += 1
        ((table, requests),) = RequestItems.items()
        if state["calls"] > first_calls:
            return client.batch_write_item(RequestItems=RequestItems)
        client.batch_write_item(RequestItems={table: requests[:keep]})
        return {"UnprocessedItems": {table: requests[keep:]}}

    return batch_write_item


def test_unprocessed_items_are_retried_with_bounded_backoff(
    catalog: DynamoDbCatalog, spy: Spy, sleeps: list[float], dynamodb: Any, stack: Stack
) -> None:
    spy.rewrite["batch_write_item"] = unprocess(first_calls=3, keep=4)
    catalog.put_items([item(f"item-{i:02}") for i in range(20)])

    sizes = [
        len(kwargs["RequestItems"][stack.items_table])
        for name, kwargs in spy.calls
        if name == "batch_write_item"
    ]
    assert sizes == [20, 16, 12, 8]  # only what came back unprocessed is re-sent
    assert len(sleeps) == 3
    assert all(0 <= s <= limit for s, limit in zip(sleeps, [0.05, 0.1, 0.2], strict=True))
    assert dynamodb.scan(TableName=stack.items_table, Select="COUNT")["Count"] == 20


def test_items_still_unprocessed_after_the_last_attempt_fail_and_invalidate_the_cache(
    catalog: DynamoDbCatalog, spy: Spy, sleeps: list[float]
) -> None:
    catalog.put_items([item("z", stock=0)])
    first = catalog.snapshot()
    spy.rewrite["batch_write_item"] = unprocess(first_calls=100, keep=1)

    with pytest.raises(StorageUnavailable, match="still unprocessed"):
        catalog.put_items([item(f"item-{i:02}") for i in range(10)])

    assert spy.count("batch_write_item") == 1 + WRITE_ATTEMPTS
    assert len(sleeps) == WRITE_ATTEMPTS - 1 and max(sleeps) <= 1.0
    # Some items did land: the next snapshot must look at the table again.
    assert catalog.snapshot().category_of.keys() > first.category_of.keys()
