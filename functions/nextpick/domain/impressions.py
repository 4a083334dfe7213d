"""What an answer was: the impression record every served (and every shadow-scored) list becomes, and
the id that ties later clicks and purchases back to it (issue 13, docs/attribution.md).

The one definition of the impression's shape: serving writes it, `nextpick report` and the variants
code read it; none keeps a copy."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

# The variant every answer belongs to when no A/B test is configured, and the control of every test.
CONTROL_VARIANT = "control"

# 128 random bits as 32 lowercase hex digits: unguessable, fixed width, and cheap to validate, so an
# event that cites one can be refused with a 4xx naming `recommendation_id` when it is malformed.
RECOMMENDATION_ID_PATTERN = r"^[0-9a-f]{32}$"
_RECOMMENDATION_ID = re.compile(RECOMMENDATION_ID_PATTERN)

# The record's `record_type` in the event log: shopper events have none, an impression says so.
IMPRESSION_RECORD = "impression"


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
            "served_at": self.served_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        }
        if self.user_id is not None:
            record["user_id"] = self.user_id
        if self.item_id is not None:
            record["item_id"] = self.item_id
        if self.context:
            record["context"] = dict(self.context)
        return record
