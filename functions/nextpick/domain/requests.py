"""The one request validation: bytes in (an API body, or a bus event's detail re-encoded), validated
contract objects or `InvalidRequest` out. The API and the bus both call these functions, so both
enforce the same limits with the same field-named messages.

Validation is pydantic's JSON parser straight from the bytes (one pass: no `json.loads` first), which
refuses what is not JSON, including the `NaN` and `Infinity` tokens Python's `json` would accept."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from nextpick.domain.events import (
    CONTRACT_FIELD_NAMES,
    ID_MAX_LENGTH,
    AnyEvent,
    CatalogBody,
    CatalogItem,
    EventsBody,
    Identifier,
    ItemFields,
    SearchEvent,
    describe_errors,
)
from nextpick.domain.search import MAX_MATCHED_ITEMS
from nextpick.errors import InvalidRequest, RequestProblem

Model = TypeVar("Model", bound=BaseModel)

# DynamoDB's item limit is 400 KB. The state item holds, besides this write's event-log records (its
# outbox), at most 50 recent events (~8 KB with 128-character item ids), 200 purchased item ids
# (~26 KB), 200 event keys (1.6 KB) and the state vector (1 KB at the default state size): ~37 KB at
# the default limits. 192 KiB of log records per request leaves more than half of the rest as headroom.
MAX_BATCH_LOG_BYTES = 192 * 1024
# The `received_at` stamp every log record carries has this fixed width.
_RECEIVED_AT = datetime(2000, 1, 1, tzinfo=UTC)


_IDENTIFIER: TypeAdapter[str] = TypeAdapter(Identifier)
_LONGEST_ID = "x" * ID_MAX_LENGTH


@dataclass(frozen=True)
class RequestLimits:
    """What one request may carry; the API and the bus use the same instance (from settings)."""

    max_body_bytes: int = 256 * 1024
    max_batch_events: int = 25
    max_batch_log_bytes: int = MAX_BATCH_LOG_BYTES


def _body_bytes(body: bytes | str, limits: RequestLimits) -> bytes:
    if isinstance(body, str):
        try:
            body = body.encode()
        except UnicodeEncodeError:  # a lone surrogate: no UTF-8 text has one
            raise InvalidRequest.of("body", "is not valid UTF-8", RequestProblem.MALFORMED) from None
    if not body.strip():
        raise InvalidRequest.of("body", "is empty; a JSON object is required", RequestProblem.MALFORMED)
    if len(body) > limits.max_body_bytes:
        raise InvalidRequest.of(
            "body", f"is larger than {limits.max_body_bytes} bytes", RequestProblem.TOO_LARGE
        )
    return body


def parse_body(model: type[Model], body: bytes | str, limits: RequestLimits) -> Model:
    """`body` (JSON text) validated as `model`; the byte limit is checked before anything is parsed."""
    data = _body_bytes(body, limits)
    try:
        return model.model_validate_json(data)
    except ValidationError as error:
        raise _invalid(error) from None


def _invalid(error: ValidationError) -> InvalidRequest:
    """The refusal for a pydantic error: never its input values (they carry the rejected text)."""
    raw = error.errors(include_url=False, include_input=False)
    not_json = any(e["type"] in ("json_invalid", "json_type") for e in raw)
    return InvalidRequest(
        describe_errors(raw),
        RequestProblem.MALFORMED if not_json else RequestProblem.INVALID,
        describe_errors(raw, known=CONTRACT_FIELD_NAMES),
    )


def detail_bytes(detail: Any) -> bytes:
    """A bus event's detail back as JSON bytes, so the bus goes through the API's exact validation."""
    try:
        return json.dumps(detail, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except (ValueError, TypeError, UnicodeEncodeError):  # NaN/Infinity, or a lone surrogate
        raise InvalidRequest.of(
            "detail", "is not JSON (NaN, Infinity or invalid Unicode)", RequestProblem.MALFORMED
        ) from None


def _log_record_bytes(event: AnyEvent) -> int:
    # Exactly the line the state write puts in its outbox (json.dumps, ASCII: 1 byte per character);
    # a search counted with the longest resolution it can get at ingest (MAX_MATCHED_ITEMS longest ids).
    if isinstance(event, SearchEvent):
        event = event.resolved([_LONGEST_ID] * MAX_MATCHED_ITEMS)
    return len(json.dumps(event.log_record(_RECEIVED_AT), separators=(",", ":")))


def batch_log_bytes(events: list[AnyEvent]) -> int:
    """The most log-record bytes these events can add to a user's state item in one write."""
    return sum(_log_record_bytes(event) for event in events)


def parse_events(body: bytes | str, limits: RequestLimits) -> EventsBody:
    """A `POST /events` body or ShopperEvent detail: one event or a batch, within every limit."""
    request = parse_body(EventsBody, body, limits)
    events = request.events
    field = "body" if request.is_single else "events"
    if len(events) > limits.max_batch_events:
        raise InvalidRequest.of(field, f"at most {limits.max_batch_events} events per request")
    total = batch_log_bytes(events)
    if total > limits.max_batch_log_bytes:
        raise InvalidRequest.of(
            field,
            f"the events' log records total {total} bytes, more than the {limits.max_batch_log_bytes} "
            "one request may add to a user's state (DynamoDB items are limited to 400 KB); send fewer "
            "events or less context per request",
            RequestProblem.TOO_LARGE,
        )
    return request


def parse_catalog(body: bytes | str, limits: RequestLimits) -> list[CatalogItem]:
    """A `PUT /items` body or CatalogItem detail: one item or {"items": [...]}."""
    return parse_body(CatalogBody, body, limits).items


def parse_item(item_id: str, body: bytes | str, limits: RequestLimits) -> CatalogItem:
    """A `PUT /items/{item_id}` body, with the id from the path validated like any other id."""
    fields = parse_body(ItemFields, body, limits)
    try:
        return CatalogItem.model_validate({**fields.model_dump(), "item_id": item_id})
    except ValidationError as error:
        raise _invalid(error) from None


def parse_identifier(field: str, value: str) -> str:
    """An id given outside a body (a URL path segment), held to the same rule as ids in bodies."""
    try:
        return _IDENTIFIER.validate_python(value)
    except ValidationError as error:
        raise InvalidRequest.of(field, str(error.errors()[0]["msg"])) from None


def parse_detail_events(detail: Mapping[str, Any] | Any, limits: RequestLimits) -> EventsBody:
    return parse_events(detail_bytes(detail), limits)


def parse_detail_catalog(detail: Mapping[str, Any] | Any, limits: RequestLimits) -> list[CatalogItem]:
    return parse_catalog(detail_bytes(detail), limits)
