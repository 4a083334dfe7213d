"""The one HTTP client of nextpick_local (standard library only): JSON in, (status, JSON) out, the
credential (a server or admin key, or a shopper token) in `Authorization: Bearer`. The CLI (`retrain`,
`replay`), the walkthrough and the end-to-end tests use it."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Long enough for `POST /_local/retrain`, which trains a model before it answers.
DEFAULT_TIMEOUT_SECONDS = 600.0


class Unreachable(Exception):
    """No HTTP answer at all: connection refused, DNS, timeout."""


@dataclass(frozen=True)
class JsonClient:
    base_url: str
    credential: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        credential: str | None = None,
        send_credential: bool = True,
        timeout: float | None = None,
    ) -> tuple[int, Any]:
        """(status, body) for any answer, 4xx/5xx included: the body parsed as JSON, or its text when it
        is not JSON, or None when empty. `credential` replaces the client's; `send_credential=False` sends none."""
        url = self.base_url.rstrip("/") + path + (f"?{urllib.parse.urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        sent = credential if credential is not None else self.credential
        if send_credential and sent:
            request.add_header("Authorization", f"Bearer {sent}")
        try:
            with urllib.request.urlopen(request, timeout=timeout or self.timeout) as response:
                return int(response.status), _parse(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), _parse(error.read())
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            raise Unreachable(f"cannot reach {url}: {reason}") from error


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
