"""Rejected stream records (not JSON, not valid events) parked in an SQS queue for an operator, so a
poison record never blocks its shard and is never silently dropped (docs/kinesis.md)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nextpick.adapters import LazyClient
from nextpick.errors import StorageUnavailable

# SQS's message limit is 256 KiB. A Kinesis record may hold 1 MiB: a record whose base64 data would not
# fit with the message's other fields (~1 KiB) is parked without it; its sequence number finds it in
# the stream for as long as the stream keeps it (24 h by default).
MAX_PARKED_DATA_CHARS = 255 * 1024


class SqsRejectedRecords:
    def __init__(self, queue_url: str, client: Any = None) -> None:
        self._queue_url = queue_url
        self._client = LazyClient("sqs", client)

    def park(self, record: dict[str, Any]) -> None:
        """Send one rejected record (`data` base64, as Kinesis delivered it); raises StorageUnavailable."""
        message = dict(record)
        data = message.get("data")
        if isinstance(data, str) and len(data) > MAX_PARKED_DATA_CHARS:
            message["data"] = None
            message["data_omitted"] = f"{len(data)} base64 characters, more than an SQS message holds"
        try:
            self._client.get().send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(message))
        except (BotoCoreError, ClientError) as error:
            raise StorageUnavailable("the rejected-records queue could not be written") from error
