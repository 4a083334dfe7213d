"""The only code that talks to AWS. Each adapter implements a port of `nextpick.domain.ports`, takes an
optional boto3 client (tests pass moto-backed ones) and otherwise builds its own on first use, once per
container. AWS failures leave an adapter only as the domain errors of `nextpick.errors`."""

from __future__ import annotations

import threading
from typing import Any, Literal, NoReturn

from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from nextpick.errors import StorageUnavailable, VersionConflict

# Transient: the same request can succeed later, so callers may answer 503 / let Lambda retry.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        # Firehose's spelling of "throttled / try again".
        "ServiceUnavailableException",
        "LimitExceededException",
    }
)


# Lambda answers within seconds: fail fast rather than hang on a dead connection, and let botocore's
# standard mode absorb short throttling bursts before an adapter sees them.
CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})
# Best-effort writes on the request path (the impression log): one attempt (total_max_attempts counts the
# first try) and short timeouts. A PutRecordBatch answers in ~10-30 ms; 0.5 s to connect and 1 s to read
# is a wide margin for a healthy service and the most a broken one can add to an answer, where
# CLIENT_CONFIG (4 attempts of 2 s + 5 s) could hold it ~28 s. Both are module attributes read when a
# client is built, so the local stand-in can replace them (local/nextpick_local/standin/stack.py).
BEST_EFFORT_CLIENT_CONFIG = Config(
    connect_timeout=0.5, read_timeout=1, retries={"mode": "standard", "total_max_attempts": 1}
)


class LazyClient:
    """A boto3 client built on first use, then reused for the life of the container. The lock matters
    only off Lambda (threaded tests, the local server): boto3's default session is not thread-safe."""

    def __init__(
        self,
        service: Literal["dynamodb", "firehose", "s3", "secretsmanager", "sqs"],
        client: Any = None,
        config: Config | None = None,
    ) -> None:
        self._service = service
        self._client = client
        self._config = config
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    import boto3

                    # CLIENT_CONFIG is read now, not at import: the local stand-in replaces it.
                    config = self._config if self._config is not None else CLIENT_CONFIG
                    self._client = boto3.client(self._service, config=config)
        return self._client


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def translate(error: Exception, resource: str) -> Exception:
    """The domain error for an AWS failure on `resource` (a table or stream name), to be raised
    `from error`. Codes that mean a bug or a broken deployment (validation, access denied) come back
    unchanged: retrying cannot fix them, so they must surface as 500s with their original detail."""
    if isinstance(error, BotoConnectionError | HTTPClientError):
        # Endpoint unreachable, connection reset, read timeout: botocore already retried these. Other
        # BotoCoreErrors (bad parameters, no credentials, no region) are bugs and stay what they are.
        return StorageUnavailable(f"{resource}: {error}")
    if not isinstance(error, ClientError):
        return error
    code = error_code(error)
    if code == "ConditionalCheckFailedException":
        return VersionConflict(f"{resource}: the stored version changed since it was read")
    if code in TRANSIENT_ERROR_CODES:
        return StorageUnavailable(f"{resource}: {code}")
    if code == "ResourceNotFoundException":
        return StorageUnavailable(
            f"{resource} does not exist (not deployed, or wrong name in the environment)"
        )
    return error


def raise_translated(error: Exception, resource: str) -> NoReturn:
    """Raise `translate(error, resource)` chained to `error`, or `error` itself when it stays as is."""
    translated = translate(error, resource)
    if translated is error:
        raise error
    raise translated from error
