"""Parquet objects of the event log, written and read with DuckDB (issue 14).

Deployed, Firehose writes them (record-format conversion through the Glue table). This module writes
them the same way everywhere else: the local Firehose stand-in (`nextpick_local.standin.moto_patches`),
the one-off migration of the JSON-lines log (`nextpick migrate-event-log`) and the rewriting of an
object the compaction erases rows from. The columns are `nextpick.domain.log_schema.COLUMNS`; a JSON
value converts as Firehose's OpenX JSON SerDe converts it (a `context` number becomes its text).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb

from nextpick.domain.compaction import JsonLinesCodec
from nextpick.domain.erasure import ErasedLines, Erasure, Tombstones, tombstone_of
from nextpick.domain.log_schema import COLUMN_NAMES, COLUMNS

PARQUET_MAGIC = b"PAR1"
# Firehose writes Snappy-compressed Parquet by default (ParquetSerDe Compression: SNAPPY).
COMPRESSION = "snappy"
_HIVE_TO_DUCKDB = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "array<string>": "VARCHAR[]",
    "map<string,string>": "MAP(VARCHAR, VARCHAR)",
}


def duckdb_type(hive_type: str) -> str:
    """The DuckDB type of a Glue (Hive) column type of the log."""
    try:
        return _HIVE_TO_DUCKDB[hive_type]
    except KeyError:
        raise ValueError(
            f"no DuckDB type for the Hive type {hive_type!r}: add it to _HIVE_TO_DUCKDB"
        ) from None


def _json_columns() -> str:
    return "{" + ", ".join(f"'{name}': '{duckdb_type(kind)}'" for name, kind in COLUMNS) + "}"


def _quoted(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def is_parquet(body: bytes) -> bool:
    return body[:4] == PARQUET_MAGIC and body[-4:] == PARQUET_MAGIC


def json_lines_to_parquet(body: bytes) -> bytes | None:
    """JSON lines (one record each) as one Parquet object with the log's columns; None if there is
    no record. A line that is not a JSON object is dropped (Firehose sends such a record to its error
    prefix instead; nextpick never logs one)."""
    body = b"".join(line + b"\n" for line in body.splitlines() if _is_json_object(line))
    if not body:
        return None
    with tempfile.TemporaryDirectory(prefix="nextpick-parquet-") as folder:
        source, target = Path(folder, "records.jsonl"), Path(folder, "records.parquet")
        source.write_bytes(body)
        with duckdb.connect() as db:
            db.execute(
                f"COPY (SELECT * FROM read_json({_quoted(source)}, format='newline_delimited', "
                f"columns={_json_columns()}, ignore_errors=true)) "
                f"TO {_quoted(target)} (FORMAT parquet, COMPRESSION {COMPRESSION})"
            )
        return target.read_bytes()


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def malformed_lines(body: bytes) -> int:
    """The non-blank lines of a JSON-lines body that are not JSON objects (the conversion drops them)."""
    return sum(1 for line in body.splitlines() if line.strip() and not _is_json_object(line))


def records_to_parquet(records: Iterable[dict[str, Any]]) -> bytes | None:
    """Records (dicts, as `log_record()` returns them) as one Parquet object."""
    return json_lines_to_parquet(b"".join(json.dumps(r).encode() + b"\n" for r in records))


def parquet_rows(body: bytes) -> list[dict[str, Any]]:
    """Every row of one Parquet object of the log, as a dict of the log's columns (a column the object
    lacks, written before it was added, reads as None)."""
    with tempfile.TemporaryDirectory(prefix="nextpick-parquet-") as folder:
        path = Path(folder, "object.parquet")
        path.write_bytes(body)
        with duckdb.connect() as db:
            relation = db.execute(f"SELECT * FROM read_parquet({_quoted(path)})")
            names = [d[0] for d in relation.description]
            rows = [dict(zip(names, row, strict=True)) for row in relation.fetchall()]
    return [{name: row.get(name) for name in COLUMN_NAMES} for row in rows]


def write_rows_parquet(db: duckdb.DuckDBPyConnection, select_sql: str, target: Path) -> None:
    """COPY a query's rows to a Parquet file as the log writes them."""
    db.execute(f"COPY ({select_sql}) TO {_quoted(target)} (FORMAT parquet, COMPRESSION {COMPRESSION})")


