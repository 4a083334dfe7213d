"""The model registry: the one definition of how a model version is named, laid out in S3,
described (manifest), pointed at (pointer) and read back verified.

Serving (`S3ModelSource`), the retrain job (`nextpick_training.publish`, `.pipeline`), the local
operations commands and the benchmarks all import these; none of them spells a key, a format string
or a checksum rule of its own. docs/model-contract.md is the prose version of this module.

Reading is strict: any artifact that cannot be parsed, has the wrong format, names another version or
fails its sha256 is a `ModelIntegrityError` (never served, never gated against); a missing object is
`NotFound`; any other S3 failure is `StorageUnavailable`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nextpick.adapters import error_code
from nextpick.domain.events import EVENT_TYPE_ORDER
from nextpick.domain.history import HISTORY_FEATURES, HISTORY_SLOTS
from nextpick.domain.item_attributes import ATTRIBUTE_BUCKETS
from nextpick.errors import ModelIntegrityError, NotFound, StorageUnavailable

# The manifest format this code writes, and every format serving can still read: v1 models (state
# only) stay servable until none is live; v2 models also take the shopper's item history.
MANIFEST_FORMAT_V1 = "nextpick-model/1"
MANIFEST_FORMAT = "nextpick-model/2"
READABLE_FORMATS = frozenset({MANIFEST_FORMAT_V1, MANIFEST_FORMAT})

DEFAULT_PREFIX = "models/"
POINTER_NAME = "current.json"
MODEL_NAME = "model.tflite"
MANIFEST_NAME = "manifest.json"
# The trained weights (.npz) beside a v2 model: what a catalog refresh derives new items' rows from.
WEIGHTS_NAME = "weights.npz"
# Each item's bought-together partners (docs/model-contract.md, "Bought together"): optional; a model
# without it is served as before and its item pages fall back to live trending.
BOUGHT_TOGETHER_NAME = "bought_together.npz"
# The large-catalog explore index (docs/ranking-1m.md): optional; without it serving runs the exact `rank`.
EXPLORE_INDEX_NAME = "explore_index.npz"
# The large-catalog explore scan (docs/ranking-1m.md): an int8 copy of the item table as a second LiteRT
# model, for catalogs the index refuses; optional, like the index.
EXPLORE_SCAN_NAME = "explore_scan.tflite"
EXPLORE_SCAN_SIGNATURES: tuple[str, ...] = ("scan", "normaliser")

# The signatures of a model (docs/model-contract.md): `update` and `rank` always; `similar` (item-to-item
# cosine over the item vectors) is optional: a model without it is still valid, and serving answers
# GET /items/{item_id}/similar from live trending instead (docs/similar.md).
REQUIRED_SIGNATURES: tuple[str, ...] = ("update", "rank")
SIMILAR_SIGNATURE = "similar"
# Optional too: each history slot's share in a pick's score (docs/explanations.md). Without it a pick
# carries no `because`.
EXPLAIN_SIGNATURE = "explain"
# Optional: rank's per-shopper parts (query, history scores, explore offset) for the large-catalog path.
RANK_QUERY_SIGNATURE = "rank_query"
# Optional: the exact explore logits of given items (query . V[i] + B[i]), which re-score the candidates of
# the explore scan.
SCORE_ITEMS_SIGNATURE = "score_items"

# models/history/<published_at>-<version>.json: a copy of every pointer ever made live (publish and
# rollback), so a container that cannot load the live version can fall back to the last good one.
HISTORY_DIR = "history/"

# The contract's event-type codes (index = code), from the one enum the API validates against.
EVENT_TYPES: tuple[str, ...] = tuple(event_type.value for event_type in EVENT_TYPE_ORDER)

_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_NOT_MODIFIED_CODES = frozenset({"304", "NotModified"})


# ---------------------------------------------------------------------------------------------------
# Names and layout


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_version(created_at: datetime, sha256: str) -> str:
    """`YYYYmmddTHHMMSSZ-<first 8 hex of sha256>`: sorts by creation time, names the bytes."""
    return f"{created_at.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}-{sha256[:8]}"


def pointer_key(prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}{POINTER_NAME}"


def model_key(prefix: str, version: str) -> str:
    return f"{prefix}{version}/{MODEL_NAME}"


def manifest_key(prefix: str, version: str) -> str:
    return f"{prefix}{version}/{MANIFEST_NAME}"


def weights_key(prefix: str, version: str) -> str:
    return f"{prefix}{version}/{WEIGHTS_NAME}"


def bought_together_key(prefix: str, version: str) -> str:
    return f"{prefix}{version}/{BOUGHT_TOGETHER_NAME}"


def explore_index_key(prefix: str, version: str) -> str:
    return f"{prefix}{version}/{EXPLORE_INDEX_NAME}"


def explore_scan_key(prefix: str, version: str) -> str:
    return f"{prefix}{version}/{EXPLORE_SCAN_NAME}"


def history_key(prefix: str, version: str, published_at: datetime) -> str:
    """Where a copy of the pointer that made `version` live at `published_at` is kept. Keys sort by
    switch time, to the microsecond: a rollback right after a publish still sorts after it."""
    return f"{prefix}{HISTORY_DIR}{published_at.astimezone(UTC).strftime('%Y%m%dT%H%M%S%fZ')}-{version}.json"


# ---------------------------------------------------------------------------------------------------
# Manifest and pointer documents


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
    history_slots: int = HISTORY_SLOTS,
    weights_sha256: str | None = None,
    lineage: dict[str, Any] | None = None,
    trending: list[list[Any]] | None = None,
    bought_together: dict[str, Any] | None = None,
    explore_index: dict[str, Any] | None = None,
    explore_scan: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The (v2) manifest of docs/model-contract.md."""
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
        "history_slots": int(history_slots),
        "history_features": list(HISTORY_FEATURES),
        "attribute_buckets": ATTRIBUTE_BUCKETS,
        "weights_sha256": weights_sha256,
        # How this version came to be: {"kind": "retrain"} or {"kind": "catalog_refresh", "base_version",
        # "new_items"}; a refresh keeps the trained weights and only adds catalog items.
        "lineage": lineage or {"kind": "retrain"},
        # What a shopper with no events sees: [[item_id, score], ...], best first (time-decayed
        # popularity of the training window as of its end).
        "trending": trending or [],
        # `bought_together_entry` of the version's `bought_together.npz`, or None: no such artifact.
        "bought_together": bought_together,
        # `explore_index_entry` of the version's `explore_index.npz`, or None: serving runs the exact `rank`.
        "explore_index": explore_index,
        # `explore_scan_entry` of the version's `explore_scan.tflite`, or None (docs/ranking-1m.md).
        "explore_scan": explore_scan,
    }


