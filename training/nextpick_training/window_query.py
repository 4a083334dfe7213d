"""The retrain's window query over the Parquet event log (issue 14): ONE SQL text for both engines.

* **Athena** when deployed (`nextpick_training.athena_log`), over the Glue table `EventLogTable`;
* **DuckDB** locally and in tests (`DuckDbWindow` below), over the same Parquet objects in a folder
  laid out as S3 holds them (`events/year=YYYY/month=MM/day=DD/...parquet`).

The text is Athena's (Trino) dialect. DuckDB runs it as is once `DUCKDB_COMPATIBILITY` has defined the
two Trino functions it lacks (`from_iso8601_timestamp`, `array_join`) as macros; nothing else differs.

The query applies, as `event_log.read_event_log` does on JSON lines:

1. the **partitions** from the day before the window's start (an event is never stamped more than
   minutes after it arrived, so an older partition cannot hold an event of the window; a tombstone
   there erased only events stamped before the start);
2. **erasure**: an event of a shopper with a tombstone is dropped if it was received at or before the
   shopper's latest erasure (`nextpick.domain.erasure.Tombstones.erases`: the same rule, in SQL);
3. **de-duplication** per `(user_id, event_id)`: delivery is at least once; the copy received first
   is kept;
4. the **window** on the events' own `timestamp`.

Its rows are distinct events (one per `(user_id, event_id)`), with the fields that fold them, how
many not erased copies of the event the log holds (`copies`) and, on every row, how many event rows
the tombstones erased and how many tombstones were read (`erased_rows`, `tombstone_rows`: the run's
counts, without a second scan); a search
is expanded into its fold steps in Python (`rows_to_records`) by the one definition of the steps,
`nextpick.domain.events.SearchEvent.steps`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import duckdb
from pydantic import ValidationError

from nextpick.domain.erasure import ERASURE_RECORD_TYPE, iso, parse_time
from nextpick.domain.events import stored_event
from nextpick.domain.log_schema import COLUMNS
from nextpick_training.event_log import LogRecord, LogStats, list_log_keys, partition_day
from nextpick_training.parquet_log import (
    duckdb_type,
    is_parquet,
    json_lines_to_parquet,
    malformed_lines,
    quoted_path,
)

# The query's answer, column by column (the arrays joined with ',', which no id can contain).
ROW_COLUMNS = (
    "event_id",
    "user_id",
    "event_type",
    "item_id",
    "rating",
    "query",
    "clicked_items",
    "matched_items",
    "timestamp",
    "received_at",
    "copies",
    "erased_rows",
    "tombstone_rows",
)
ITEM_SEPARATOR = ","
# Trino functions the query uses that DuckDB spells differently.
DUCKDB_COMPATIBILITY = (
    "CREATE OR REPLACE MACRO from_iso8601_timestamp(s) AS CAST(s AS TIMESTAMPTZ)",
    # DuckDB's array_to_string takes only a constant separator, which a macro's parameter is not.
    "CREATE OR REPLACE MACRO array_join(items, separator) AS CASE WHEN len(items) = 0 THEN '' "
    "ELSE list_reduce(items, lambda a, b: a || separator || b) END",
)
LOCAL_TABLE = "event_log"
UNPARTITIONED = "year=9999/month=12/day=31/"
# Rows of the answer turned into records at a time (~850 bytes each as Python dicts, measured).
ROW_BATCH = 50_000


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _from_day(day: date) -> str:
    """Partitions on or after `day`, by the partition columns alone (so Athena prunes by projection;
    Firehose writes month and day with two digits, so the strings compare as the dates do)."""
    y, m, d = _literal(f"{day.year:04d}"), _literal(f"{day.month:02d}"), _literal(f"{day.day:02d}")
    return f"(year > {y} OR (year = {y} AND (month > {m} OR (month = {m} AND day >= {d}))))"


def window_sql(table: str, start: datetime, end: datetime) -> str:
    """The window query over `table` (Athena: `"database"."table"`; DuckDB: a view over the files)."""
    oldest_day = (start - timedelta(days=1)).date()
    return f"""
