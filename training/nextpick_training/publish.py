"""Publishing model versions to the model bucket, switching the live pointer, and rolling back.

Layout (docs/model-contract.md): `models/<version>/model.tflite` and `models/<version>/manifest.json`
are written once and never overwritten; `models/current.json` (the pointer) is the only mutable key
and is switched with a single conditional PutObject, so serving sees either the old or the new
version, never a mix. A `ModelPublished` event on the bus announces every switch (publish and
rollback); serving does not depend on it (it polls the pointer), it is for humans and integrations.

Order of a publish: check -> model (+ weights, bought together) -> manifest -> read back and check -> pointer -> history -> event.
The artifact is built in LiteRT (serving's own `LiteRTModel`) against its manifest and both signatures
are run once before anything is written, and the written objects are read back through the registry's
verified reader and checked again before the pointer moves: a model serving cannot load never goes
live. A crash before the pointer leaves an unreferenced version directory (harmless, listed by
`list_versions`, usable by `rollback`); a crash after it leaves the new version live without its
history entry (`models/history/`, serving's fallback list) or its announcement.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from nextpick.adapters import error_code, model_artifacts
from nextpick.adapters import model_registry as registry
from nextpick.adapters.litert_model import LiteRTModel
from nextpick.adapters.variants_pointer import build_variants_pointer, read_variants, version_ref
from nextpick.domain.history import HISTORY_SLOTS
from nextpick.domain.variants import with_challenger, with_control
from nextpick.errors import ModelIntegrityError, ModelUnavailable, NextpickError

logger = Logger(child=True)

EVENT_SOURCE = "nextpick"
EVENT_DETAIL_TYPE = "ModelPublished"


class PublishMode(StrEnum):
    """What a publish does with the live pointer (docs/retrain.md, "Publishing as a challenger")."""

    REPLACE = "replace"  # the new version becomes the control (any A/B experiment keeps running)
    CHALLENGER = "challenger"  # the new version becomes the `challenger` variant; the control stays


# The share of shoppers a new challenger gets when none runs yet (template parameter ChallengerShare).
DEFAULT_CHALLENGER_SHARE = 0.1


class PublishError(NextpickError):
    """A publish or rollback could not be completed; the pointer was not switched."""


class VersionExists(PublishError):
    """`models/<version>/` already holds an artifact: versions are immutable."""

    status = 409


class ArtifactRefused(PublishError):
    """The artifact does not load in LiteRT, lacks a signature or disagrees with its manifest; nothing
    was switched (and, when refused before writing, nothing was written)."""

    status = 422


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


def _is_precondition(exc: ClientError) -> bool:
    return error_code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


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


def check_artifact(tflite_bytes: bytes, manifest: dict[str, Any]) -> None:
    """Build the artifact as serving builds it and run both signatures once; ArtifactRefused otherwise."""
    try:
        LiteRTModel(tflite_bytes, manifest).check_runs()
    except ModelUnavailable as exc:  # ModelIntegrityError included
        raise ArtifactRefused(f"model {manifest.get('version')!r} refused: {exc}") from exc


def check_stored(s3: Any, bucket: str, prefix: str, version: str) -> None:
    """Read the version back as serving will (manifest, sha256) and build and run it again."""
    try:
        manifest, stored = registry.load_verified(s3, bucket, prefix, version)
    except ModelUnavailable as exc:
        raise ArtifactRefused(f"model {version!r} does not read back intact: {exc}") from exc
    check_artifact(stored, manifest)
    try:
        model_artifacts.load_partner_table(s3, bucket, prefix, manifest)
    except ModelUnavailable as exc:
        raise ArtifactRefused(
            f"model {version!r}'s bought_together does not read back intact: {exc}"
        ) from exc


def record_history(s3: Any, bucket: str, prefix: str, pointer: dict[str, Any]) -> None:
    """Keep a copy of the pointer that just went live; a failure is logged (the switch happened).
    Create-only, like every other object under the prefix: the publishing roles may not overwrite."""
    try:
        s3.put_object(
            Bucket=bucket,
            Key=registry.history_key(prefix, str(pointer["version"]), datetime.now(UTC)),
            Body=json.dumps(pointer).encode(),
            ContentType="application/json",
            IfNoneMatch="*",
        )
    except ClientError:
        logger.exception("pointer history not written", extra={"pointer": pointer})


def _read_previous(s3: Any, bucket: str, prefix: str) -> registry.PointerRead:
    """The pointer to replace. One that does not parse is replaced too (by its ETag): a broken pointer
    must not block the publish or rollback that repairs it."""
    try:
        return registry.read_pointer(s3, bucket, prefix)
    except ModelIntegrityError:
        logger.warning("the live pointer is unreadable; replacing it")
        head = s3.head_object(Bucket=bucket, Key=registry.pointer_key(prefix))
        return registry.PointerRead(None, head["ETag"])


def _switch_pointer(
    s3: Any,
    bucket: str,
    prefix: str,
    manifest: dict[str, Any],
    etag: str | None,
    now: datetime,
    previous: dict[str, Any] | None = None,
    mode: PublishMode = PublishMode.REPLACE,
    challenger_share: float = DEFAULT_CHALLENGER_SHARE,
) -> dict[str, Any]:
    """One conditional PutObject: only if the pointer is still the one we read (compare-and-swap).

    The new pointer keeps the `previous` pointer's A/B experiment (docs/variants.md): `replace` makes
    `manifest`'s version the control, `challenger` makes it the `challenger` variant (added with
    `challenger_share` of the traffic, or replacing the previous challenger's version at its weight)."""
    pointer = _pointer_for(previous, manifest, prefix, now, mode, challenger_share)
    put_pointer(s3, bucket, prefix, pointer, etag)
    return pointer


