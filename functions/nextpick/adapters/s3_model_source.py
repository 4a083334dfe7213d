"""Finds the live model through the S3 pointer and keeps it loaded, keyed by version.

The pointer (`models/current.json`) is read at most once per `refresh_seconds`, conditionally on its
ETag, so a warm container costs one cheap S3 request a minute and notices a retrain or a rollback
within that interval, without a redeploy."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from nextpick.adapters import LazyClient
from nextpick.adapters.litert_model import LiteRTModel
from nextpick.errors import ModelIntegrityError, ModelUnavailable, StorageUnavailable

logger = Logger(child=True)

POINTER_NAME = "current.json"


class S3ModelSource:
    def __init__(
        self,
        bucket: str,
        prefix: str = "models/",
        refresh_seconds: float = 60.0,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bucket = bucket
        self._pointer_key = f"{prefix}{POINTER_NAME}"
        self._refresh_seconds = refresh_seconds
        self._client = LazyClient("s3", client)
        self._clock = clock
        self._model: LiteRTModel | None = None
        self._pointer_etag: str | None = None
        self._checked_at: float | None = None

    def current(self) -> LiteRTModel | None:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._refresh_seconds:
            self._checked_at = now
            try:
                self._refresh()
            except (ModelUnavailable, StorageUnavailable):
                # Keep serving the model we have; a broken publish must not take ranking down.
                logger.exception("model refresh failed; keeping version %s", self.loaded_version)
        return self._model

    @property
    def loaded_version(self) -> str | None:
        return self._model.version if self._model is not None else None

    def _refresh(self) -> None:
        pointer = self._read_pointer()
        if pointer is None or pointer["version"] == self.loaded_version:
            return
        model = self.load_version(pointer)
        logger.info(
            "model switched", extra={"from_version": self.loaded_version, "to_version": model.version}
        )
        self._model = model

    def _read_pointer(self) -> dict[str, Any] | None:
        kwargs: dict[str, Any] = {"Bucket": self._bucket, "Key": self._pointer_key}
        if self._pointer_etag is not None and self._model is not None:
            kwargs["IfNoneMatch"] = self._pointer_etag
        try:
            response = self._client.get().get_object(**kwargs)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code in ("304", "NotModified"):
                return None
            if code in ("NoSuchKey", "404"):
                return None  # nothing published yet: the API answers with empty lists
            raise StorageUnavailable(f"reading s3://{self._bucket}/{self._pointer_key}: {code}") from e
        self._pointer_etag = response.get("ETag")
        pointer: dict[str, Any] = json.loads(response["Body"].read())
        return pointer

    def load_version(self, pointer: dict[str, Any]) -> LiteRTModel:
        manifest = json.loads(self._get(pointer["manifest_key"]))
        model_bytes = self._get(pointer["model_key"])
        digest = hashlib.sha256(model_bytes).hexdigest()
        if digest != manifest.get("sha256") or digest != pointer.get("sha256", digest):
            raise ModelIntegrityError(f"model {pointer['version']} failed its sha256 check; not served")
        return LiteRTModel(model_bytes, manifest)

    def _get(self, key: str) -> bytes:
        try:
            body: bytes = self._client.get().get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            raise ModelUnavailable(f"s3://{self._bucket}/{key}: {code}") from e
        return body
