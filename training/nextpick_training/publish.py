"""Publishing model versions to the model bucket, switching the live pointer, and rolling back.

Layout (docs/model-contract.md): `models/<version>/model.tflite` and `models/<version>/manifest.json`
are written once and never overwritten; `models/current.json` (the pointer) is the only mutable key
and is switched with a single conditional PutObject, so serving sees either the old or the new
version, never a mix. A `ModelPublished` event on the bus announces every switch (publish and
rollback); serving does not depend on it (it polls the pointer), it is for humans and integrations.

Order of a publish: model -> manifest -> pointer -> event. A crash before the pointer leaves an
unreferenced version directory (harmless, listed by `list_versions`, usable by `rollback`); a crash
after it leaves the new version live without its announcement.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from nextpick.errors import ModelIntegrityError, NextpickError, NotFound

logger = Logger(child=True)

MANIFEST_FORMAT = "nextpick-model/1"
POINTER_NAME = "current.json"
MODEL_NAME = "model.tflite"
MANIFEST_NAME = "manifest.json"
EVENT_SOURCE = "nextpick"
EVENT_DETAIL_TYPE = "ModelPublished"
EVENT_TYPES = ["view", "click", "add_to_cart", "remove_from_cart", "purchase", "rate"]


class PublishError(NextpickError):
    """A publish or rollback could not be completed; the pointer was not switched."""


class VersionExists(PublishError):
    """`models/<version>/` already holds an artifact: versions are immutable."""

    status = 409


class PointerConflict(PublishError):
    """Someone else switched the pointer between our read and our write; nothing was changed."""

    status = 409


@dataclass(frozen=True)
class PublishOutcome:
    version: str
    previous_version: str | None
    pointer: dict[str, Any]
    # Whether the ModelPublished event was accepted by the bus (the pointer is switched either way).
    notified: bool


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_version(created_at: datetime, sha256: str) -> str:
    """`YYYYmmddTHHMMSSZ-<first 8 hex of sha256>`: sorts by creation time, names the bytes."""
    return f"{created_at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{sha256[:8]}"


def pointer_key(prefix: str) -> str:
    return f"{prefix}{POINTER_NAME}"


def model_key(prefix: str, version: str) -> str:
    return f"{prefix}{version}/{MODEL_NAME}"


def manifest_key(prefix: str, version: str) -> str:
    return f"{prefix}{version}/{MANIFEST_NAME}"


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_missing(exc: ClientError) -> bool:
    return _error_code(exc) in ("NoSuchKey", "404", "NotFound")


def _is_precondition(exc: ClientError) -> bool:
    return _error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def build_manifest(
    *,
    version: str,
    created_at: datetime,
    tflite_bytes: bytes,
    state_dim: int,
    items: list[str | None],
    training_window: dict[str, Any],
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """The manifest of docs/model-contract.md."""
    if not items or items[0] is not None:
        raise ValueError("items[0] must be None (index 0 is the unknown item)")
    return {
        "format": MANIFEST_FORMAT,
        "version": version,
        "created_at": utc_iso(created_at),
        "state_dim": int(state_dim),
        "num_items": len(items),
        "items": list(items),
        "event_types": list(EVENT_TYPES),
        "sha256": sha256_hex(tflite_bytes),
        "size_bytes": len(tflite_bytes),
        "training_window": training_window,
        "hyperparameters": hyperparameters,
        "metrics": metrics,
    }


def _put_new(s3: Any, bucket: str, key: str, body: bytes, content_type: str) -> None:
    """PutObject that refuses to overwrite (S3 conditional write `If-None-Match: *`)."""
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
    except ClientError as exc:
        if _is_precondition(exc):
            raise VersionExists(
                f"s3://{bucket}/{key} already exists; versions are never overwritten"
            ) from exc
        raise


def read_pointer(s3: Any, bucket: str, prefix: str) -> tuple[dict[str, Any] | None, str | None]:
    """(pointer, its ETag), or (None, None) before the first publish."""
    try:
        response = s3.get_object(Bucket=bucket, Key=pointer_key(prefix))
    except ClientError as exc:
        if _is_missing(exc):
            return None, None
        raise
    pointer: dict[str, Any] = json.loads(response["Body"].read())
    return pointer, response.get("ETag")


def current_pointer(s3: Any, bucket: str, prefix: str = "models/") -> dict[str, Any] | None:
    """`models/current.json` as a dict, or None when nothing was ever published."""
    return read_pointer(s3, bucket, prefix)[0]


def read_manifest(s3: Any, bucket: str, prefix: str, version: str) -> dict[str, Any]:
    try:
        body = s3.get_object(Bucket=bucket, Key=manifest_key(prefix, version))["Body"].read()
    except ClientError as exc:
        if _is_missing(exc):
            raise NotFound(f"model version {version!r} has no manifest") from exc
        raise
    manifest: dict[str, Any] = json.loads(body)
    return manifest


def load_verified(s3: Any, bucket: str, prefix: str, version: str) -> tuple[dict[str, Any], bytes]:
    """A version's manifest and model bytes, after checking the bytes against the manifest's sha256.

    Raises NotFound if the manifest or model is missing, ModelIntegrityError if the checksum, size
    or manifest format is wrong."""
    manifest = read_manifest(s3, bucket, prefix, version)
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != version:
        raise ModelIntegrityError(f"model version {version!r} has an invalid manifest")
    try:
        data: bytes = s3.get_object(Bucket=bucket, Key=model_key(prefix, version))["Body"].read()
    except ClientError as exc:
        if _is_missing(exc):
            raise NotFound(f"model version {version!r} has no model.tflite") from exc
        raise
    if sha256_hex(data) != manifest.get("sha256") or len(data) != manifest.get("size_bytes", len(data)):
        raise ModelIntegrityError(f"model version {version!r} fails its sha256 check")
    return manifest, data


def load_live(s3: Any, bucket: str, pointer: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The pointer's manifest and model, read through the pointer's own keys as serving reads them,
    after checking the bytes against the sha256 of both the manifest and the pointer.

    Raises NotFound if an object is missing, ModelIntegrityError if a checksum or the manifest is wrong."""
    version = str(pointer.get("version"))
    objects: dict[str, bytes] = {}
    for name in ("manifest_key", "model_key"):
        key = pointer.get(name)
        if not isinstance(key, str):
            raise ModelIntegrityError(f"the pointer to {version!r} has no {name}")
        try:
            objects[name] = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            if _is_missing(exc):
                raise NotFound(f"model {version!r}: s3://{bucket}/{key} is missing") from exc
            raise
    try:
        manifest: dict[str, Any] = json.loads(objects["manifest_key"])
    except ValueError as exc:
        raise ModelIntegrityError(f"model {version!r} has an unreadable manifest") from exc
    if manifest.get("format") != MANIFEST_FORMAT or manifest.get("version") != version:
        raise ModelIntegrityError(f"model {version!r} has an invalid manifest")
    digest = sha256_hex(objects["model_key"])
    if digest != manifest.get("sha256") or digest != pointer.get("sha256"):
        raise ModelIntegrityError(f"model {version!r} fails its sha256 check")
    return manifest, objects["model_key"]


