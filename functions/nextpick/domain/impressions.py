"""What an answer was: the impression record every served (and every shadow-scored) list becomes, and
the id that ties later clicks and purchases back to it (issue 13, docs/attribution.md).

The one definition of the impression's shape: serving writes it, `nextpick report` and the variants
code read it; none keeps a copy."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

# The variant every answer belongs to when no A/B test is configured, and the control of every test.
CONTROL_VARIANT = "control"

# 128 random bits as 32 lowercase hex digits: unguessable, fixed width, and cheap to validate, so an
# event that cites one can be refused with a 4xx naming `recommendation_id` when it is malformed.
RECOMMENDATION_ID_PATTERN = r"^[0-9a-f]{32}$"
_RECOMMENDATION_ID = re.compile(RECOMMENDATION_ID_PATTERN)

# The record's `record_type` in the event log: shopper events have none, an impression says so.
IMPRESSION_RECORD = "impression"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def is_impression_record(raw: Mapping[str, Any]) -> bool:
    """Whether an event-log record is an impression (not a shopper event, not a tombstone)."""
    return raw.get("record_type") == IMPRESSION_RECORD


def new_recommendation_id() -> str:
    return secrets.token_hex(16)


def is_recommendation_id(value: str) -> bool:
    return bool(_RECOMMENDATION_ID.match(value))


class Surface(StrEnum):
    """Which route's answer an impression records."""

    USER = "user"  # GET /users/{user_id}/recommendations
    EVENTS = "events"  # the recommendations of a POST /events (or bus) answer
    CART = "cart"  # POST /recommendations/cart
    SIMILAR = "similar"  # GET /items/{item_id}/similar
    BOUGHT_TOGETHER = "bought_together"  # GET /items/{item_id}/bought-together
    TRENDING = "trending"  # GET /trending


@dataclass(frozen=True)
class Impression:
    """One list shown (or, `shadow`, scored and never shown) to one shopper or anonymous visitor."""

    recommendation_id: str
    surface: Surface
    user_id: str | None
    model_version: str | None
    variant: str
    items: Sequence[str]
    served_at: datetime
    # A shadow model's picks for the same request: logged for comparison, never served.
    shadow: bool = False
    # The item an item route answered for (similar, bought together); None elsewhere.
    item_id: str | None = None
    context: dict[str, str] = field(default_factory=dict)

    def log_record(self) -> dict[str, Any]:
        """The impression as one record of the event log."""
        record: dict[str, Any] = {
            "record_type": IMPRESSION_RECORD,
            "recommendation_id": self.recommendation_id,
            "surface": self.surface.value,
            "model_version": self.model_version,
            "variant": self.variant,
            "items": list(self.items),
            "shadow": self.shadow,
            "served_at": _iso(self.served_at),
            # The time every reader of the log places a line by (the erasure rule, domain/erasure.py,
            # and de-duplication): for an impression, when it was served.
            "received_at": _iso(self.served_at),
        }
        if self.user_id is not None:
            record["user_id"] = self.user_id
        if self.item_id is not None:
            record["item_id"] = self.item_id
        if self.context:
            record["context"] = dict(self.context)
        return record


class ItemPageAnswer(Protocol):
    """An item route's answer (similar items, bought together): its list is `items`."""

    @property
    def recommendation_id(self) -> str: ...
    @property
    def item_id(self) -> str: ...
    @property
    def model_version(self) -> str | None: ...
    @property
    def variant(self) -> str: ...
    @property
    def items(self) -> Sequence[Any]: ...


def item_page_impression(
    answer: ItemPageAnswer, surface: Surface, user_id: str | None, served_at: datetime
) -> Impression:
    """An item route's answer as an impression: its list, the item it answered for, and the shopper
    the caller acted for (a shopper token's user; None for the shop's server or admin)."""
    return Impression(
        recommendation_id=answer.recommendation_id,
        surface=surface,
        user_id=user_id,
        model_version=answer.model_version,
        variant=answer.variant,
        items=[pick.item_id for pick in answer.items],
        served_at=served_at,
        item_id=answer.item_id,
    )