def build_pointer(manifest: Mapping[str, Any], prefix: str, published_at: datetime) -> dict[str, Any]:
    """The pointer document (`models/current.json`) that makes `manifest`'s version live."""
    version = str(manifest["version"])
    return {
        "version": version,
        "model_key": model_key(prefix, version),
        "manifest_key": manifest_key(prefix, version),
        "sha256": manifest["sha256"],
        "published_at": utc_iso(published_at),
    }


def parse_document(body: bytes, what: str) -> dict[str, Any]:
    """A JSON object from S3; anything else (bad JSON, bad UTF-8, an array) is an integrity error."""
    try:
        document = json.loads(body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise ModelIntegrityError(f"{what} is not valid JSON") from exc
    if not isinstance(document, dict):
        raise ModelIntegrityError(f"{what} is not a JSON object")
    return document


def check_manifest(manifest: Mapping[str, Any], version: str | None = None) -> None:
    """Raise ModelIntegrityError unless `manifest` is one this code can serve (and of `version`)."""
    label = f"model {version!r}" if version is not None else "the manifest"
    if manifest.get("format") not in READABLE_FORMATS:
        raise ModelIntegrityError(f"{label} has unsupported manifest format {manifest.get('format')!r}")
    if version is not None and manifest.get("version") != version:
        raise ModelIntegrityError(f"{label}'s manifest names version {manifest.get('version')!r}")
    items = manifest.get("items")
    if not isinstance(items, list) or not items or items[0] is not None:
        raise ModelIntegrityError(f"{label}'s manifest has no valid items list (items[0] must be null)")
    if manifest.get("num_items", len(items)) != len(items):
        raise ModelIntegrityError(f"{label}'s manifest num_items does not match its items")
    if not isinstance(manifest.get("state_dim"), int):
        raise ModelIntegrityError(f"{label}'s manifest has no integer state_dim")
    if manifest.get("format") == MANIFEST_FORMAT and not isinstance(manifest.get("history_slots"), int):
        raise ModelIntegrityError(f"{label}'s v2 manifest has no integer history_slots")


def check_bytes(model_bytes: bytes, manifest: Mapping[str, Any], pointer: Mapping[str, Any] | None) -> None:
    """The model bytes against the manifest's sha256 and size, and the pointer's sha256 if given."""
    digest = sha256_hex(model_bytes)
    expected = [manifest.get("sha256")] + ([pointer.get("sha256")] if pointer is not None else [])
    if any(digest != value for value in expected) or len(model_bytes) != manifest.get(
        "size_bytes", len(model_bytes)
    ):
        raise ModelIntegrityError(f"model {manifest.get('version')!r} fails its sha256 check; not served")


# ---------------------------------------------------------------------------------------------------
# Reading from S3 (the client is injected: serving passes its LazyClient's, training its own)


@dataclass(frozen=True)
class PointerRead:
    """What one read of the pointer found. `pointer` is None when nothing is published yet, or
    when `not_modified` (the ETag we sent still matches)."""

    pointer: dict[str, Any] | None
    etag: str | None
    not_modified: bool = False


def _get(s3: Any, bucket: str, key: str, **conditions: Any) -> dict[str, Any]:
    try:
        response: dict[str, Any] = s3.get_object(Bucket=bucket, Key=key, **conditions)
        response["Body"] = response["Body"].read()
    except ClientError as exc:
        code = error_code(exc)
        if code in _MISSING_CODES:
            raise NotFound(f"s3://{bucket}/{key} is missing") from exc
        raise StorageUnavailable(f"s3://{bucket}/{key}: {code}") from exc
    except BotoCoreError as exc:  # timeouts, connection resets (after botocore's own retries)
        raise StorageUnavailable(f"s3://{bucket}/{key}: {exc}") from exc
    return response


def read_pointer(s3: Any, bucket: str, prefix: str = DEFAULT_PREFIX, etag: str | None = None) -> PointerRead:
    """The live pointer, conditionally on `etag` when given. Missing pointer: `PointerRead(None, None)`.

    Raises ModelIntegrityError for a pointer that does not parse or lacks its keys."""
    key = pointer_key(prefix)
    try:
        response = _get(s3, bucket, key, **({"IfNoneMatch": etag} if etag else {}))
    except NotFound:
        return PointerRead(None, None)
    except StorageUnavailable as exc:
        if isinstance(exc.__cause__, ClientError) and error_code(exc.__cause__) in _NOT_MODIFIED_CODES:
            return PointerRead(None, etag, not_modified=True)
        raise
    pointer = parse_document(response["Body"], f"s3://{bucket}/{key}")
    for name in ("version", "model_key", "manifest_key", "sha256"):
        if not isinstance(pointer.get(name), str):
            raise ModelIntegrityError(f"the model pointer has no {name}")
    return PointerRead(pointer, response.get("ETag"))


def current_pointer(s3: Any, bucket: str, prefix: str = DEFAULT_PREFIX) -> dict[str, Any] | None:
    """`models/current.json` as a dict, or None when nothing was ever published."""
    return read_pointer(s3, bucket, prefix).pointer


def read_manifest(s3: Any, bucket: str, prefix: str, version: str) -> dict[str, Any]:
    """A version's manifest, checked (NotFound if the version has none)."""
    key = manifest_key(prefix, version)
    try:
        body = _get(s3, bucket, key)["Body"]
    except NotFound as exc:
        raise NotFound(f"model version {version!r} has no manifest") from exc
    manifest = parse_document(body, f"s3://{bucket}/{key}")
    check_manifest(manifest, version)
    return manifest


def load_verified(s3: Any, bucket: str, prefix: str, version: str) -> tuple[dict[str, Any], bytes]:
    """A version's manifest and model bytes, checked against each other (rollback, status)."""
    manifest = read_manifest(s3, bucket, prefix, version)
    model_bytes: bytes = _get(s3, bucket, model_key(prefix, version))["Body"]
    check_bytes(model_bytes, manifest, None)
    return manifest, model_bytes


def load_live(s3: Any, bucket: str, pointer: Mapping[str, Any]) -> tuple[dict[str, Any], bytes]:
    """The pointer's manifest and model, read through the pointer's own keys as serving reads them,
    with the bytes checked against the sha256 of both the manifest and the pointer."""
    version = str(pointer.get("version"))
    manifest = parse_document(_get(s3, bucket, str(pointer["manifest_key"]))["Body"], f"model {version!r}")
    check_manifest(manifest, version)
    model_bytes: bytes = _get(s3, bucket, str(pointer["model_key"]))["Body"]
    check_bytes(model_bytes, manifest, pointer)
    return manifest, model_bytes


def load_artifact(s3: Any, bucket: str, key: str, sha256: str) -> bytes:
    """Any other artifact of a version (e.g. `weights.npz`), checked against the manifest's sha256."""
    body: bytes = _get(s3, bucket, key)["Body"]
    if sha256_hex(body) != sha256:
        raise ModelIntegrityError(f"s3://{bucket}/{key} fails its sha256 check")
    return body


def pointer_history(s3: Any, bucket: str, prefix: str = DEFAULT_PREFIX) -> Iterator[dict[str, Any]]:
    """Every pointer that was ever live, newest first (lazily: one GetObject per pointer consumed).
    An entry that is missing or does not parse is skipped: the history is a fallback, never a gate."""
    for key in sorted(_keys(s3, bucket, f"{prefix}{HISTORY_DIR}"), reverse=True):
        try:
            pointer = parse_document(_get(s3, bucket, key)["Body"], f"s3://{bucket}/{key}")
        except (ModelIntegrityError, NotFound):
            continue
        if all(
            isinstance(pointer.get(name), str) for name in ("version", "model_key", "manifest_key", "sha256")
        ):
            yield pointer


def list_versions(s3: Any, bucket: str, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Every version that has a manifest, oldest first (versions sort by creation time)."""
    versions: set[str] = set()
    for key in _keys(s3, bucket, prefix):
        version, _, name = key[len(prefix) :].partition("/")
        if name == MANIFEST_NAME:
            versions.add(version)
    return sorted(versions)


def _keys(s3: Any, bucket: str, prefix: str) -> list[str]:
    paginator = s3.get_paginator("list_objects_v2")
    try:
        return [
            entry["Key"]
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for entry in page.get("Contents", [])
        ]
    except ClientError as exc:
        raise StorageUnavailable(f"s3://{bucket}/{prefix}*: {error_code(exc)}") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"s3://{bucket}/{prefix}*: {exc}") from exc