WITH log AS (
    SELECT * FROM {table} WHERE {_from_day(oldest_day)}
),
erasures AS (
    SELECT user_id, max(from_iso8601_timestamp(erased_at)) AS erased_at
    FROM log
    WHERE type = {_literal(ERASURE_RECORD_TYPE)} AND erased_at IS NOT NULL
    GROUP BY user_id
),
marked AS (
    SELECT log.*, coalesce(from_iso8601_timestamp(log.received_at) <= erasures.erased_at, false) AS erased
    FROM log LEFT JOIN erasures ON erasures.user_id = log.user_id
),
counted AS (
    SELECT marked.*,
        row_number() OVER (
            PARTITION BY user_id, event_id ORDER BY erased, from_iso8601_timestamp(received_at)
        ) AS copy,
        count_if(NOT erased) OVER (PARTITION BY user_id, event_id) AS copies,
        count_if(erased AND type IS NULL AND record_type IS NULL) OVER () AS erased_rows,
        count_if(type = {_literal(ERASURE_RECORD_TYPE)}) OVER () AS tombstone_rows
    FROM marked
)
SELECT event_id, user_id, event_type, item_id, rating, "query",
    array_join(clicked_items, {_literal(ITEM_SEPARATOR)}) AS clicked_items,
    array_join(matched_items, {_literal(ITEM_SEPARATOR)}) AS matched_items,
    "timestamp", received_at, copies, erased_rows, tombstone_rows
FROM counted
WHERE copy = 1 AND NOT erased AND type IS NULL AND record_type IS NULL AND event_id IS NOT NULL
    AND user_id IS NOT NULL
    AND from_iso8601_timestamp("timestamp") BETWEEN from_iso8601_timestamp({_literal(iso(start))})
        AND from_iso8601_timestamp({_literal(iso(end))})
""".strip()


def _items(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [item for item in str(value).split(ITEM_SEPARATOR) if item]


def row_record(row: Mapping[str, Any]) -> tuple[LogRecord, ...]:
    """One answer row -> its event's fold steps. Raises ValueError if it is not a valid event."""
    fields: dict[str, Any] = {
        name: row.get(name)
        for name in ("event_id", "user_id", "event_type", "item_id", "rating", "query", "timestamp")
        if row.get(name) not in (None, "")
    }
    clicked, matched = _items(row.get("clicked_items")), _items(row.get("matched_items"))
    if clicked is not None:
        fields["clicked_items"] = clicked
    if matched is not None or fields.get("event_type") == "search":
        fields["matched_items"] = matched or []
    try:
        received_at = parse_time(row.get("received_at"))
        event = stored_event(fields)
    except (ValidationError, TypeError) as error:
        raise ValueError(str(error)) from error
    return LogRecord.of(event, received_at)


def rows_to_records(rows: Iterable[Mapping[str, Any]], stats: LogStats) -> list[LogRecord]:
    """Every answer row's fold steps; a row that is not a valid event is counted in `malformed`."""
    records: list[LogRecord] = []
    _add_records(rows, stats, records, run_counts=True)
    return records


def _add_records(
    rows: Iterable[Mapping[str, Any]], stats: LogStats, records: list[LogRecord], run_counts: bool
) -> None:
    """Appends the rows' fold steps to `records`. `run_counts`: these rows are the answer's first (its
    first row carries the run's erasure counts, the same on every row)."""
    for position, row in enumerate(rows):
        if position == 0 and run_counts:
            # The same on every row: the rows (events) erased and the tombstones, over the partitions read.
            stats.erased += int(row.get("erased_rows") or 0)
            stats.tombstones += int(row.get("tombstone_rows") or 0)
        stats.lines += 1
        # Copies delivered more than once (at least once delivery), as the JSON-lines reader counted.
        stats.duplicates += max(int(row.get("copies") or 1) - 1, 0)
        try:
            records.extend(row_record(row))
        except ValueError:
            stats.malformed += 1


class WindowEngine(Protocol):
    """Runs `window_sql` and answers its rows as dicts keyed by `ROW_COLUMNS`."""

    def rows(self, start: datetime, end: datetime, stats: LogStats) -> Sequence[Mapping[str, Any]]: ...


def connect_duckdb() -> duckdb.DuckDBPyConnection:
    db = duckdb.connect()
    for statement in DUCKDB_COMPATIBILITY:
        db.execute(statement)
    return db


