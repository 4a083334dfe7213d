"""`nextpick report` (docs/attribution.md): the online metrics of the last days, per variant and per
model version, computed from the event log by the same code as the scheduled OnlineReportFunction
(nextpick.domain.report), and printed as markdown (or JSON); `--write` also stores it under
`reports/` in the model bucket as the scheduled run does."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from nextpick.adapters.s3_report import S3ReportStore
from nextpick.domain.report import online_report, render_markdown
from nextpick_local.ops.target import names as target
from nextpick_training.report_handler import decode_log_object


def report_of(s3: Any, bucket: str, days: int, now: datetime | None = None) -> dict[str, Any]:
    """The report over the last `days` days of the log in `bucket`."""
    now = now or datetime.now(UTC)
    start = now - timedelta(days=days)
    return online_report(
        S3ReportStore(bucket, s3, decode=decode_log_object).read_report_lines(start), start, now, now
    )


def report(args: argparse.Namespace) -> int:
    names = target(args)  # for the local stack, also points this process's boto3 at its stand-in
    import boto3

    s3 = boto3.client("s3")
    found = report_of(s3, names.model_bucket, args.days)
    markdown = render_markdown(found)
    print(json.dumps(found, indent=2) if args.json else markdown)
    if args.write:
        now = datetime.now(UTC)
        S3ReportStore(names.model_bucket, s3).write_report(found, markdown, now.strftime("%Y-%m-%d"))
    return 0
