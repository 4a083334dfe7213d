"""Named rule sets as S3 objects, `rules/<name>.json` in the model bucket (docs/rules.md, "Where named
sets live"), with a per-container cache for serving.

Serving reads a set at most once per `refresh_seconds` per container (a missing set too, so a request
naming an unknown set costs no S3 call within the interval): a change made through one container
reaches the others within that interval. The container that wrote or deleted a set sees the change at
once. A set that cannot be re-read (S3 throttled or down) keeps being served from the cache, as the
model is; with nothing cached the request answers 503.

IAM (template.yaml, ApiFunction): s3:GetObject, s3:PutObject and s3:DeleteObject on `rules/*`;
s3:ListBucket on the bucket (held already for the models) makes a missing key a 404, not a 403."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from nextpick.adapters import LazyClient, error_code, raise_translated
from nextpick.domain.rules import RuleSet
from nextpick.errors import StorageUnavailable

logger = Logger(child=True)

RULES_PREFIX = "rules/"
# Names a container remembers at once: a rule set is at most ~40 KB parsed, so 256 stay under ~10 MB
# even when callers name many different (or unknown) sets.
MAX_CACHED = 256
_MISSING = frozenset({"NoSuchKey", "404"})


class S3RuleSetStore:
    """`RuleSetStore` (domain/ports.py) on S3."""

    def __init__(
        self,
        bucket: str,
        refresh_seconds: float = 30.0,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
        prefix: str = RULES_PREFIX,
    ) -> None:
        self._bucket = bucket
        self._refresh_seconds = refresh_seconds
        self._client = LazyClient("s3", client)
        self._clock = clock
        self._prefix = prefix
        # name -> (the set or None for "none stored", when it was read)
        self._cache: dict[str, tuple[RuleSet | None, float]] = {}

    def key(self, name: str) -> str:
        return f"{self._prefix}{name}.json"

    def cached(self, name: str) -> RuleSet | None:
        now = self._clock()
        entry = self._cache.get(name)
        if entry is not None and now - entry[1] < self._refresh_seconds:
            return entry[0]
        try:
            rule_set = self.read(name)
        except StorageUnavailable:
            if entry is None:
                raise
            logger.exception("rule set %s could not be re-read; serving the cached one", name)
            return entry[0]
        self._remember(name, rule_set, now)
        return rule_set

    def read(self, name: str) -> RuleSet | None:
        key = self.key(name)
        try:
            body = self._client.get().get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error_code(error) in _MISSING:
                return None
            raise_translated(error, key)
        except BotoCoreError as error:
            raise_translated(error, key)
        try:
            return RuleSet.model_validate_json(body)
        except ValidationError:
            # Only the API writes here, validated; anything else is a broken deployment or a hand edit.
            logger.exception("%s is not a valid rule set", key)
            raise StorageUnavailable(f"{key} is not a valid rule set") from None

    def put(self, name: str, rule_set: RuleSet) -> None:
        key = self.key(name)
        try:
            self._client.get().put_object(
                Bucket=self._bucket,
                Key=key,
                Body=rule_set.model_dump_json(exclude_defaults=True).encode(),
                ContentType="application/json",
            )
        except (ClientError, BotoCoreError) as error:
            raise_translated(error, key)
        self._remember(name, rule_set, self._clock())

    def delete(self, name: str) -> bool:
        existed = self.read(name) is not None
        if existed:
            key = self.key(name)
            try:
                self._client.get().delete_object(Bucket=self._bucket, Key=key)
            except (ClientError, BotoCoreError) as error:
                raise_translated(error, key)
        self._remember(name, None, self._clock())
        return existed

    def _remember(self, name: str, rule_set: RuleSet | None, now: float) -> None:
        self._cache.pop(name, None)
        if len(self._cache) >= MAX_CACHED:
            del self._cache[next(iter(self._cache))]  # the longest-held entry
        self._cache[name] = (rule_set, now)
