"""The event log: JSON records into a Firehose stream, which converts them to Parquet and batches them
into S3 (`events/` in the bucket) where the retrain job queries them (issue 14, docs/event-log.md).

One log record per Firehose record: record-format conversion reads each Firehose record as ONE JSON
document (a record holding several lines would lose all but the first, or fail conversion). Firehose
bills ingestion (and conversion) in 5 KB steps per record, so a ~300-byte event is billed as 5 KB:
about $0.22 per million events at list prices, against ~$0.01 when lines were packed into 1,000 KiB
records (docs/event-log.md, "Cost of one record per event"). Records stay newline-terminated, so an
object Firehose could not convert (`events-errors/`) is still JSON lines. Delivery is at least once (a partly failed batch is re-sent record by record, a failed stream batch is retried
by Lambda), so the reader de-duplicates by `(user_id, event_id)`."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from nextpick.adapters import LazyClient, raise_translated
from nextpick.errors import StorageUnavailable

# PutRecordBatch's limits per call, and Firehose's limit per record.
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 4 * 1024 * 1024
MAX_RECORD_BYTES = 1000 * 1024
# Records Firehose turned down (ServiceUnavailableException: throttled) are re-sent after 100 ms,
# 200 ms, 400 ms (full jitter); whatever is still refused after that fails the append.
SEND_ATTEMPTS = 4
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_CAP_SECONDS = 1.0


class FirehoseEventLog:
    def __init__(
        self,
        stream_name: str,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = SEND_ATTEMPTS,
        client_config: Config | None = None,
    ) -> None:
        self._stream_name = stream_name
        self._client = LazyClient("firehose", client, client_config)
        self._sleep = sleep
        # Tries per chunk of refused records; the impression log (request path) takes one.
        self._attempts = attempts

    def append(self, records: Sequence[str]) -> None:
        """Send every record (one JSON document each, one Firehose record each) to the stream; raises
        StorageUnavailable if some could not be delivered, in which case any of them may or may not have
        been. (A record over MAX_RECORD_BYTES is refused by Firehose like any other: an event record is
        at most a few KB, a 2,000-character review included.)"""
        lines = [record.encode() if record.endswith("\n") else f"{record}\n".encode() for record in records]
        for chunk in _chunks(lines):
            self._send(chunk)

    def _send(self, chunk: list[bytes]) -> None:
        pending = chunk
        errors: set[str] = set()
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(
                    random.uniform(0, min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))
                )
            try:
                response = self._client.get().put_record_batch(
                    DeliveryStreamName=self._stream_name, Records=[{"Data": data} for data in pending]
                )
            except (ClientError, BotoCoreError) as e:
                raise_translated(e, f"Firehose stream {self._stream_name}")
            if not response.get("FailedPutCount"):
                return
            # RequestResponses is positional: entry i answers record i of this call.
            failed = [
                (data, answer.get("ErrorCode"))
                for data, answer in zip(pending, response["RequestResponses"], strict=True)
                if answer.get("ErrorCode")
            ]
            pending = [data for data, _ in failed]
            errors = {str(code) for _, code in failed}
            if not pending:
                return
        raise StorageUnavailable(
            f"Firehose stream {self._stream_name}: {len(pending)} of {len(chunk)} records refused after "
            f"{self._attempts} attempts ({', '.join(sorted(errors))})"
        )


def _chunks(data: list[bytes]) -> Iterator[list[bytes]]:
    """Consecutive slices within PutRecordBatch's record-count and total-size limits."""
    chunk: list[bytes] = []
    size = 0
    for record in data:
        if chunk and (len(chunk) == MAX_BATCH_RECORDS or size + len(record) > MAX_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(record)
        size += len(record)
    if chunk:
        yield chunk
