"""The public event and catalog contract, validated with pydantic v2.

These models are the API's request bodies and the bus events' `detail`: one definition for both
paths, so a shop gets the same answer (and the same field-named error) whichever way it sends."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    PrivateAttr,
    RootModel,
    StringConstraints,
    Tag,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import JsonDict

from nextpick.domain.impressions import RECOMMENDATION_ID_PATTERN

# Ids are opaque to nextpick but end up in URL paths, DynamoDB keys, S3 log lines and logs. The
# character set is what every route can read back: one URL path segment as sent, no escaping needed
# (no '/', which would split the path, no '%', so decoding a path twice is harmless), and not made
# only of dots ('.' and '..' are removed from paths by clients and proxies). 1-128 characters.
ID_CHARACTERS = "A-Za-z0-9._:@+=-"
ID_PATTERN = rf"^[{ID_CHARACTERS}]*[{ID_CHARACTERS.replace('.', '')}][{ID_CHARACTERS}]*$"
ID_MAX_LENGTH = 128
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX_LENGTH, pattern=ID_PATTERN)]
# An answer's `recommendation_id` (domain/impressions.py): 32 lowercase hex digits, nothing else.
RecommendationId = Annotated[str, StringConstraints(pattern=RECOMMENDATION_ID_PATTERN)]
# Numbers a JSON reader anywhere reads back exactly (I-JSON, RFC 7493): finite floats, integers within
# +-(2**53 - 1), which DynamoDB also stores exactly. NaN and Infinity are not JSON; Python would write them into the event log as bare tokens.
# Catalog numbers are stored as DynamoDB numbers, which are 0 or of magnitude 1e-130 .. 9.99e125: a
# float outside that (5e-324, 1e308) would be accepted and then refused by DynamoDB with a 5xx.
SMALLEST_MAGNITUDE, LARGEST_MAGNITUDE = 1e-130, 9.99e125


def _storable(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    if value != 0 and not SMALLEST_MAGNITUDE <= abs(value) <= LARGEST_MAGNITUDE:
        raise ValueError(f"numbers must be 0 or of magnitude {SMALLEST_MAGNITUDE:g} .. {LARGEST_MAGNITUDE:g}")
    return value


FiniteFloat = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_storable)]
MAX_SAFE_INTEGER = 2**53 - 1
CONTEXT_STRING_MAX_LENGTH = 256


def _context_value(value: object) -> str | int | float | bool:
    # One validator instead of a pydantic union: a union would take 2**60 as the float 1.15e18 (another
    # number) and report one error per member; this keeps the value as sent, or says what is wrong.
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise ValueError(f"integers must be within +-{MAX_SAFE_INTEGER} (2**53 - 1)")
        return value
    if isinstance(value, float):
        return _storable(value)
    if isinstance(value, str):
        if len(value) > CONTEXT_STRING_MAX_LENGTH:
            raise ValueError(f"strings must be at most {CONTEXT_STRING_MAX_LENGTH} characters")
        return value
    raise ValueError("must be a string, a number or a boolean")


ContextValue = Annotated[
    str | int | float | bool,
    PlainValidator(_context_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "maxLength": CONTEXT_STRING_MAX_LENGTH},
                {"type": "integer", "minimum": -MAX_SAFE_INTEGER, "maximum": MAX_SAFE_INTEGER},
                {"type": "number"},
                {"type": "boolean"},
            ]
        }
    ),
]

# Anything before this is a unit mistake (seconds vs milliseconds) rather than real history; anything
# after the latest is no clock's reading (the future-skew check against the server clock is tighter,
# this bound keeps every accepted timestamp convertible to UTC and back).
EARLIEST_TIMESTAMP = datetime(2000, 1, 1, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(2100, 1, 1, tzinfo=UTC)


class EventType(StrEnum):
    VIEW = "view"
    CLICK = "click"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    PURCHASE = "purchase"
    RATE = "rate"

    @property
    def code(self) -> int:
        """The model contract's integer code for this type (docs/model-contract.md)."""
        return EVENT_TYPE_ORDER.index(self)


