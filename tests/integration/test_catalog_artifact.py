"""The catalog availability artifact under moto (docs/catalog-artifact.md): the items table's stream
records become versions in S3 (inserts, modifies, removes; a redelivered batch changes nothing), a warm
container picks a change up at its next pointer check by fetching one delta, a cold container reads the
snapshot and deltas with no table scan, and an unreadable artifact fails safe to the table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from nextpick.adapters import s3_catalog_artifact as artifact_module
from nextpick.adapters.artifact_catalog import OWN_WRITES_SECONDS, ArtifactCatalog
from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog, scan_snapshot
from nextpick.adapters.s3_catalog_artifact import CatalogArtifact, Reads
from nextpick.domain.catalog_changes import net_changes
from nextpick.domain.events import CatalogItem
from nextpick.errors import VersionConflict
from nextpick.handlers import api, catalog_artifact, wiring
from nextpick.handlers.catalog_artifact import stream_rows
from nextpick_local.standin.aws_resources import Stack
from tests.conftest import TinyModel, tiny_catalog
from tests.integration.serving import FakeLambdaContext, call, proxy_event, publish_model, sample_event
from tests.integration.spy import Spy
from tests.integration.test_log_shipper import stream_event

REFRESH = 30.0
MAX_STALE = 120.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    for name, value in {**stack.env("ApiFunction"), **stack.env("CatalogArtifactFunction")}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MODEL_REFRESH_SECONDS", "0")
    wiring.reset()
    catalog_artifact.reset()
    yield stack
    wiring.reset()
    catalog_artifact.reset()


class Stream:
    """The items table's stream as Lambda hands it to the writer: each `next()` is the records written
    since the previous one (one batch), `again()` the last batch once more (a redelivery)."""

    def __init__(self, dynamodb: Any, streams: Any, table: str) -> None:
        self._args = (dynamodb, streams, table)
        self._seen = 0
        self.last: dict[str, Any] = {"Records": []}

    def next(self) -> dict[str, Any]:
        records = stream_event(*self._args)["Records"]
        self.last = {"Records": records[self._seen :]}
        self._seen = len(records)
        return self.last

    def again(self) -> dict[str, Any]:
        return self.last


def write(stack: Stack, *items: CatalogItem) -> None:
    DynamoDbCatalog(stack.items_table, 0).put_items(list(items))


def item(item_id: str, stock: int = 5, **fields: Any) -> CatalogItem:
    return CatalogItem(
        item_id=item_id,
        category=fields.pop("category", "coffee"),
        price=fields.pop("price", 4.5),
        stock=stock,
        **fields,
    )


def run_writer(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = catalog_artifact.lambda_handler(event, FakeLambdaContext())
    return result


def history_keys(s3: Any, stack: Stack) -> list[str]:
    listed = s3.list_objects_v2(Bucket=stack.model_bucket, Prefix="catalog/history/")
    return sorted(o["Key"] for o in listed.get("Contents", []))


def container(
    stack: Stack, clock: Clock, reports: list[str] | None = None
) -> tuple[ArtifactCatalog, Spy, Spy]:
    """A serving container's catalog with spied clients: (catalog, its DynamoDB calls, its S3 calls)."""
    dynamodb, s3 = Spy(boto3.client("dynamodb")), Spy(boto3.client("s3"))
    found = reports if reports is not None else []
    catalog = ArtifactCatalog(
        CatalogArtifact(stack.model_bucket, client=s3),
        DynamoDbCatalog(stack.items_table, REFRESH, client=dynamodb, clock=clock),
        refresh_seconds=REFRESH,
        max_stale_seconds=MAX_STALE,
        clock=clock,
        report=lambda name: found.append(name),
    )
    return catalog, dynamodb, s3


@pytest.fixture
def shop(env: Stack, dynamodb: Any, dynamodbstreams: Any) -> Stream:
    """Three items in the table and the artifact bootstrapped from them (version 1)."""
    stream = Stream(dynamodb, dynamodbstreams, env.items_table)
    write(
        env,
        item("a", title="Dark roast", attributes={"brand": "Nordic", "organic": True}),
        item("b"),
        item("c"),
    )
    assert run_writer(stream.next()) == {"version": 1, "changed": 0}
    return stream


# ------------------------------------------------------------------------------- the writer


def test_inserts_modifies_and_removes_become_one_version_equal_to_the_table(
    env: Stack, shop: Stream, dynamodb: Any
) -> None:
    write(env, item("a", stock=0, title="Dark roast", attributes={"brand": "Nordic", "organic": True}))
    write(env, item("d", category="tea", price=3.0, title="Sencha", attributes={"grams": 100, "rating": 4.5}))
    dynamodb.delete_item(TableName=env.items_table, Key={"item_id": {"S": "b"}})

    assert run_writer(shop.next()) == {"version": 2, "changed": 3}

    state = CatalogArtifact(env.model_bucket).refresh()
    assert state is not None and state.version == 2
    table = scan_snapshot(boto3.client("dynamodb"), env.items_table)
    assert state.snapshot.same_content(table)
    assert state.snapshot.out_of_stock == {"a"}
    assert state.snapshot.item_ids == {"a", "c", "d"}
    assert state.snapshot.attributes["grams"] == {"d": 100}
    assert state.snapshot.attributes["organic"] == {"a": True}