@dataclass
class DuckDbWindow:
    """The query on DuckDB over a folder of the log's Parquet objects (any depth, Hive partitions)."""

    folder: Path

    def rows(self, start: datetime, end: datetime, stats: LogStats) -> list[dict[str, Any]]:
        return [row for batch in self.row_batches(start, end) for row in batch]

    def row_batches(
        self, start: datetime, end: datetime, size: int = ROW_BATCH
    ) -> Iterator[list[dict[str, Any]]]:
        """The answer's rows, `size` at a time, in the answer's order."""
        if not any(self.folder.rglob("*.parquet")):
            return
        with connect_duckdb() as db:
            create_log_view(db, self.folder)
            relation = db.execute(window_sql(LOCAL_TABLE, start, end))
            names = [d[0] for d in relation.description]
            while chunk := relation.fetchmany(size):
                yield [dict(zip(names, row, strict=True)) for row in chunk]


def create_log_view(db: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """`LOCAL_TABLE`: the Parquet objects under `folder` as the Glue table reads them: every column
    of `log_schema.COLUMNS` (one no object has yet, added to the schema later, as NULL) and the Hive
    partitions as strings."""
    files = (
        f"read_parquet({quoted_path(folder / '**' / '*.parquet')}, hive_partitioning = true, "
        "hive_types_autocast = false, union_by_name = true)"
    )
    present = {str(row[0]) for row in db.execute(f"DESCRIBE SELECT * FROM {files}").fetchall()}
    columns = [
        f'"{name}"' if name in present else f'NULL::{duckdb_type(kind)} AS "{name}"' for name, kind in COLUMNS
    ]
    db.execute(f"CREATE VIEW {LOCAL_TABLE} AS SELECT {', '.join(columns)}, year, month, day FROM {files}")


def download_window(
    s3: Any, bucket: str, prefix: str, start: datetime, folder: Path, stats: LogStats
) -> None:
    """The log's objects a window starting at `start` can need, copied under `folder` by key.

    A JSON-lines object written before the switch to Parquet (issue 14) is converted on the way, so
    the local reader takes both; Athena reads only Parquet (`nextpick migrate-event-log` converts a
    deployed log once)."""
    oldest_day = (start - timedelta(days=1)).date()
    for key in list_log_keys(s3, bucket, prefix):
        day = partition_day(key)
        if day is not None and day < oldest_day:
            stats.objects_skipped += 1
            continue
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        stats.objects += 1
        stats.bytes += len(body)
        if not is_parquet(body):
            stats.malformed += malformed_lines(body)
            converted = json_lines_to_parquet(body)
            if converted is None:
                continue
            body, key = converted, f"{key}.parquet"
        elif not key.endswith(".parquet"):
            key = f"{key}.parquet"
        if day is None:
            # Outside Firehose's partitions: always read, as before; filed under the last partition
            # there is so every file has the same Hive keys and the query never prunes it.
            key = f"{UNPARTITIONED}{key}"
        target = folder / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)


def read_window(
    engine: WindowEngine, start: datetime, end: datetime, stats: LogStats | None = None
) -> list[LogRecord]:
    """Every distinct, not erased event step whose event `timestamp` lies in [start, end]."""
    stats = stats if stats is not None else LogStats()
    if isinstance(engine, DuckDbWindow):
        # Batch by batch: the answer's rows as Python dicts take ~850 bytes each (measured at 300k rows),
        # 8.5 GB for a 10M-event window on top of its records (~460 bytes each); a batch, ~40 MB.
        records: list[LogRecord] = []
        for position, batch in enumerate(engine.row_batches(start, end, ROW_BATCH)):
            _add_records(batch, stats, records, run_counts=position == 0)
        return records
    return rows_to_records(engine.rows(start, end, stats), stats)


def read_window_duckdb(
    s3: Any, bucket: str, prefix: str, start: datetime, end: datetime, stats: LogStats | None = None
) -> list[LogRecord]:
    """The window through DuckDB over the log's objects downloaded to a temporary folder."""
    stats = stats if stats is not None else LogStats()
    with tempfile.TemporaryDirectory(prefix="nextpick-window-") as folder:
        download_window(s3, bucket, prefix, start, Path(folder), stats)
        return read_window(DuckDbWindow(Path(folder)), start, end, stats)


def timed_rows(engine: WindowEngine, start: datetime, end: datetime) -> tuple[int, float]:
    """(rows, seconds) of one run of the query (bench/event_log_query.py)."""
    started = time.perf_counter()
    rows = engine.rows(start, end, LogStats())
    return len(rows), time.perf_counter() - started