def list_versions(s3: Any, bucket: str, prefix: str = "models/") -> list[str]:
    """Every version that has a manifest, oldest first (versions sort by creation time)."""
    versions: set[str] = set()
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            rest = entry["Key"][len(prefix) :]
            version, _, name = rest.partition("/")
            if name == MANIFEST_NAME:
                versions.add(version)
    return sorted(versions)


def _switch_pointer(
    s3: Any, bucket: str, prefix: str, manifest: dict[str, Any], etag: str | None, now: datetime
) -> dict[str, Any]:
    """One conditional PutObject: only if the pointer is still the one we read (compare-and-swap)."""
    version = str(manifest["version"])
    pointer = {
        "version": version,
        "model_key": model_key(prefix, version),
        "manifest_key": manifest_key(prefix, version),
        "sha256": manifest["sha256"],
        "published_at": utc_iso(now),
    }
    condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
    try:
        s3.put_object(
            Bucket=bucket,
            Key=pointer_key(prefix),
            Body=json.dumps(pointer).encode(),
            ContentType="application/json",
            CacheControl="no-cache",
            **condition,
        )
    except ClientError as exc:
        if _is_precondition(exc):
            raise PointerConflict("the model pointer changed during this publish; not switched") from exc
        raise
    return pointer


def _announce(events: Any, bus_name: str | None, detail: dict[str, Any]) -> bool:
    """Put the ModelPublished event; a failure is logged, not raised (the switch already happened)."""
    if events is None or not bus_name:
        return False
    try:
        response = events.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": EVENT_DETAIL_TYPE,
                    "Detail": json.dumps(detail),
                    "EventBusName": bus_name,
                }
            ]
        )
    except Exception:
        logger.exception("ModelPublished event not delivered", extra={"detail": detail})
        return False
    if response.get("FailedEntryCount", 0):
        logger.error("ModelPublished event rejected by the bus", extra={"entries": response.get("Entries")})
        return False
    return True


