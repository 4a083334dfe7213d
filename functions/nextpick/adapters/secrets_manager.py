"""The master secret behind every credential (domain/credentials.py), from Secrets Manager.

Both staging labels are read: AWSCURRENT, and AWSPREVIOUS while a rotation is under way, so a
credential derived from the previous master keeps working until the next rotation. The values are
cached per container for `refresh_seconds` (300 s by default): at most one pair of GetSecretValue
calls per container per 5 minutes ($0.05 per 10,000 calls), and a rotation reaches every container
within that time."""

from __future__ import annotations

import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from nextpick.adapters import LazyClient, error_code, raise_translated

CURRENT = "AWSCURRENT"
PREVIOUS = "AWSPREVIOUS"


class SecretsManagerMasterKeys:
    """The valid master secrets, current first: a callable the `Authenticator` asks on every call."""

    def __init__(self, secret_id: str, refresh_seconds: float, client: Any = None) -> None:
        self._secret_id = secret_id
        self._refresh_seconds = refresh_seconds
        self._client = LazyClient("secretsmanager", client)
        self._lock = threading.Lock()
        self._masters: tuple[str, ...] = ()
        self._fetched_at = float("-inf")

    def __call__(self) -> tuple[str, ...]:
        with self._lock:
            if not self._masters or time.monotonic() - self._fetched_at >= self._refresh_seconds:
                self._masters = self._fetch()
                self._fetched_at = time.monotonic()
            return self._masters

    def _fetch(self) -> tuple[str, ...]:
        current = self._value(CURRENT)
        if current is None:
            raise RuntimeError(f"secret {self._secret_id} has no {CURRENT} value")
        previous = self._value(PREVIOUS)
        return (current,) if previous is None or previous == current else (current, previous)

    def _value(self, stage: str) -> str | None:
        try:
            response = self._client.get().get_secret_value(SecretId=self._secret_id, VersionStage=stage)
        except ClientError as e:
            # Before the first rotation there is no AWSPREVIOUS version.
            if stage == PREVIOUS and error_code(e) == "ResourceNotFoundException":
                return None
            raise_translated(e, self._secret_id)
        except BotoCoreError as e:
            raise_translated(e, self._secret_id)
        value = response.get("SecretString")
        return str(value) if value else None
