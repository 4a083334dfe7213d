"""The S3 event log as compaction sees it (issue 9): versioned objects under `events/` and
`events-errors/` (Firehose's Prefix and ErrorOutputPrefix in template.yaml), and the compaction's
checkpoint under `runs/compaction/`.

Every read names the version it lists, and every delete names a version id (DeleteObject with
VersionId): in the versioned bucket a plain delete or overwrite would only hide the erased lines
behind a delete marker or a newer version. Only compaction ever writes to an existing log key
(Firehose names every delivery uniquely), and one compaction runs at a time (reserved concurrency 1),
so nothing can slip in between a rewrite and the deletion of the versions it replaces.

IAM (template.yaml, EventLogCompactionFunction): s3:ListBucket and s3:ListBucketVersions on the
bucket; s3:GetObjectVersion, s3:PutObject and s3:DeleteObjectVersion on `events/*` and
`events-errors/*`; s3:GetObject and s3:PutObject on `runs/compaction/*`."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nextpick.adapters import LazyClient, error_code, raise_translated
from nextpick.domain.compaction import LogObject

LOG_PREFIXES = ("events/", "events-errors/")
CHECKPOINT_KEY = "runs/compaction/checkpoint.json"
# A version listed a moment ago that is gone now: expired by the bucket's lifecycle meanwhile.
_GONE = frozenset({"NoSuchKey", "NoSuchVersion", "404"})


class S3EventLog:
    """`EventLogObjects` (domain/compaction.py) on the model bucket."""

    def __init__(
        self,
        bucket: str,
        client: Any = None,
        prefixes: Sequence[str] = LOG_PREFIXES,
        checkpoint_key: str = CHECKPOINT_KEY,
    ) -> None:
        self._bucket = bucket
        self._client = LazyClient("s3", client)
        self._prefixes = tuple(prefixes)
        self._checkpoint_key = checkpoint_key

    def list_objects(self) -> list[LogObject]:
        objects: list[LogObject] = []
        for prefix in self._prefixes:
            objects.extend(self._list_prefix(prefix))
        return sorted(objects, key=lambda o: o.key)

    def _list_prefix(self, prefix: str) -> list[LogObject]:
        current: dict[str, dict[str, Any]] = {}
        older: dict[str, list[str]] = {}
        deleted: set[str] = set()
        try:
            pages = (
                self._client.get()
                .get_paginator("list_object_versions")
                .paginate(Bucket=self._bucket, Prefix=prefix)
            )
            for page in pages:
                for version in page.get("Versions", []):
                    if version["IsLatest"]:
                        current[version["Key"]] = version
                    else:
                        older.setdefault(version["Key"], []).append(version["VersionId"])
                for marker in page.get("DeleteMarkers", []):
                    if marker["IsLatest"]:
                        deleted.add(marker["Key"])
        except (ClientError, BotoCoreError) as e:
            raise_translated(e, f"s3://{self._bucket}/{prefix}")
        # A key whose latest version is a delete marker (expired by the lifecycle rule) has no
        # current object; the rule's NoncurrentVersionExpiration removes its old versions.
        return [
            LogObject(
                key=key,
                version_id=str(version.get("VersionId") or "null"),
                last_modified=version["LastModified"].astimezone(UTC),
                size=int(version.get("Size", 0)),
                older_versions=tuple(older.get(key, ())),
            )
            for key, version in current.items()
            if key not in deleted and not key.endswith("/")
        ]

    def read(self, obj: LogObject) -> bytes | None:
        try:
            body: bytes = (
                self._client.get()
                .get_object(Bucket=self._bucket, Key=obj.key, VersionId=obj.version_id)["Body"]
                .read()
            )
        except ClientError as e:
            if error_code(e) in _GONE:
                return None
            raise_translated(e, f"s3://{self._bucket}/{obj.key}")
        except BotoCoreError as e:
            raise_translated(e, f"s3://{self._bucket}/{obj.key}")
        return body

    def replace(self, obj: LogObject, body: bytes) -> None:
        try:
            self._client.get().put_object(Bucket=self._bucket, Key=obj.key, Body=body)
        except (ClientError, BotoCoreError) as e:
            raise_translated(e, f"s3://{self._bucket}/{obj.key}")
        self._delete_versions(obj.key, (obj.version_id, *obj.older_versions))

    def remove(self, obj: LogObject) -> None:
        self._delete_versions(obj.key, (obj.version_id, *obj.older_versions))

    def delete_older_versions(self, obj: LogObject) -> None:
        self._delete_versions(obj.key, obj.older_versions)

    def _delete_versions(self, key: str, version_ids: Sequence[str]) -> None:
        for version_id in version_ids:
            try:
                self._client.get().delete_object(Bucket=self._bucket, Key=key, VersionId=version_id)
            except (ClientError, BotoCoreError) as e:
                raise_translated(e, f"s3://{self._bucket}/{key}")

    def read_checkpoint(self) -> Mapping[str, Any] | None:
        try:
            body = self._client.get().get_object(Bucket=self._bucket, Key=self._checkpoint_key)["Body"].read()
        except ClientError as e:
            if error_code(e) in _GONE:
                return None
            raise_translated(e, f"s3://{self._bucket}/{self._checkpoint_key}")
        except BotoCoreError as e:
            raise_translated(e, f"s3://{self._bucket}/{self._checkpoint_key}")
        checkpoint: Mapping[str, Any] = json.loads(body)
        return checkpoint

    def write_checkpoint(self, checkpoint: Mapping[str, Any]) -> None:
        try:
            self._client.get().put_object(
                Bucket=self._bucket,
                Key=self._checkpoint_key,
                Body=json.dumps(checkpoint, indent=1).encode(),
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as e:
            raise_translated(e, f"s3://{self._bucket}/{self._checkpoint_key}")
