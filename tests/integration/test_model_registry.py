"""The model registry under moto: the one reader of pointers and manifests is strict, and every way an
artifact can be broken is one domain error (never a bare JSONDecodeError, KeyError or ClientError)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from nextpick.adapters import model_registry as registry
from nextpick.errors import ModelIntegrityError, NotFound
from nextpick_local.standin.aws_resources import Stack
from tests.conftest import TinyModel

PREFIX = registry.DEFAULT_PREFIX
CREATED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def put_version(
    s3: Any, bucket: str, model: TinyModel, *, manifest_body: bytes | None = None
) -> dict[str, Any]:
    version = registry.make_version(CREATED, registry.sha256_hex(model.tflite))
    manifest = registry.build_manifest(
        version=version,
        created_at=CREATED,
        tflite_bytes=model.tflite,
        state_dim=model.state_dim,
        items=model.items,
        training_window={},
        hyperparameters={},
        metrics={},
    )
    s3.put_object(Bucket=bucket, Key=registry.model_key(PREFIX, version), Body=model.tflite)
    body = manifest_body if manifest_body is not None else json.dumps(manifest).encode()
    s3.put_object(Bucket=bucket, Key=registry.manifest_key(PREFIX, version), Body=body)
    pointer = registry.build_pointer(manifest, PREFIX, CREATED)
    s3.put_object(Bucket=bucket, Key=registry.pointer_key(PREFIX), Body=json.dumps(pointer).encode())
    return pointer


def test_layout_and_version_names() -> None:
    assert registry.pointer_key() == "models/current.json"
    assert registry.model_key("models/", "v1") == "models/v1/model.tflite"
    assert registry.manifest_key("models/", "v1") == "models/v1/manifest.json"
    assert registry.make_version(CREATED, "ab" * 32) == "20261130T120000Z-abababab"
    assert registry.EVENT_TYPES == ("view", "click", "add_to_cart", "remove_from_cart", "purchase", "rate")


def test_round_trip_reads_back_what_was_written(stack: Stack, s3: Any, tiny_model: TinyModel) -> None:
    pointer = put_version(s3, stack.model_bucket, tiny_model)
    read = registry.read_pointer(s3, stack.model_bucket)
    assert read.pointer == pointer and read.etag
    manifest, model_bytes = registry.load_live(s3, stack.model_bucket, pointer)
    assert model_bytes == tiny_model.tflite and manifest["format"] == registry.MANIFEST_FORMAT
    assert registry.load_verified(s3, stack.model_bucket, PREFIX, pointer["version"])[1] == tiny_model.tflite
    assert registry.list_versions(s3, stack.model_bucket) == [pointer["version"]]
    # The same ETag: not modified, no body.
    again = registry.read_pointer(s3, stack.model_bucket, etag=read.etag)
    assert again.not_modified and again.pointer is None


def test_nothing_published_is_not_an_error(stack: Stack, s3: Any) -> None:
    assert registry.read_pointer(s3, stack.model_bucket) == registry.PointerRead(None, None)
    with pytest.raises(NotFound):
        registry.read_manifest(s3, stack.model_bucket, PREFIX, "20260101T000000Z-00000000")


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b"[1, 2]", b'{"version": 3}'])
def test_an_unreadable_pointer_is_an_integrity_error(stack: Stack, s3: Any, body: bytes) -> None:
    s3.put_object(Bucket=stack.model_bucket, Key=registry.pointer_key(), Body=body)
    with pytest.raises(ModelIntegrityError):
        registry.read_pointer(s3, stack.model_bucket)


@pytest.mark.parametrize(
    "manifest_body",
    [b"{not json", b"[]", json.dumps({"format": "nextpick-model/999", "items": [None]}).encode()],
)
def test_an_unreadable_manifest_is_an_integrity_error(
    stack: Stack, s3: Any, tiny_model: TinyModel, manifest_body: bytes
) -> None:
    pointer = put_version(s3, stack.model_bucket, tiny_model, manifest_body=manifest_body)
    with pytest.raises(ModelIntegrityError):
        registry.load_live(s3, stack.model_bucket, pointer)
    with pytest.raises(ModelIntegrityError):
        registry.load_verified(s3, stack.model_bucket, PREFIX, pointer["version"])


def test_bytes_that_fail_the_checksum_are_refused(stack: Stack, s3: Any, tiny_model: TinyModel) -> None:
    pointer = put_version(s3, stack.model_bucket, tiny_model)
    s3.put_object(Bucket=stack.model_bucket, Key=pointer["model_key"], Body=tiny_model.tflite[:-1] + b"\0")
    with pytest.raises(ModelIntegrityError):
        registry.load_live(s3, stack.model_bucket, pointer)
    # A pointer whose own sha256 disagrees is refused even when the manifest matches the bytes.
    s3.put_object(Bucket=stack.model_bucket, Key=pointer["model_key"], Body=tiny_model.tflite)
    with pytest.raises(ModelIntegrityError):
        registry.load_live(s3, stack.model_bucket, {**pointer, "sha256": "0" * 64})


def test_a_missing_model_object_is_not_found(stack: Stack, s3: Any, tiny_model: TinyModel) -> None:
    pointer = put_version(s3, stack.model_bucket, tiny_model)
    s3.delete_object(Bucket=stack.model_bucket, Key=pointer["model_key"])
    with pytest.raises(NotFound):
        registry.load_live(s3, stack.model_bucket, pointer)
