"""The report's side of the model bucket (docs/attribution.md): the event log's lines read, the
report written under `reports/`.

`read_report_lines` is the one function the report reads the log through (the CLI and the scheduled
job alike), so the log's format can change behind it. It skips, without downloading, every object
last written more than a day before the window's start: Firehose delivers within its 300 s buffer,
so such an object holds no line of the window; a tombstone in it erases only lines received before it,
which are older still. Compaction rewrites make objects newer, never older (read, not skipped).

IAM (template.yaml, OnlineReportFunction): s3:ListBucket on the bucket, s3:GetObject on `events/*`,
s3:PutObject on `reports/*`."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nextpick.adapters import LazyClient, raise_translated
from nextpick.domain.erasure import log_text

LOG_PREFIX = "events/"
REPORT_PREFIX = "reports/"
LATEST_KEY = f"{REPORT_PREFIX}latest.json"
# Firehose's buffer (300 s) with room to spare: an object written this long before `start` is older
# than every line of the window.
DELIVERY_SLACK = timedelta(days=1)


class S3ReportStore:
    def __init__(
        self,
        bucket: str,
        client: Any = None,
        log_prefix: str = LOG_PREFIX,
        decode: Callable[[bytes], list[bytes]] | None = None,
    ) -> None:
        self._bucket = bucket
        self._client = LazyClient("s3", client)
        self._log_prefix = log_prefix
        # How one log object becomes lines: JSON lines as they are by default; the deployed log is
        # Parquet (issue 14), decoded by the retrain image's DuckDB (nextpick_training.report_handler).
        self._decode = decode or log_lines

    def read_report_lines(self, start: datetime) -> Iterator[bytes]:
        """Every line of every log object that can hold a line received at or after `start`."""
        oldest = start - DELIVERY_SLACK
        try:
            pages = (
                self._client.get()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self._bucket, Prefix=self._log_prefix)
            )
            keys = [
                entry["Key"]
                for page in pages
                for entry in page.get("Contents", [])
                if not entry["Key"].endswith("/") and entry["LastModified"] >= oldest
            ]
            for key in sorted(keys):
                body: bytes = self._client.get().get_object(Bucket=self._bucket, Key=key)["Body"].read()
                yield from self._decode(body)
        except (ClientError, BotoCoreError) as e:
            raise_translated(e, f"s3://{self._bucket}/{self._log_prefix}")

    def write_report(self, report: dict[str, Any], markdown: str, day: str) -> list[str]:
        """The report as `reports/<day>/report.json` and `.md`, and `reports/latest.json` (what the
        storefront's status view and `nextpick report --latest` read); the keys written."""
        body = json.dumps(report, indent=1).encode()
        writes = (
            (f"{REPORT_PREFIX}{day}/report.json", body, "application/json"),
            (f"{REPORT_PREFIX}{day}/report.md", markdown.encode(), "text/markdown"),
            (LATEST_KEY, body, "application/json"),
        )
        for key, data, content_type in writes:
            try:
                self._client.get().put_object(
                    Bucket=self._bucket, Key=key, Body=data, ContentType=content_type
                )
            except (ClientError, BotoCoreError) as e:
                raise_translated(e, f"s3://{self._bucket}/{key}")
        return [key for key, _, _ in writes]


def log_lines(body: bytes) -> list[bytes]:
    """The lines of one log object (gzip-compressed objects are accepted, as every reader does)."""
    return log_text(body).splitlines()