EVENT_TYPE_ORDER: tuple[EventType, ...] = tuple(EventType)


SEARCH = "search"
REVIEW = "review"
# What a shopper event's `event_type` can be: the model's item event types plus search and review.
EVENT_TYPE_NAMES: tuple[str, ...] = (*(t.value for t in EventType), SEARCH, REVIEW)


class Step(NamedTuple):
    """One fold step: what the model contract's `update` takes for an item, by id (docs/model-contract.md,
    "Search and review events"). `observed` is False for a search's matched items: nextpick's reading
    of the query, not something the shopper did to the item, so trending does not count it."""

    item_id: str
    event_type: EventType
    strength: float
    observed: bool = True


def _known_event_type(value: Any) -> Any:
    # Any type that is neither a search nor a review is checked here: say every type there is.
    if not isinstance(value, EventType) and value not in EVENT_TYPE_NAMES:
        raise ValueError(f"must be one of {', '.join(repr(n) for n in EVENT_TYPE_NAMES)}")
    return value


class _EventFields(BaseModel):
    """What every shopper event carries, whatever its type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: Identifier
    user_id: Identifier
    timestamp: datetime
    session_id: Identifier | None = None
    context: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], ContextValue] | None = (
        Field(default=None, max_length=20)
    )
    # The answer the shopper acted on (docs/attribution.md): kept in the event's log record for
    # `nextpick report`; the fold never reads it.
    recommendation_id: RecommendationId | None = None

    @field_validator("timestamp")
    @classmethod
    def _aware_and_plausible(cls, value: datetime) -> datetime:
        # A timestamp without a zone is taken as UTC, the only zone nextpick stores.
        value = value if value.tzinfo else value.replace(tzinfo=UTC)
        try:
            value = value.astimezone(UTC)
        except OverflowError:  # 9999-12-31T23:59:59-01:00 is past datetime.max once in UTC
            raise ValueError("timestamp is outside 2000-01-01 .. 2100-01-01") from None
        if value < EARLIEST_TIMESTAMP:
            raise ValueError("timestamp is before 2000-01-01 (seconds given as milliseconds?)")
        if value >= LATEST_TIMESTAMP:
            raise ValueError("timestamp is outside 2000-01-01 .. 2100-01-01")
        return value

    def steps(self) -> tuple[Step, ...]:
        """The event as the model folds it (docs/model-contract.md): the one encoding serving, replay
        and training share."""
        raise NotImplementedError

    def log_record(self, received_at: datetime) -> dict[str, Any]:
        """The event as one line of the S3 event log (what the retrain job reads)."""
        record = self.model_dump(mode="json", exclude_none=True)
        record["received_at"] = received_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return record


class TrackedEvent(_EventFields):
    """One thing a shopper did to an item (view, click, cart, purchase, rate)."""

    item_id: Identifier
    event_type: Annotated[EventType, BeforeValidator(_known_event_type)]
    quantity: int | None = Field(default=None, ge=1, le=10_000)
    price: FiniteFloat | None = Field(default=None, ge=0, le=10_000_000)
    # Validated even when absent (validate_default), so a `rate` without it is an error on `rating`.
    rating: int | None = Field(default=None, ge=1, le=5, validate_default=True)

    # Fields of `_EventFields` come first; event_type is validated before rating.
    @field_validator("rating")
    @classmethod
    def _rating_only_with_rate(cls, value: int | None, info: ValidationInfo) -> int | None:
        # event_type is declared before rating, so it is in info.data once it is valid.
        event_type = info.data.get("event_type")
        if event_type is EventType.RATE and value is None:
            raise ValueError("rating (1-5) is required when event_type is 'rate'")
        if event_type is not None and event_type is not EventType.RATE and value is not None:
            raise ValueError("rating is only allowed when event_type is 'rate'")
        return value

    @property
    def strength(self) -> float:
        """The contract's `strength` input: rating/5 for ratings, 1.0 for everything else."""
        return self.rating / 5.0 if self.rating is not None else 1.0

    def steps(self) -> tuple[Step, ...]:
        return (Step(self.item_id, self.event_type, self.strength),)


