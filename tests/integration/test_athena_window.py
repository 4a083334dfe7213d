"""The window query on Athena (issue 14): the adapter's call flow under moto - start in the stack's
workgroup with the one query text, poll, page through the results - and what it makes of Athena's
string cells. moto does not run SQL: each test queues, as Athena's answer, what DuckDB answers to the
same query over the same Parquet objects, in Athena's result shape (header row, VarCharValue cells)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.athena.models import QueryResults, athena_backends
from moto.moto_api import state_manager

from nextpick.domain.erasure import Erasure
from nextpick.domain.events import EventType, SearchEvent, TrackedEvent
from nextpick_training.athena_log import POLL_SECONDS, AthenaWindow, QueryFailed, table_name
from nextpick_training.event_log import LogStats
from nextpick_training.parquet_log import json_lines_to_parquet
from nextpick_training.window_query import (
    ROW_COLUMNS,
    DuckDbWindow,
    read_window,
    read_window_duckdb,
    window_sql,
)

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
START, END = T0 - timedelta(days=1), T0 + timedelta(days=1)
BUCKET, DATABASE, TABLE, WORK_GROUP = "log-bucket", "nextpick_event_log", "events", "nextpick-test-event-log"
ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        athena = boto3.client("athena", region_name=REGION)
        athena.create_work_group(
            Name=WORK_GROUP,
            Configuration={"ResultConfiguration": {"OutputLocation": f"s3://{BUCKET}/athena-results/"}},
        )
        yield {"s3": s3, "athena": athena}
        state_manager.unset_transition("athena::execution")


def write_log(s3: Any) -> None:
    def record(event: Any, seconds: float) -> bytes:
        return json.dumps(event.log_record(T0 + timedelta(seconds=seconds))).encode() + b"\n"

    view = TrackedEvent(event_id="e1", user_id="u1", item_id="i1", event_type=EventType.VIEW, timestamp=T0)
    gone = TrackedEvent(
        event_id="e2", user_id="u2", item_id="i2", event_type=EventType.PURCHASE, timestamp=T0
    )
    search = SearchEvent.model_validate(
        {"event_id": "s1", "user_id": "u1", "event_type": "search", "query": "a, b", "timestamp": T0}
    ).resolved(["i1", "i2"])
    tombstone = Erasure("u2", T0 + timedelta(minutes=1)).log_record().encode() + b"\n"
    body = record(view, 1) + record(view, 90) + record(gone, 1) + tombstone + record(search, 2)
    s3.put_object(
        Bucket=BUCKET,
        Key=f"events/year={T0:%Y}/month={T0:%m}/day={T0:%d}/a.parquet",
        Body=json_lines_to_parquet(body),
    )


def queue_athena_answer(rows: list[dict[str, Any]]) -> None:
    """Athena's answer: a header row, then every value as its text (NULL: a cell without a value)."""

    def cell(value: Any) -> dict[str, str]:
        return {} if value is None else {"VarCharValue": str(value)}

    result_rows = [{"Data": [{"VarCharValue": c} for c in ROW_COLUMNS]}]
    result_rows += [{"Data": [cell(row[c]) for c in ROW_COLUMNS]} for row in rows]
    info = [{"Name": c, "Type": "varchar"} for c in ROW_COLUMNS]
    athena_backends[ACCOUNT][REGION].query_results_queue.append(QueryResults(result_rows, info))