def test_a_redelivered_batch_and_a_stock_decrement_write_nothing(env: Stack, shop: Stream, s3: Any) -> None:
    write(env, item("c", stock=0))
    assert run_writer(shop.next()) == {"version": 2, "changed": 1}
    written = history_keys(s3, env)

    assert run_writer(shop.again()) == {"version": 2, "changed": 0}  # Lambda retrying the same batch
    write(env, item("b", stock=4))  # 5 -> 4: in stock either way
    assert run_writer(shop.next()) == {"version": 2, "changed": 0}
    assert history_keys(s3, env) == written


def test_a_batch_ending_in_stock_again_is_no_change_and_a_cold_writer_rebuilds_the_same(
    env: Stack, shop: Stream
) -> None:
    write(env, item("c", stock=0))
    write(env, item("c", stock=7))
    catalog_artifact.reset()  # a cold writer: reads the artifact back from S3

    assert run_writer(shop.next()) == {"version": 1, "changed": 0}


def test_a_second_writer_loses_the_pointer_swap_and_applies_on_top(env: Stack, shop: Stream) -> None:
    first, second = CatalogArtifact(env.model_bucket), CatalogArtifact(env.model_bucket)
    for writer in (first, second):
        assert writer.refresh() is not None
    write(env, item("a", stock=0))
    records = shop.next()["Records"]
    first.commit(net_changes(first.state.snapshot, stream_rows(records)))  # type: ignore[union-attr]

    with pytest.raises(VersionConflict):
        second.commit(net_changes(second.state.snapshot, {"b": None}))  # type: ignore[union-attr]
    state, changes = catalog_artifact.apply_batch(second, records)  # the retry: refresh, nothing left

    assert (state.version, changes.item_count) == (2, 0)
    assert state.snapshot.out_of_stock == {"a"} and "b" in state.snapshot.item_ids