def _no_control_characters(value: str) -> str:
    # Newlines are a review's paragraphs; any other control character (NUL, escape sequences, CR)
    # is never text a shopper typed and would corrupt whoever displays or exports it.
    for character in value:
        if unicodedata.category(character) == "Cc" and character != "\n":
            raise ValueError(
                f"must not contain control characters (U+{ord(character):04X}); newlines are allowed"
            )
    return value


# The same rule for JSON Schema readers (the OpenAPI document): no C0/C1 control character but "\n".
TEXT_PATTERN = "^[^\\u0000-\\u0009\\u000b-\\u001f\\u007f-\\u009f]*$"
_TEXT_SCHEMA: JsonDict = {"pattern": TEXT_PATTERN}
REVIEW_TEXT_MAX_LENGTH = 2000
SEARCH_QUERY_MAX_LENGTH = 200
SEARCH_MAX_CLICKS = 20


class ReviewEvent(_EventFields):
    """A shopper's review of an item: a rating and, optionally, text. Folded as a `rate` of the item
    with strength rating/5; the text goes to the event log only (not used by the model yet)."""

    event_type: Literal["review"]
    item_id: Identifier
    rating: int = Field(ge=1, le=5)
    text: (
        Annotated[
            str,
            StringConstraints(min_length=1, max_length=REVIEW_TEXT_MAX_LENGTH),
            AfterValidator(_no_control_characters),
        ]
        | None
    ) = Field(default=None, json_schema_extra=_TEXT_SCHEMA)

    @property
    def strength(self) -> float:
        return self.rating / 5.0

    def steps(self) -> tuple[Step, ...]:
        return (Step(self.item_id, EventType.RATE, self.strength),)


def _distinct(values: list[str]) -> list[str]:
    if len(set(values)) != len(values):
        raise ValueError("must not repeat an item")
    return values


class SearchEvent(_EventFields):
    """A shopper's search: the query and the results they clicked. At ingest nextpick resolves the
    query against the catalog (`nextpick.domain.search`) and keeps that resolution with the event,
    so every later fold (a replay, training) folds the same items whatever the catalog became."""

    event_type: Literal["search"]
    query: Annotated[
        str,
        StringConstraints(min_length=1, max_length=SEARCH_QUERY_MAX_LENGTH),
        AfterValidator(_no_control_characters),
    ] = Field(json_schema_extra=_TEXT_SCHEMA)
    clicked_items: Annotated[list[Identifier], AfterValidator(_distinct)] = Field(
        default_factory=list, max_length=SEARCH_MAX_CLICKS, json_schema_extra={"uniqueItems": True}
    )
    # The query's resolution, set by nextpick (never sent): None until resolved.
    _matched_items: tuple[str, ...] | None = PrivateAttr(default=None)

    @property
    def matched_items(self) -> tuple[str, ...] | None:
        return self._matched_items

    def resolved(self, matched_items: Iterable[str]) -> SearchEvent:
        """This event with the query's resolution attached (a copy: events are frozen)."""
        copy = self.model_copy()
        copy._matched_items = tuple(matched_items)
        return copy

    def steps(self) -> tuple[Step, ...]:
        """Each matched item a `view` of strength 1/M' (M' items matched), then each clicked item a
        `click`. A search that matched nothing and has no clicks folds nothing."""
        if self._matched_items is None:
            raise ValueError("a search is folded only once its query is resolved against the catalog")
        matched = self._matched_items
        views = tuple(Step(item, EventType.VIEW, 1.0 / len(matched), observed=False) for item in matched)
        return views + tuple(Step(item, EventType.CLICK, 1.0) for item in self.clicked_items)

    def log_record(self, received_at: datetime) -> dict[str, Any]:
        record = super().log_record(received_at)
        record["matched_items"] = list(self._matched_items or ())
        return record