def quoted_path(path: Path | str) -> str:
    """A path as a DuckDB string literal."""
    return _quoted(Path(os.fspath(path)))


class ParquetLogCodec:
    """`nextpick.domain.compaction.LogCodec` for a log of Parquet objects (issue 14) and the JSON-lines
    objects around it (written before the switch, or Firehose's error records): each body is read as
    what it is. In Parquet, the rule (`Tombstones.erases`) is applied in SQL, row by row: a tombstone
    row is kept; a row of an erased shopper received (an impression: served) at or before the
    erasure, or without a readable time, is dropped; the rows kept are written as a new Parquet object."""

    def __init__(self) -> None:
        self._json = JsonLinesCodec()

    def tombstones_in(self, body: bytes) -> Iterator[Erasure]:
        if not is_parquet(body):
            yield from self._json.tombstones_in(body)
            return
        for row in parquet_rows(body):
            if row.get("type") is None:
                continue
            try:
                yield tombstone_of({k: v for k, v in row.items() if v is not None})
            except ValueError:
                continue

    def erase(self, body: bytes, tombstones: Tombstones) -> ErasedLines:
        if not is_parquet(body):
            return self._json.erase(body, tombstones)
        if not tombstones:
            return ErasedLines(None, 0, 0)
        with tempfile.TemporaryDirectory(prefix="nextpick-parquet-") as folder:
            source, target = Path(folder, "object.parquet"), Path(folder, "kept.parquet")
            source.write_bytes(body)
            with duckdb.connect() as db:
                db.execute("CREATE TABLE erasures (user_id VARCHAR, erased_at TIMESTAMPTZ)")
                db.executemany(
                    "INSERT INTO erasures VALUES (?, ?)",
                    [(user, tombstones.erased_at(user)) for user in tombstones.to_json()],
                )
                # A record's own time: an event's arrival, an impression's serving (issue 13); a record
                # of an erased shopper without a readable one is erased, as in JSON lines.
                present = {
                    str(row[0])
                    for row in db.execute(
                        f"DESCRIBE SELECT * FROM read_parquet({_quoted(source)})"
                    ).fetchall()
                }
                times = [f"o.{name}" for name in ("received_at", "served_at") if name in present] or ["NULL"]
                tombstone = "o.type IS NOT NULL OR " if "type" in present else ""
                # The rows kept, in their order in the object.
                kept_sql = (
                    f"SELECT o.* EXCLUDE (file_row_number) FROM read_parquet({_quoted(source)}, "
                    "file_row_number = true) o LEFT JOIN erasures e ON e.user_id = o.user_id "
                    f"WHERE {tombstone}e.user_id IS NULL "
                    f"OR TRY_CAST(coalesce({', '.join(times)}) AS TIMESTAMPTZ) > e.erased_at "
                    "ORDER BY o.file_row_number"
                )
                counts = db.execute(
                    f"SELECT (SELECT count(*) FROM read_parquet({_quoted(source)})), "
                    f"(SELECT count(*) FROM ({kept_sql}))"
                ).fetchone()
                total, kept = (int(counts[0]), int(counts[1])) if counts else (0, 0)
                if kept == total:
                    return ErasedLines(None, total, 0)
                if not kept:
                    return ErasedLines(b"", 0, total)
                write_rows_parquet(db, kept_sql, target)
            return ErasedLines(target.read_bytes(), kept, total - kept)


def json_lines_of(body: bytes) -> bytes:
    """A log object as JSON lines whatever its format: a Parquet object's rows as compact JSON records
    of their non-null columns (what `log_record()` wrote, `context` values as text), anything else as
    it is. For readers of lines: an access request, the tests."""
    if not is_parquet(body):
        return body
    return b"".join(
        json.dumps({k: v for k, v in row.items() if v is not None}, separators=(",", ":")).encode() + b"\n"
        for row in parquet_rows(body)
    )