def test_full_snapshots_bound_what_a_cold_container_reads(
    env: Stack, shop: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(artifact_module, "SNAPSHOT_EVERY", 3)
    for version in range(2, 9):
        write(env, item("a", stock=version % 2))
        assert run_writer(shop.next())["version"] == version

    cold = CatalogArtifact(env.model_bucket)
    state = cold.refresh()

    assert state is not None and state.version == 8
    # Snapshots at versions 1, 4 and 7 (every 3): version 8 is snapshot 7 plus one delta.
    assert (cold.reads.snapshots, cold.reads.deltas) == (1, 1)
    assert state.snapshot.out_of_stock == {"a"}  # stock 8 % 2 == 0


def test_the_daily_reconciliation_repairs_drift_and_rewrites_the_snapshot(
    env: Stack, shop: Stream, s3: Any
) -> None:
    write(env, item("b", stock=0))  # a change whose stream record never reaches the writer
    shop.next()
    before = history_keys(s3, env)

    assert run_writer(sample_event("schedule_retrain.json")) == {"version": 2, "changed": 1}

    assert len(history_keys(s3, env)) == len(before) + 2  # the delta and a full snapshot
    state = CatalogArtifact(env.model_bucket).refresh()
    assert state is not None and state.pointer.snapshot.version == 2 and state.snapshot.out_of_stock == {"b"}


# ------------------------------------------------------------------------------- serving


def test_an_out_of_stock_change_reaches_warm_and_cold_containers_without_a_scan(
    env: Stack, shop: Stream
) -> None:
    clock = Clock()
    warm, warm_dynamodb, warm_s3 = container(env, clock)
    assert "a" not in warm.snapshot().out_of_stock

    write(env, item("a", stock=0, title="Dark roast", attributes={"brand": "Nordic", "organic": True}))
    assert run_writer(shop.next())["version"] == 2
    clock.now += REFRESH - 1
    assert "a" not in warm.snapshot().out_of_stock  # not yet: the pointer is checked every REFRESH s
    clock.now += 1
    assert "a" in warm.snapshot().out_of_stock
    cold, cold_dynamodb, _ = container(env, clock)
    assert "a" in cold.snapshot().out_of_stock

    assert warm_dynamodb.count("scan") == cold_dynamodb.count("scan") == 0
    assert warm.artifact.reads == Reads(
        pointer_checks=2, snapshots=1, deltas=1, bytes=warm.artifact.reads.bytes
    )
    assert [name for name, _ in warm_s3.calls] == ["get_object"] * 4


def test_an_unchanged_artifact_costs_a_warm_container_one_304_per_check(env: Stack, shop: Stream) -> None:
    clock = Clock()
    warm, _, s3 = container(env, clock)
    first = warm.snapshot()
    for _ in range(3):
        clock.now += REFRESH
        assert warm.snapshot() is first  # same id: masks stay cached
    assert warm.artifact.reads.not_modified == 3 and s3.count("get_object") == 5


def test_the_api_cold_start_serves_the_artifact_and_scans_nothing(
    env: Stack, shop: Stream, tiny_model: TinyModel, dynamodb: Any, dynamodbstreams: Any
) -> None:
    stream = Stream(dynamodb, dynamodbstreams, env.items_table)
    stream.next()
    write(env, *(item(i, category=c) for i, c in tiny_catalog().items()))
    run_writer(stream.next())
    publish_model(env, tiny_model)
    status, before = call(api.lambda_handler, proxy_event("GET", "/users/u-1/recommendations", query="k=3"))
    top = before["recommendations"][0]["item_id"]
    write(env, item(top, stock=0, category=tiny_catalog()[top]))
    run_writer(stream.next())
    scans: list[str] = []
    session = boto3._get_default_session()
    record = lambda **_: scans.append("scan")  # noqa: E731
    session.events.register("before-call.dynamodb.Scan", record)
    wiring.reset()  # a cold container: clients are built after the hook
    try:
        status, after = call(
            api.lambda_handler, proxy_event("GET", "/users/u-1/recommendations", query="k=3")
        )
    finally:
        session.events.unregister("before-call.dynamodb.Scan", record)

    assert status == 200, after
    assert top not in [r["item_id"] for r in after["recommendations"]]
    assert scans == []


def test_own_writes_are_served_at_once_and_the_overlay_ends_when_the_artifact_has_them(
    env: Stack, shop: Stream
) -> None:
    clock = Clock()
    catalog, _, _ = container(env, clock)
    first = catalog.snapshot()

    catalog.put_items([item("c", stock=0)])
    overlaid = catalog.snapshot()
    assert overlaid.out_of_stock == {"c"} and overlaid.snapshot_id != first.snapshot_id
    run_writer(shop.next())
    clock.now += REFRESH
    landed = catalog.snapshot()

    assert landed.out_of_stock == {"c"}
    write(env, item("c", stock=3))  # another admin's container puts it back in stock
    run_writer(shop.next())
    clock.now += REFRESH
    assert catalog.snapshot().out_of_stock == set()  # the overlay ended when the artifact had the row
    assert OWN_WRITES_SECONDS > REFRESH


# ------------------------------------------------------------------------------- fail-safe


def test_without_an_artifact_serving_reads_the_table_and_says_so(env: Stack) -> None:
    write(env, item("a", stock=0), item("b"))
    reports: list[str] = []
    catalog, dynamodb, _ = container(env, Clock(), reports)

    assert catalog.snapshot().out_of_stock == {"a"}
    assert dynamodb.count("scan") == 1 and reports == ["CatalogArtifactMissing"]


def test_an_unreadable_artifact_is_served_until_max_stale_then_the_table_is(
    env: Stack, shop: Stream, s3: Any
) -> None:
    clock, reports = Clock(), list[str]()
    warm, dynamodb, _ = container(env, clock, reports)
    assert warm.snapshot().out_of_stock == set()
    s3.put_object(Bucket=env.model_bucket, Key="catalog/current.json", Body=b"{not json")
    write(env, item("b", stock=0))  # the writer is down too: only the table has it

    clock.now += REFRESH
    assert warm.snapshot().out_of_stock == set() and dynamodb.count("scan") == 0
    clock.now += MAX_STALE - REFRESH
    assert warm.snapshot().out_of_stock == {"b"} and dynamodb.count("scan") == 1
    cold, cold_dynamodb, _ = container(env, clock, reports)
    assert cold.snapshot().out_of_stock == {"b"} and cold_dynamodb.count("scan") == 1
    assert reports == ["CatalogArtifactUnreadable", "CatalogArtifactFallback", "CatalogArtifactFallback"]


def test_a_repaired_artifact_ends_the_fallback(env: Stack, shop: Stream, s3: Any) -> None:
    clock = Clock()
    s3.put_object(Bucket=env.model_bucket, Key="catalog/current.json", Body=b"{not json")
    cold, dynamodb, _ = container(env, clock)
    cold.snapshot()
    catalog_artifact.reset()
    s3.delete_object(Bucket=env.model_bucket, Key="catalog/current.json")
    run_writer({"action": "reconcile"})  # the operator's repair: a new version 1 from the table

    clock.now += REFRESH
    cold.snapshot()
    clock.now += REFRESH
    cold.snapshot()
    assert dynamodb.count("scan") == 1


def test_an_artifact_rebuilt_from_scratch_replaces_the_one_a_warm_container_holds(
    env: Stack, shop: Stream, s3: Any
) -> None:
    clock = Clock()
    warm, _, _ = container(env, clock)
    assert warm.snapshot().out_of_stock == set()
    write(env, item("b", stock=0))  # lands only in the rebuild: the stream batch is never run
    shop.next()
    s3.delete_object(Bucket=env.model_bucket, Key="catalog/current.json")
    catalog_artifact.reset()
    assert run_writer({"action": "reconcile"}) == {"version": 1, "changed": 0}  # version 1 again

    clock.now += REFRESH
    assert warm.snapshot().out_of_stock == {"b"}
