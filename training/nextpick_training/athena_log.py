"""The window query on Athena (issue 14): the deployed engine of `nextpick_training.window_query`.

One run: StartQueryExecution in the stack's workgroup (`EventLogWorkGroup`: its result location and
scan cut-off are enforced), GetQueryExecution every `poll_seconds` until it ends, then GetQueryResults
page by page (1,000 rows a page; the first row of the first page is the header). Athena's answers are
strings (`VarCharValue`), NULL is a cell without one; `window_query.row_record` validates them as the
events they are.

Reading results through the API costs one call per 1,000 rows: ~10,000 calls and a few minutes for a
10M-event window. Past that size, UNLOAD to Parquet and reading the files is the faster path (docs/
event-log.md, "Scaling the read"); below it this is the simplest one.

IAM (template.yaml, RetrainFunctionRole): athena:StartQueryExecution, GetQueryExecution and
GetQueryResults on the workgroup; glue:GetDatabase, GetTable, GetPartitions on the table; s3:GetObject
on `events/*` and s3:GetObject/PutObject on `athena-results/*`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nextpick.errors import StorageUnavailable
from nextpick_training.event_log import LogStats
from nextpick_training.window_query import ROW_COLUMNS, window_sql

# A window query over a 10M-event log scans ~0.5 GB and runs in seconds; 10 minutes leaves the rest of
# a 15-minute retrain for training, and a query still running then is cancelled by nobody else.
QUERY_TIMEOUT_SECONDS = 600.0
POLL_SECONDS = 1.0
_DONE = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


class QueryFailed(StorageUnavailable):
    """The window query did not succeed (failed, cancelled, timed out)."""


def table_name(database: str, table: str) -> str:
    """The table as the query names it (quoted: a database may hold characters Trino would not take)."""
    return f'"{database}"."{table}"'


@dataclass
class AthenaWindow:
    """`window_query.WindowEngine` on Athena."""

    client: Any
    database: str
    table: str
    work_group: str
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    timeout_seconds: float = QUERY_TIMEOUT_SECONDS
    poll_seconds: float = POLL_SECONDS
    # What the last run reported (bytes scanned, engine time), for the run record.
    statistics: dict[str, Any] = field(default_factory=dict)

    def rows(self, start: datetime, end: datetime, stats: LogStats) -> list[dict[str, Any]]:
        query_id = self._start(window_sql(table_name(self.database, self.table), start, end))
        self._wait(query_id)
        return self._results(query_id)

    def _start(self, sql: str) -> str:
        try:
            answer = self.client.start_query_execution(
                QueryString=sql,
                QueryExecutionContext={"Database": self.database},
                WorkGroup=self.work_group,
            )
        except (ClientError, BotoCoreError) as error:
            raise QueryFailed(
                f"Athena workgroup {self.work_group}: could not start the window query: {error}"
            ) from error
        return str(answer["QueryExecutionId"])

    def _wait(self, query_id: str) -> None:
        deadline = self.clock() + self.timeout_seconds
        while True:
            try:
                execution = self.client.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            except (ClientError, BotoCoreError) as error:
                raise QueryFailed(f"Athena query {query_id}: {error}") from error
            status = execution.get("Status", {})
            state = status.get("State")
            if state in _DONE:
                self.statistics = dict(execution.get("Statistics", {}))
                if state != "SUCCEEDED":
                    reason = status.get("StateChangeReason", "no reason given")
                    raise QueryFailed(f"Athena query {query_id} {state.lower()}: {reason}")
                return
            if self.clock() >= deadline:
                # The timeout is what is reported; the workgroup's scan cut-off bounds the cost anyway.
                with contextlib.suppress(ClientError, BotoCoreError):
                    self.client.stop_query_execution(QueryExecutionId=query_id)
                raise QueryFailed(f"Athena query {query_id} still {state} after {self.timeout_seconds:.0f} s")
            self.sleep(self.poll_seconds)

    def _results(self, query_id: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        header: list[str] | None = None
        try:
            pages = self.client.get_paginator("get_query_results").paginate(QueryExecutionId=query_id)
            for page in pages:
                for row in page["ResultSet"]["Rows"]:
                    cells = [cell.get("VarCharValue") for cell in row.get("Data", [])]
                    if header is None:
                        header = [str(c) for c in cells]
                        if header != list(ROW_COLUMNS):
                            raise QueryFailed(f"Athena query {query_id}: unexpected columns {header}")
                        continue
                    rows.append(dict(zip(header, cells, strict=True)))
        except (ClientError, BotoCoreError) as error:
            raise QueryFailed(f"Athena query {query_id}: reading the results: {error}") from error
        return rows
