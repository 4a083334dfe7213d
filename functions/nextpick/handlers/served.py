"""Every answer's impression, logged once per answer by the route that answered (docs/attribution.md):
one helper for api.py, api_items.py and api_together.py, so no route builds its own."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from nextpick.domain.impressions import Impression
from nextpick.handlers import wiring


def log_impressions(make: Callable[[datetime], Sequence[Impression]]) -> None:
    """Record the impressions `make` builds for the serving time; never raises (the adapter counts
    and logs a failure, ports.ImpressionLog)."""
    wiring.impression_log().record(make(datetime.now(UTC)))
