"""The impression log (docs/attribution.md): each answer's `Impression` as one line of the event log,
sent straight to the event log's Firehose stream, so `nextpick report` and the retrain read one log.

Why Firehose directly and not the state outbox: GET answers write no DynamoDB state, and an outbox
write per answer would cost one conditional PutItem (and a stream record) per page view.

Best-effort on the request path: one PutRecordBatch per answer, tried once (SEND_ATTEMPTS = 1, no
backoff sleep) on a client of its own with one attempt and short timeouts
(`adapters.BEST_EFFORT_CLIENT_CONFIG`: a Firehose that hangs costs an answer at most ~1.5 s, where the
shared client could hold it ~28 s), and any failure is logged without personal data (the error's type
and the number of impressions, never a user or item id) and counted as the `ImpressionsLost` metric
(the ImpressionsLostAlarm watches it); the answer is never failed for it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from nextpick import adapters
from nextpick.adapters.firehose_log import FirehoseEventLog
from nextpick.domain.impressions import Impression

logger = Logger(child=True)
# Powertools metrics instances share one metric set: the handler that answered flushes them.
metrics = Metrics(namespace="Nextpick")

# One try per answer: a retry with backoff would add up to 700 ms to the answer for a log line.
SEND_ATTEMPTS = 1


def impression_line(impression: Impression) -> str:
    """The log line: compact JSON, as every other writer of the log writes (domain/erasure.py reads
    a line it cannot parse by that spelling)."""
    return json.dumps(impression.log_record(), separators=(",", ":"))


class FirehoseImpressionLog:
    """`ImpressionLog` on the event log's Firehose stream."""

    def __init__(self, stream_name: str, client: Any = None) -> None:
        self._log = FirehoseEventLog(
            stream_name, client, attempts=SEND_ATTEMPTS, client_config=adapters.BEST_EFFORT_CLIENT_CONFIG
        )

    def record(self, impressions: Sequence[Impression]) -> None:
        if not impressions:
            return
        try:
            self._log.append([impression_line(i) for i in impressions])
        except Exception as error:
            # Anything (throttling, a broken deployment, a bug): the answer stands without its record.
            logger.warning(
                "impressions not logged",
                extra={"error": type(error).__name__, "impressions": len(impressions)},
            )
            metrics.add_metric(name="ImpressionsLost", unit=MetricUnit.Count, value=len(impressions))
        else:
            metrics.add_metric(name="ImpressionsLogged", unit=MetricUnit.Count, value=len(impressions))
