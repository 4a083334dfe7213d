"""The catalog availability artifact in S3 (docs/catalog-artifact.md): the one definition of its layout
and of how it is read (every serving container) and written (CatalogArtifactFunction only); its formats
are `catalog_artifact_format`.

    catalog/current.json                               the pointer: version N, the latest full snapshot,
                                                       the last SNAPSHOT_EVERY deltas (a few KB)
    catalog/history/snapshots/<version>-<token>.json.gz  every item, as columns over its own item order
    catalog/history/deltas/<version>-<token>.json.gz     the rows version N changed (from N - 1)

A container reads the pointer every CATALOG_REFRESH_SECONDS (conditionally on its ETag: 304 when nothing
changed) and fetches only the deltas after the version it holds; a cold one reads the snapshot and the
deltas after it (never more than SNAPSHOT_EVERY - 1). History objects are write-once (If-None-Match) with a
random token in the key, so a retried write after a lost pointer swap never collides; the pointer moves
only by compare-and-swap (If-Match), so two writers can never both make version N + 1."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nextpick.adapters import LazyClient, error_code
from nextpick.adapters.catalog_artifact_format import (
    ArtifactCorrupt,
    ArtifactPointer,
    ObjectRef,
    decode_delta,
    decode_snapshot,
    encode_delta,
    encode_snapshot,
)
from nextpick.domain.catalog import CatalogSnapshot
from nextpick.domain.catalog_changes import CatalogChanges, apply_changes
from nextpick.errors import NotFound, StorageUnavailable, VersionConflict

__all__ = ["ArtifactCorrupt", "ArtifactState", "CatalogArtifact", "Reads"]

DEFAULT_PREFIX = "catalog/"
POINTER_NAME = "current.json"
# Everything under it is write-once and expires after 7 days (the bucket's lifecycle rule); the daily
# reconciliation rewrites the snapshot, so the one the pointer names is never older than a day.
HISTORY_DIR = "history/"
# A full snapshot at least every 50 versions: a cold container applies at most 49 deltas, and the pointer
# lists the last 50 (~4 KB), so a warm container 49 versions behind still only fetches deltas.
SNAPSHOT_EVERY = 50

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_NOT_MODIFIED_CODES = frozenset({"304", "NotModified"})
_CONFLICT_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


# ------------------------------------------------------------------------------------------ the store


@dataclass(frozen=True)
class ArtifactState:
    """The artifact at one version, as read (or just written) by this container."""

    version: int
    snapshot: CatalogSnapshot
    pointer: ArtifactPointer
    etag: str | None


@dataclass(frozen=True)
class Reads:
    """What `CatalogArtifact` fetched, for the read-cost benchmark and tests."""

    pointer_checks: int = 0
    not_modified: int = 0
    snapshots: int = 0
    deltas: int = 0
    bytes: int = 0


class CatalogArtifact:
    """The artifact in one bucket: `refresh()` brings this container to the pointer's version,
    fetching only what changed; `commit()` (the writer) makes the next version."""

    def __init__(self, bucket: str, prefix: str = DEFAULT_PREFIX, client: Any = None) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._client = LazyClient("s3", client)
        self._state: ArtifactState | None = None
        self.reads = Reads()

    @property
    def pointer_key(self) -> str:
        return f"{self._prefix}{POINTER_NAME}"

    @property
    def state(self) -> ArtifactState | None:
        return self._state

    # --- reading ------------------------------------------------------------------------------------

    def refresh(self) -> ArtifactState | None:
        """The artifact at the pointer's version (None: nothing was ever written). Raises
        StorageUnavailable (ArtifactCorrupt for objects that do not decode); the state held stays."""
        held = self._state
        conditions = {"IfNoneMatch": held.etag} if held is not None and held.etag else {}
        try:
            response = self._get(self.pointer_key, **conditions)
        except NotFound:
            self._count(pointer_checks=1)
            return None
        except StorageUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and error_code(cause) in _NOT_MODIFIED_CODES:
                self._count(pointer_checks=1, not_modified=1)
                return held
            raise
        self._count(pointer_checks=1, bytes=len(response["Body"]))
        pointer = ArtifactPointer.decode(response["Body"])
        self._state = self._advance(held, pointer, response.get("ETag"))
        return self._state

    def _advance(
        self, held: ArtifactState | None, pointer: ArtifactPointer, etag: str | None
    ) -> ArtifactState:
        if held is not None and held.pointer.lineage != pointer.lineage:
            held = None  # another artifact altogether: read it in full
        if held is not None and held.version == pointer.version:
            return ArtifactState(held.version, held.snapshot, pointer, etag)
        # Deltas only forward: a pointer behind the version held (an older pointer restored by hand from
        # the bucket's versions) is read in full.
        if held is not None and pointer.snapshot.version <= held.version < pointer.version:
            needed = pointer.deltas_after(held.version)
            if needed is not None:
                try:
                    return ArtifactState(pointer.version, self._apply(held.snapshot, needed), pointer, etag)
                except NotFound:
                    pass  # expired under a long-idle container: read the snapshot instead
        snapshot_ref = pointer.snapshot
        snapshot = decode_snapshot(self._fetch(snapshot_ref.key, "snapshots"), snapshot_ref.version)
        needed = pointer.deltas_after(snapshot_ref.version)
        if needed is None:
            raise ArtifactCorrupt(
                f"the catalog pointer lacks deltas after its snapshot {snapshot_ref.version}"
            )
        try:
            return ArtifactState(pointer.version, self._apply(snapshot, needed), pointer, etag)
        except NotFound as exc:
            raise ArtifactCorrupt(f"a catalog delta the pointer names is missing: {exc}") from exc

    def _apply(self, snapshot: CatalogSnapshot, deltas: Sequence[ObjectRef]) -> CatalogSnapshot:
        for ref in deltas:
            changes = decode_delta(self._fetch(ref.key, "deltas"), ref.version)
            snapshot = apply_changes(snapshot, changes, ref.version)
        return snapshot

    def _fetch(self, key: str, kind: str) -> bytes:
        body: bytes = self._get(key)["Body"]
        self._count(bytes=len(body), **{kind: 1})
        return body

    def _get(self, key: str, **conditions: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = self._client.get().get_object(
                Bucket=self._bucket, Key=key, **conditions
            )
            response["Body"] = response["Body"].read()
        except ClientError as exc:
            code = error_code(exc)
            if code in _MISSING_CODES:
                raise NotFound(f"s3://{self._bucket}/{key} is missing") from exc
            raise StorageUnavailable(f"s3://{self._bucket}/{key}: {code}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"s3://{self._bucket}/{key}: {exc}") from exc
        return response

    def _count(self, **added: int) -> None:
        current = self.reads
        self.reads = Reads(**{k: getattr(current, k) + added.get(k, 0) for k in Reads.__dataclass_fields__})

    # --- writing (CatalogArtifactFunction) ----------------------------------------------------------

    def commit(
        self,
        changes: CatalogChanges,
        full: CatalogSnapshot | None = None,
        force_snapshot: bool = False,
    ) -> ArtifactState:
        """Version N + 1 with `changes` (nothing when there are none and no snapshot is forced), on top
        of the state `refresh()` just read. Without a state, `full` becomes version 1. Raises
        VersionConflict when another writer moved the pointer meanwhile (retry from `refresh()`)."""
        held = self._state
        if held is None:
            if full is None:
                raise ValueError("the first version needs the full catalog")
            snapshot = replace_id(full, 1)
            ref = ObjectRef(1, self._create("snapshots", 1, encode_snapshot(snapshot, 1)))
            return self._swap(ArtifactPointer(1, ref, lineage=secrets.token_hex(8)), snapshot, None)
        if not changes and not force_snapshot:
            return held
        version = held.version + 1 if changes else held.version
        snapshot = apply_changes(held.snapshot, changes, version) if changes else held.snapshot
        deltas = held.pointer.deltas
        if changes:
            delta = ObjectRef(version, self._create("deltas", version, encode_delta(changes, version)))
            deltas = (*deltas, delta)[-SNAPSHOT_EVERY:]
        snapshot_ref = held.pointer.snapshot
        if force_snapshot or version - snapshot_ref.version >= SNAPSHOT_EVERY:
            snapshot_ref = ObjectRef(
                version, self._create("snapshots", version, encode_snapshot(snapshot, version))
            )
        pointer = ArtifactPointer(version, snapshot_ref, deltas, held.pointer.lineage)
        return self._swap(pointer, snapshot, held.etag)

    def _create(self, kind: str, version: int, body: bytes) -> str:
        key = f"{self._prefix}{HISTORY_DIR}{kind}/{version:012d}-{secrets.token_hex(6)}.json.gz"
        self._put(key, body, "application/gzip", IfNoneMatch="*")
        return key

    def _swap(self, pointer: ArtifactPointer, snapshot: CatalogSnapshot, etag: str | None) -> ArtifactState:
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        response = self._put(self.pointer_key, pointer.encode(), "application/json", **condition)
        self._state = ArtifactState(pointer.version, snapshot, pointer, response.get("ETag"))
        return self._state

    def _put(self, key: str, body: bytes, content_type: str, **conditions: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = self._client.get().put_object(
                Bucket=self._bucket, Key=key, Body=body, ContentType=content_type, **conditions
            )
        except ClientError as exc:
            code = error_code(exc)
            if code in _CONFLICT_CODES:
                self._state = None  # someone else wrote: read everything again
                raise VersionConflict(f"s3://{self._bucket}/{key} was written by another writer") from exc
            raise StorageUnavailable(f"s3://{self._bucket}/{key}: {code}") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"s3://{self._bucket}/{key}: {exc}") from exc
        return response


def replace_id(snapshot: CatalogSnapshot, snapshot_id: int) -> CatalogSnapshot:
    return replace(snapshot, snapshot_id=snapshot_id)
