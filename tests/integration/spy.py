"""A recording stand-in for a boto3 client: forwards every call to the real (moto) client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Spy:
    """Forwards to a real (moto) client, recording every call; `rewrite[operation]` may change a call."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.rewrite: dict[str, Callable[..., Any]] = {}

    def __getattr__(self, operation: str) -> Callable[..., Any]:
        def call(**kwargs: Any) -> Any:
            self.calls.append((operation, kwargs))
            if operation in self.rewrite:
                return self.rewrite[operation](self._client, **kwargs)
            return getattr(self._client, operation)(**kwargs)

        return call

    def count(self, operation: str) -> int:
        return sum(1 for name, _ in self.calls if name == operation)

    def batches(self) -> list[list[bytes]]:
        """The records of every Firehose PutRecordBatch call, in order."""
        return [
            [r["Data"] for r in kwargs["Records"]]
            for name, kwargs in self.calls
            if name == "put_record_batch"
        ]