def _event_kind(value: Any) -> str:
    event_type = value.get("event_type") if isinstance(value, dict) else getattr(value, "event_type", None)
    return event_type if event_type in (SEARCH, REVIEW) else "item"


# One shopper event: the `event_type` says which shape it has, so an error names the field that shape
# lacks (`query` for a search, `item_id` for a view). The tags are location noise (`field_path`).
ShopperEvent = Annotated[
    Annotated[TrackedEvent, Tag("item")]
    | Annotated[SearchEvent, Tag(SEARCH)]
    | Annotated[ReviewEvent, Tag(REVIEW)],
    Discriminator(_event_kind),
]
SHOPPER_EVENT: TypeAdapter[TrackedEvent | SearchEvent | ReviewEvent] = TypeAdapter(ShopperEvent)
AnyEvent = TrackedEvent | SearchEvent | ReviewEvent


def stored_event(record: dict[str, Any]) -> AnyEvent:
    """An event-log record (without `received_at`) back as the event it was, a search with the
    resolution it was folded with. Raises pydantic's ValidationError or ValueError."""
    fields = dict(record)
    matched = fields.pop("matched_items", None)
    event = SHOPPER_EVENT.validate_python(fields)
    if isinstance(event, SearchEvent):
        if not isinstance(matched, list) or not all(isinstance(i, str) for i in matched):
            raise ValueError("a search record carries its matched_items (a list of item ids)")
        return event.resolved(matched)
    if matched is not None:
        raise ValueError("only a search record carries matched_items")
    return event


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[ShopperEvent] = Field(min_length=1, max_length=100)


def _request_shape(value: Any) -> str:
    return (
        "batch"
        if isinstance(value, EventBatch) or (isinstance(value, dict) and "events" in value)
        else "single"
    )


# `POST /events` and a ShopperEvent's detail take either one event or {"events": [...]}. The tag
# makes pydantic report errors for the shape that was sent, not for both.
EventsRequest = Annotated[
    Annotated[ShopperEvent, Tag("single")] | Annotated[EventBatch, Tag("batch")],
    Discriminator(_request_shape),
]


class EventsBody(RootModel[EventsRequest]):
    """The body of `POST /events` (and a ShopperEvent's detail): one event or a batch."""

    @property
    def events(self) -> list[AnyEvent]:
        return list(self.root.events) if isinstance(self.root, EventBatch) else [self.root]

    @property
    def is_single(self) -> bool:
        return not isinstance(self.root, EventBatch)


def check_not_in_future(events: Sequence[AnyEvent], now: datetime, max_skew: timedelta) -> None:
    """Reject the whole request if any event is stamped beyond the allowed clock skew."""
    from nextpick.errors import InvalidInput

    limit = now + max_skew
    for position, event in enumerate(events):
        if event.timestamp > limit:
            field = "timestamp" if len(events) == 1 else f"events[{position}].timestamp"
            raise InvalidInput(field, f"is more than {int(max_skew.total_seconds())} s in the future")


class ItemFields(BaseModel):
    """A catalog item's mutable fields (`PUT /items/{item_id}` body)."""

    model_config = ConfigDict(extra="forbid")

    category: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    price: FiniteFloat = Field(ge=0, le=10_000_000)
    stock: int = Field(ge=0, le=1_000_000_000)
    title: Annotated[str, StringConstraints(max_length=256)] | None = None
    attributes: dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], ContextValue] = Field(
        default_factory=dict, max_length=50
    )


class CatalogItem(ItemFields):
    item_id: Identifier

    @property
    def in_stock(self) -> bool:
        return self.stock > 0


class CatalogBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    items: list[CatalogItem] = Field(min_length=1, max_length=100)


def _catalog_shape(value: Any) -> str:
    return (
        "batch"
        if isinstance(value, CatalogBatch) or (isinstance(value, dict) and "items" in value)
        else "single"
    )


