"""Finds the live model through the S3 pointer and keeps it loaded, keyed by version.

The pointer (`models/current.json`) is read at most once per `refresh_seconds`, conditionally on its
ETag, so a warm container costs one cheap S3 request a minute and notices a retrain or a rollback
within that interval, without a redeploy. Keys, formats and checksums are the model registry's
(`nextpick.adapters.model_registry`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger

from nextpick.adapters import LazyClient
from nextpick.adapters import model_registry as registry
from nextpick.adapters.litert_model import LiteRTModel
from nextpick.errors import ModelUnavailable, NotFound, StorageUnavailable

logger = Logger(child=True)


class S3ModelSource:
    def __init__(
        self,
        bucket: str,
        prefix: str = registry.DEFAULT_PREFIX,
        refresh_seconds: float = 60.0,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bucket = bucket
        self._prefix = prefix
        self._refresh_seconds = refresh_seconds
        self._client = LazyClient("s3", client)
        self._clock = clock
        self._model: LiteRTModel | None = None
        # The ETag of the pointer whose model is loaded: remembered only once that model loaded, so a
        # failed load is retried at the next refresh instead of being skipped as "not modified".
        self._loaded_etag: str | None = None
        self._checked_at: float | None = None

    def current(self) -> LiteRTModel | None:
        now = self._clock()
        if self._checked_at is None or now - self._checked_at >= self._refresh_seconds:
            self._checked_at = now
            try:
                self._refresh()
            except (ModelUnavailable, StorageUnavailable, NotFound):
                # Keep serving the model we have; a broken publish must not take ranking down.
                logger.exception("model refresh failed; keeping version %s", self.loaded_version)
        return self._model

    @property
    def loaded_version(self) -> str | None:
        return self._model.version if self._model is not None else None

    def _refresh(self) -> None:
        s3 = self._client.get()
        etag = self._loaded_etag if self._model is not None else None
        read = registry.read_pointer(s3, self._bucket, self._prefix, etag=etag)
        if read.pointer is None:
            return  # not modified, or nothing published yet (the API answers with empty lists)
        if read.pointer["version"] == self.loaded_version:
            self._loaded_etag = read.etag
            return
        model = self.load_version(read.pointer)
        logger.info(
            "model switched", extra={"from_version": self.loaded_version, "to_version": model.version}
        )
        self._model, self._loaded_etag = model, read.etag

    def load_version(self, pointer: dict[str, Any]) -> LiteRTModel:
        manifest, model_bytes = registry.load_live(self._client.get(), self._bucket, pointer)
        return LiteRTModel(model_bytes, manifest)