def publish(
    s3: Any,
    events: Any,
    bucket: str,
    prefix: str,
    bus_name: str | None,
    tflite_bytes: bytes,
    *,
    state_dim: int,
    items: list[str | None],
    training_window: dict[str, Any],
    hyperparameters: dict[str, Any],
    metrics: dict[str, Any],
    created_at: datetime | None = None,
) -> PublishOutcome:
    """Write a new immutable version, switch the pointer to it, announce it. Returns the outcome.

    Raises VersionExists (nothing written) or PointerConflict (version written, pointer untouched)."""
    created_at = created_at or datetime.now(UTC)
    sha = sha256_hex(tflite_bytes)
    version = make_version(created_at, sha)
    manifest = build_manifest(
        version=version,
        created_at=created_at,
        tflite_bytes=tflite_bytes,
        state_dim=state_dim,
        items=items,
        training_window=training_window,
        hyperparameters=hyperparameters,
        metrics=metrics,
    )
    previous, etag = read_pointer(s3, bucket, prefix)
    _put_new(s3, bucket, model_key(prefix, version), tflite_bytes, "application/octet-stream")
    _put_new(s3, bucket, manifest_key(prefix, version), json.dumps(manifest).encode(), "application/json")
    pointer = _switch_pointer(s3, bucket, prefix, manifest, etag, datetime.now(UTC))
    previous_version = previous.get("version") if previous else None
    notified = _announce(
        events,
        bus_name,
        {"version": version, "previous_version": previous_version, "metrics": metrics, "rollback": False},
    )
    logger.info("model published", extra={"version": version, "previous_version": previous_version})
    return PublishOutcome(version, previous_version, pointer, notified)


def rollback(
    s3: Any,
    events: Any,
    bucket: str,
    prefix: str,
    bus_name: str | None,
    version: str,
    *,
    now: datetime | None = None,
) -> PublishOutcome:
    """Point serving at an existing version again, after checking its manifest and sha256.

    Raises NotFound (no such version), ModelIntegrityError (its bytes fail the checksum) or
    PointerConflict; in every one of those cases the pointer is untouched."""
    manifest, _ = load_verified(s3, bucket, prefix, version)
    previous, etag = read_pointer(s3, bucket, prefix)
    pointer = _switch_pointer(s3, bucket, prefix, manifest, etag, now or datetime.now(UTC))
    previous_version = previous.get("version") if previous else None
    notified = _announce(
        events,
        bus_name,
        {
            "version": version,
            "previous_version": previous_version,
            "metrics": manifest.get("metrics", {}),
            "rollback": True,
        },
    )
    logger.info("model rolled back", extra={"version": version, "previous_version": previous_version})
    return PublishOutcome(version, previous_version, pointer, notified)
