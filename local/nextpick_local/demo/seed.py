"""Loads the demo shop into the local stack, each part through the path production data takes:

* the catalog through the real catalog adapter (`DynamoDbCatalog.put_items`, what `PUT /items` runs);
* the history into the event log exactly as Firehose writes it: newline-terminated
  `TrackedEvent.log_record(received_at)` lines, in objects keyed by the stream's prefix evaluated at
  the arrival time (one object per day of arrivals: fewer, larger deliveries than a 300 s buffer makes,
  which only changes how many objects the retrain job lists);
* the named shoppers' timelines through `POST /events` (API Gateway -> ApiFunction), so their state,
  the table's stream, the log shipper and Firehose all run as they do for a live shopper;
* the storefront's rule set through `PUT /rule-sets/{name}` with the admin key, as a merchandiser would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import date, datetime
from itertools import groupby
from typing import Any

from nextpick.adapters.dynamodb_catalog import DynamoDbCatalog
from nextpick.domain.events import CatalogItem, TrackedEvent
from nextpick.domain.rules import RuleSet
from nextpick_local.progress import Progress
from nextpick_local.standin.firehose import firehose_object_key
from nextpick_local.standin.gateway import ApiGateway, HttpRequest

CATALOG_CHUNK = 100


def load_catalog(table_name: str, items: Sequence[CatalogItem]) -> None:
    catalog = DynamoDbCatalog(table_name, refresh_seconds=0)
    with Progress("catalog", len(items)) as progress:
        for start in range(0, len(items), CATALOG_CHUNK):
            chunk = items[start : start + CATALOG_CHUNK]
            catalog.put_items(chunk)
            progress.advance(len(chunk))


def write_event_log(
    s3: Any,
    bucket: str,
    stream_name: str,
    prefix: str,
    history: Sequence[tuple[TrackedEvent, datetime]],
) -> int:
    """Write the history as Firehose deliveries (Parquet, as the template's stream converts records
    since issue 14); the number of objects written."""
    from nextpick_training.parquet_log import json_lines_to_parquet

    objects = 0

    def delivery_day(pair: tuple[TrackedEvent, datetime]) -> date:
        return pair[1].date()

    ordered = sorted(history, key=lambda pair: pair[1])
    with Progress("event log", len(ordered)) as progress:
        for _, group in groupby(ordered, key=delivery_day):
            pairs = list(group)
            body = "".join(json.dumps(event.log_record(received)) + "\n" for event, received in pairs)
            key = firehose_object_key(stream_name, "1", prefix, pairs[-1][1]) + ".parquet"
            s3.put_object(Bucket=bucket, Key=key, Body=json_lines_to_parquet(body.encode()))
            objects += 1
            progress.advance(len(pairs))
    return objects


def post_events(gateway: ApiGateway, server_key: str, body: bytes) -> tuple[int, bytes]:
    """`POST /events` through the local API Gateway (status, body)."""
    response = gateway.handle(
        HttpRequest(
            "POST",
            "/events",
            [("Content-Type", "application/json"), ("Authorization", f"Bearer {server_key}")],
            body,
            "127.0.0.1",
        )
    )
    return response.status, response.body


def put_rule_set(gateway: ApiGateway, admin_key: str, name: str, rule_set: RuleSet) -> tuple[int, bytes]:
    """`PUT /rule-sets/{name}` through the local API Gateway with the admin key (status, body)."""
    response = gateway.handle(
        HttpRequest(
            "PUT",
            f"/rule-sets/{name}",
            [("Content-Type", "application/json"), ("Authorization", f"Bearer {admin_key}")],
            rule_set.model_dump_json(exclude_defaults=True).encode(),
            "127.0.0.1",
        )
    )
    return response.status, response.body


def send_live_events(
    send: Callable[[bytes], tuple[int, bytes]],
    timelines: dict[str, list[TrackedEvent]],
    batch_size: int,
    check: Callable[[int, bytes], None],
) -> None:
    """The named shoppers' events, in order, as `POST /events` batches (`send`: see post_events)."""
    events = [event for timeline in timelines.values() for event in timeline]
    with Progress("demo shoppers", len(events)) as progress:
        for start in range(0, len(events), batch_size):
            batch = events[start : start + batch_size]
            body = json.dumps({"events": [e.model_dump(mode="json", exclude_none=True) for e in batch]})
            check(*send(body.encode()))
            progress.advance(len(batch))
