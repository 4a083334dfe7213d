"""The event log's columns (issue 14): one definition of what a Parquet object of the log holds.

The log is one table of records of several types, the union of their fields: a shopper event
(`events.*Event.log_record(received_at)`) and an erasure tombstone (`erasure.Erasure.log_record()`,
which alone carries `type`). Firehose converts each JSON record to a Parquet row through the Glue table
template.yaml declares (`EventLogTable`); tests/integration/test_event_log_schema.py checks that table's
columns against `COLUMNS`, and `COLUMNS` against the fields the records carry. The local Firehose
stand-in, the one-off migration and the compaction write Parquet with these columns too
(`nextpick_training.parquet_log`).

Types are Hive/Glue types. Times stay the ISO-8601 strings the records carry (`...Z`): Firehose's
OpenX JSON SerDe parses only a few timestamp layouts, and a string keeps exactly what was logged; the
window query parses them (`from_iso8601_timestamp`). `context` values (string, number or boolean) are
stored as strings (`{"n": 2}` -> `{"n": "2"}`): a Parquet map has one value type; training never
reads `context`.

Adding a record type or a field (an `impression` record, say): add its new columns at the END of
`COLUMNS` (Hive type; a field that several record types share keeps one column) and to the Glue
table's column list in template.yaml in the same order (the schema test fails until both agree). Old
objects lack the column and read as NULL (Athena resolves Parquet columns by name; DuckDB reads with
`union_by_name`). A typed record says what it is in `type` (tombstones) or `record_type`
(impressions); events have neither, and the window query selects events by both being NULL (and an
`event_id`), so a new record type never reaches training by accident.
"""

from __future__ import annotations

from typing import Final

# (column, Hive type), in the Glue table's order.
COLUMNS: Final[tuple[tuple[str, str], ...]] = (
    ("event_id", "string"),
    ("user_id", "string"),
    ("timestamp", "string"),
    ("received_at", "string"),
    ("event_type", "string"),
    ("item_id", "string"),
    ("session_id", "string"),
    ("quantity", "int"),
    ("price", "double"),
    ("rating", "int"),
    ("text", "string"),
    ("query", "string"),
    ("clicked_items", "array<string>"),
    ("matched_items", "array<string>"),
    ("context", "map<string,string>"),
    # Typed records (tombstones): erasure.Erasure.log_record().
    ("type", "string"),
    ("erased_at", "string"),
    ("request_id", "string"),
    # Impressions (issue 13): `nextpick.domain.impressions.Impression.log_record()`, typed by
    # `record_type` (shared with it: user_id, item_id, context).
    ("record_type", "string"),
    ("recommendation_id", "string"),
    ("surface", "string"),
    ("model_version", "string"),
    ("variant", "string"),
    ("items", "array<string>"),
    ("shadow", "boolean"),
    ("served_at", "string"),
)
COLUMN_NAMES: Final[tuple[str, ...]] = tuple(name for name, _ in COLUMNS)
# Firehose's `!{timestamp:...}` prefix (arrival time, UTC) makes these Hive partitions: strings, as
# the key spells them (`year=2026/month=11/day=28`).
PARTITION_KEYS: Final[tuple[str, ...]] = ("year", "month", "day")