CatalogRequest = Annotated[
    Annotated[CatalogItem, Tag("single")] | Annotated[CatalogBatch, Tag("batch")],
    Discriminator(_catalog_shape),
]


class CatalogBody(RootModel[CatalogRequest]):
    """A CatalogItem bus event's detail: one item or a batch."""

    @property
    def items(self) -> list[CatalogItem]:
        return self.root.items if isinstance(self.root, CatalogBatch) else [self.root]


class Because(BaseModel):
    """One of the shopper's own items behind a pick, and its share of the pick's positive contributions
    (docs/explanations.md)."""

    item_id: str
    share: float


class Recommendation(BaseModel):
    item_id: str
    score: float
    # The name of the promotion (docs/rules.md) that gave the item its place; left out of every dump for
    # every other pick, so a page can badge promoted items and answers without promotions do not change.
    promotion: str | None = Field(default=None, exclude_if=lambda value: value is None)
    # Why, with `?explain=true` (docs/explanations.md): left out of every answer that did not ask.
    because: list[Because] | None = Field(default=None, exclude_if=lambda value: value is None)


# Locations pydantic (and Powertools' validation) prefix to a field path that mean nothing to a caller:
# where the value came from and which request shape was taken, before the first field; and which event
# shape (`ShopperEvent`'s tags) was taken, right after the single-event shape or an event's position.
_SHAPE_NOISE = {"body", "single", "batch", "detail"}
_LEADING_NOISE = _SHAPE_NOISE | {"query", "path"}
_EVENT_SHAPE_TAGS = {"item", SEARCH, REVIEW}
# A location part outside the contract's field names is a key the caller chose (a `context` or
# `attributes` key, an unknown field, pydantic's "[key]" marker): what errors are logged as names
# it `*` instead, so nothing a caller wrote reaches a log or a trace (docs/operations.md, "Personal
# data in logs and traces").
CONTRACT_FIELD_NAMES = frozenset(
    name
    for model in (TrackedEvent, SearchEvent, ReviewEvent, EventBatch, ItemFields, CatalogItem, CatalogBatch)
    for name in model.model_fields
) | {"matched_items"}
REDACTED_KEY = "*"


def _is_noise(part: str, path: str, previous: Any, length: int) -> bool:
    if path == "" and part in _LEADING_NOISE:
        # "query" and "path" are where a value came from only as the first part ("query", "k"), and
        # name themselves when alone; after a shape tag, "query" is a search's field.
        return part in _SHAPE_NOISE or (previous is None and length > 1)
    return part in _EVENT_SHAPE_TAGS and (previous == "single" or isinstance(previous, int))


def field_path(loc: tuple[Any, ...] | list[Any], known: frozenset[str] | None = None) -> str:
    """('body', 'batch', 'events', 2, 'event_type') -> 'events[2].event_type'. With `known`, a name
    outside it becomes `*` (positions stay: pydantic counts them, the caller does not write them)."""
    path = ""
    previous: Any = None
    for part in loc:
        if isinstance(part, int):
            # A bare position (no field before it) is a character offset in an unparsable body.
            path += f"[{part}]" if path else ""
        elif not _is_noise(part, path, previous, len(loc)):
            name = part if known is None or part in known else REDACTED_KEY
            path += f".{name}" if path else str(name)
        previous = part
    return path or "body"


def describe_errors(errors: list[Any], known: frozenset[str] | None = None) -> list[dict[str, str]]:
    """Pydantic errors as [{field, message}], one per field, without echoing the input back; with
    `known`, field names outside it are redacted (`field_path`), for what is logged."""
    messages: dict[str, list[str]] = {}
    for error in errors:
        message = str(error.get("msg") or error.get("type"))
        found = messages.setdefault(field_path(error.get("loc", ()), known), [])
        if message not in found:
            found.append(message)
    return [{"field": field, "message": "; ".join(found)} for field, found in messages.items()]