def put_pointer(s3: Any, bucket: str, prefix: str, pointer: dict[str, Any], etag: str | None) -> None:
    """The atomic switch: one PutObject of the whole pointer, conditional on the ETag read (or on
    there being none), so a reader sees the old document or the new one and two writers cannot both win."""
    condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
    try:
        s3.put_object(
            Bucket=bucket,
            Key=registry.pointer_key(prefix),
            Body=json.dumps(pointer).encode(),
            ContentType="application/json",
            CacheControl="no-cache",
            **condition,
        )
    except ClientError as exc:
        if _is_precondition(exc):
            raise PointerConflict("the model pointer changed during this publish; not switched") from exc
        raise


def _pointer_for(
    previous: dict[str, Any] | None,
    manifest: dict[str, Any],
    prefix: str,
    now: datetime,
    mode: PublishMode,
    challenger_share: float,
) -> dict[str, Any]:
    if previous is None:  # the first model is the control, whatever the mode: nothing to challenge
        return registry.build_pointer(manifest, prefix, now)
    try:
        config, refs = read_variants(previous)
    except ModelIntegrityError:
        logger.warning("the live pointer's experiment is malformed; the new pointer has none")
        return registry.build_pointer(manifest, prefix, now)
    version = str(manifest["version"])
    refs[version] = version_ref(manifest, prefix)
    if mode is PublishMode.CHALLENGER:
        config = with_challenger(config, version, challenger_share)
    else:
        config = with_control(config, version)
    return build_variants_pointer(config, refs, prefix, now)


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
    history_slots: int = HISTORY_SLOTS,
    weights: bytes | None = None,
    lineage: dict[str, Any] | None = None,
    trending: list[list[Any]] | None = None,
    expected_version: str | None = None,
    bought_together: bytes | None = None,
    bought_together_parameters: dict[str, Any] | None = None,
    explore_index: tuple[bytes, float] | None = None,
    explore_scan: tuple[bytes, float] | None = None,
    mode: PublishMode = PublishMode.REPLACE,
    challenger_share: float = DEFAULT_CHALLENGER_SHARE,
) -> PublishOutcome:
    """Write a new immutable version, switch the pointer to it, announce it. Returns the outcome.

    `weights` (the trained `.npz`) is written beside the model for catalog refreshes, and
    `bought_together` (`bought_together.npz`, computed with `bought_together_parameters`) for the item
    pages and carts, and `explore_index` (`explore_index.npz` and its calibration recall@10) or
    `explore_scan` (`explore_scan.tflite` and its calibration recall@10) for large catalogs
    (docs/ranking-1m.md). With
    `expected_version`, the publish happens only while that version is live (a catalog refresh built
    on it must not replace a newer retrain). `mode` (docs/retrain.md): `replace` makes the version the
    control, `challenger` an A/B variant with `challenger_share` of the shoppers.

    Raises ArtifactRefused or VersionExists (nothing switched) or PointerConflict (version written,
    pointer untouched)."""
    created_at = created_at or datetime.now(UTC)
    version = registry.make_version(created_at, registry.sha256_hex(tflite_bytes))
    previous = _read_previous(s3, bucket, prefix)
    live = previous.pointer.get("version") if previous.pointer else None
    if expected_version is not None and live != expected_version:
        raise PointerConflict(f"live version is {live!r}, not {expected_version!r}; not published")
    manifest = registry.build_manifest(
        version=version,
        created_at=created_at,
        tflite_bytes=tflite_bytes,
        state_dim=state_dim,
        items=items,
        training_window=training_window,
        hyperparameters=hyperparameters,
        metrics=metrics,
        history_slots=history_slots,
        weights_sha256=registry.sha256_hex(weights) if weights is not None else None,
        lineage=lineage,
        trending=trending,
        bought_together=(
            model_artifacts.bought_together_entry(bought_together, bought_together_parameters or {})
            if bought_together is not None
            else None
        ),
        explore_index=(
            model_artifacts.explore_index_entry(explore_index[0], len(items), explore_index[1])
            if explore_index is not None
            else None
        ),
        explore_scan=(
            model_artifacts.explore_scan_entry(explore_scan[0], len(items), explore_scan[1])
            if explore_scan is not None
            else None
        ),
    )
    check_artifact(tflite_bytes, manifest)
    _put_new(s3, bucket, registry.model_key(prefix, version), tflite_bytes, "application/octet-stream")
    if weights is not None:
        _put_new(s3, bucket, registry.weights_key(prefix, version), weights, "application/octet-stream")
    if bought_together is not None:
        key = registry.bought_together_key(prefix, version)
        _put_new(s3, bucket, key, bought_together, "application/octet-stream")
    if explore_index is not None:
        key = registry.explore_index_key(prefix, version)
        _put_new(s3, bucket, key, explore_index[0], "application/octet-stream")
    if explore_scan is not None:
        key = registry.explore_scan_key(prefix, version)
        _put_new(s3, bucket, key, explore_scan[0], "application/octet-stream")
    _put_new(
        s3, bucket, registry.manifest_key(prefix, version), json.dumps(manifest).encode(), "application/json"
    )
    check_stored(s3, bucket, prefix, version)
    pointer = _switch_pointer(
        s3,
        bucket,
        prefix,
        manifest,
        previous.etag,
        datetime.now(UTC),
        previous.pointer,
        mode,
        challenger_share,
    )
    record_history(s3, bucket, prefix, pointer)
    previous_version = previous.pointer.get("version") if previous.pointer else None
    notified = _announce(
        events,
        bus_name,
        {
            "version": version,
            "previous_version": previous_version,
            "metrics": metrics,
            "rollback": False,
            "mode": mode.value if previous.pointer is not None else PublishMode.REPLACE.value,
        },
    )
    logger.info(
        "model published",
        extra={"version": version, "previous_version": previous_version, "mode": mode.value},
    )
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
    PointerConflict, or ArtifactRefused (it does not run in LiteRT); in every one of those cases the
    pointer is untouched."""
    manifest, model_bytes = registry.load_verified(s3, bucket, prefix, version)
    check_artifact(model_bytes, manifest)
    previous = _read_previous(s3, bucket, prefix)
    pointer = _switch_pointer(
        s3, bucket, prefix, manifest, previous.etag, now or datetime.now(UTC), previous.pointer
    )
    record_history(s3, bucket, prefix, pointer)
    previous_version = previous.pointer.get("version") if previous.pointer else None
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