def duckdb_rows(aws: dict[str, Any], tmp_path: Any) -> list[dict[str, Any]]:
    for entry in aws["s3"].list_objects_v2(Bucket=BUCKET)["Contents"]:
        target = tmp_path / entry["Key"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(aws["s3"].get_object(Bucket=BUCKET, Key=entry["Key"])["Body"].read())
    return DuckDbWindow(tmp_path).rows(START, END, LogStats())


def test_the_window_runs_in_the_workgroup_with_the_one_query_and_reads_back_the_same_events(
    aws: dict[str, Any], tmp_path: Any
) -> None:
    write_log(aws["s3"])
    answer = duckdb_rows(aws, tmp_path)
    assert sorted(r["event_id"] for r in answer) == ["e1", "s1"]  # e1 once, e2 erased
    queue_athena_answer(answer)
    # Athena takes a few polls: moto moves QUEUED -> RUNNING -> SUCCEEDED every second GetQueryExecution.
    state_manager.set_transition("athena::execution", {"progression": "manual", "times": 2})
    sleeps: list[float] = []
    engine = AthenaWindow(aws["athena"], DATABASE, TABLE, WORK_GROUP, sleep=sleeps.append)

    records = read_window(engine, START, END)

    (execution,) = athena_backends[ACCOUNT][REGION].executions.values()
    assert execution.query == window_sql(table_name(DATABASE, TABLE), START, END)
    assert execution.workgroup is not None and execution.workgroup.name == WORK_GROUP
    assert execution.context == {"Database": DATABASE}
    # Polled until it succeeded, one pause of POLL_SECONDS between polls.
    assert len(sleeps) >= 2 and set(sleeps) == {POLL_SECONDS}
    expected = read_window_duckdb(aws["s3"], BUCKET, "events/", START, END)
    assert sorted(
        (r.user_id, r.event_id, r.step, r.item_id, r.strength, r.received_at) for r in records
    ) == sorted((r.user_id, r.event_id, r.step, r.item_id, r.strength, r.received_at) for r in expected)
    assert len(records) == 3  # the view, and the search's two matched items


def test_results_are_read_page_by_page(aws: dict[str, Any]) -> None:
    rows = [
        {
            "event_id": f"e{n}",
            "user_id": "u1",
            "event_type": "view",
            "item_id": f"i{n}",
            "rating": None,
            "query": None,
            "clicked_items": None,
            "matched_items": None,
            "timestamp": "2026-11-20T12:00:00Z",
            "received_at": "2026-11-20T12:00:01Z",
            "copies": 1,
            "erased_rows": 0,
            "tombstone_rows": 0,
        }
        for n in range(2500)
    ]
    queue_athena_answer(rows)
    pages: list[int] = []
    client = aws["athena"]
    client.meta.events.register(
        "after-call.athena.GetQueryResults",
        lambda parsed, **_: pages.append(len(parsed["ResultSet"]["Rows"])),
    )
    got = AthenaWindow(client, DATABASE, TABLE, WORK_GROUP, sleep=lambda _: None).rows(START, END, LogStats())
    assert [r["event_id"] for r in got] == [f"e{n}" for n in range(2500)]
    assert got[0]["rating"] is None
    assert len(pages) >= 1 and sum(pages) == 2501  # the header, once


def test_a_query_still_running_at_the_deadline_is_stopped_and_fails_the_read(aws: dict[str, Any]) -> None:
    state_manager.set_transition("athena::execution", {"progression": "manual", "times": 1_000})
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    engine = AthenaWindow(
        aws["athena"], DATABASE, TABLE, WORK_GROUP, sleep=sleep, clock=lambda: now[0], timeout_seconds=5
    )
    with pytest.raises(QueryFailed, match="still QUEUED after 5 s"):
        engine.rows(START, END, LogStats())
    (execution,) = athena_backends[ACCOUNT][REGION].executions.values()
    assert execution.status == "CANCELLED"


class Failing:
    """An Athena client whose query fails (as a query over a missing table does)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def get_query_execution(self, QueryExecutionId: str) -> Any:
        answer = self.client.get_query_execution(QueryExecutionId=QueryExecutionId)
        answer["QueryExecution"]["Status"] = {"State": "FAILED", "StateChangeReason": "TABLE_NOT_FOUND"}
        return answer


def test_a_failed_query_fails_the_read_with_athenas_reason(aws: dict[str, Any]) -> None:
    engine = AthenaWindow(Failing(aws["athena"]), DATABASE, TABLE, WORK_GROUP, sleep=lambda _: None)
    with pytest.raises(QueryFailed, match="failed: TABLE_NOT_FOUND"):
        engine.rows(START, END, LogStats())
