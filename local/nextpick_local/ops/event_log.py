"""`nextpick migrate-event-log`: the one-off conversion of the JSON-lines event log written before
issue 14 into Parquet objects, so Athena (which reads only Parquet under `events/`) sees all of it.

Every current object under `events/` that is not Parquet is converted to a Parquet object with the
log's columns (`nextpick_training.parquet_log`), written next to it in the same partition as
`<key>.parquet`, and then every version of the JSON object is deleted by version id (the bucket is
versioned: a plain delete would keep the lines in a noncurrent version, which erasure forbids).
Re-running is safe: a crash after the write and before the delete converts the object again to the
same key, and the window query de-duplicates per `(user_id, event_id)` anyway. `--dry-run` only
counts. Run it once after deploying issue 14, before the first retrain on Athena; until then the
retrain's DuckDB reader (`EVENT_LOG_ENGINE=duckdb`) reads both formats.

IAM for the operator: s3:ListBucket, s3:ListBucketVersions on the bucket; s3:GetObject, s3:PutObject,
s3:DeleteObjectVersion on `events/*`."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from typing import Any

from nextpick_local.ops.target import names as target

PREFIX = "events/"
PARQUET_SUFFIX = ".parquet"


@dataclass
class Migration:
    objects: int = 0
    converted: int = 0
    already_parquet: int = 0
    empty: int = 0
    records: int = 0
    versions_deleted: int = 0


def migrate(s3: Any, bucket: str, prefix: str = PREFIX, dry_run: bool = False) -> Migration:
    from nextpick_training.parquet_log import is_parquet, json_lines_to_parquet, parquet_rows

    result = Migration()
    keys = [
        entry["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for entry in page.get("Contents", [])
        if not entry["Key"].endswith("/")
    ]
    for key in keys:
        result.objects += 1
        if key.endswith(PARQUET_SUFFIX):
            result.already_parquet += 1
            continue
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        if is_parquet(body):
            result.already_parquet += 1
            continue
        converted = json_lines_to_parquet(body)
        if converted is None:
            result.empty += 1
        else:
            result.converted += 1
            result.records += len(parquet_rows(converted))
        if dry_run:
            continue
        if converted is not None:
            s3.put_object(Bucket=bucket, Key=key + PARQUET_SUFFIX, Body=converted)
        result.versions_deleted += _delete_every_version(s3, bucket, key)
    return result


def _delete_every_version(s3: Any, bucket: str, key: str) -> int:
    deleted = 0
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        for version in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            if version["Key"] == key:
                s3.delete_object(Bucket=bucket, Key=key, VersionId=version["VersionId"])
                deleted += 1
    return deleted


def migrate_event_log(args: argparse.Namespace) -> int:
    names = target(args)  # for the local stack, also points this process's boto3 at its stand-in
    import boto3

    result = migrate(boto3.client("s3"), names.model_bucket, dry_run=args.dry_run)
    print(json.dumps({"dry_run": args.dry_run, **asdict(result)}, indent=2))
    return 0
