"""The walkthrough's HTTP side: the public API as a shop's parts call it (a shopper with their own
token, the operator with the server key) and the local stack's `/_local/*` routes, and the calls that
show the scopes at work (docs/security.md)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

from nextpick_local.http_client import JsonClient

TOP_K = 10
# The local retrain trains a real model; give it time before declaring it stuck.
RETRAIN_TIMEOUT_SECONDS = 900.0

# Another shopper: the walkthrough shopper's token must not read their list.
ANOTHER_SHOPPER = "another-shopper"


@dataclass(frozen=True)
class Product:
    item_id: str
    title: str
    category: str
    price: float
    stock: int


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class Client:
    """The public API and the local stack's `/_local/*` routes, over plain HTTP: a shopper's calls with
    their shopper token, the operator's with the server key, `/_local/*` with no credential."""

    def __init__(self, base_url: str, server_key: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = JsonClient(self.base_url, None, timeout)
        self.server_key = server_key
        self._tokens: dict[str, str] = {}

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
        timeout: float | None = None,
        credential: str | None = None,
    ) -> Any:
        status, answer = self.http.request(
            method, path, body, query=query, timeout=timeout, credential=credential
        )
        if status >= 400:
            message = answer.get("message", answer) if isinstance(answer, dict) else answer
            raise ApiError(status, str(message)[:200])
        return answer

    def shopper_token(self, user_id: str, renew: bool = False) -> str:
        """The shopper token of `user_id`, as a shop's backend hands it to its page (900 s)."""
        if renew or user_id not in self._tokens:
            self._tokens[user_id] = self.call("POST", "/_local/shopper-token", {"user_id": user_id})["token"]
        return self._tokens[user_id]

    def as_shopper(
        self, user_id: str, method: str, path: str, body: Any = None, query: dict[str, str] | None = None
    ) -> Any:
        """A call on behalf of `user_id` with their token; on a 401 (the token expired: a retrain can
        take longer than its 900 s) a new token, and the call once more."""
        try:
            return self.call(method, path, body, query, credential=self.shopper_token(user_id))
        except ApiError as error:
            if error.status != 401:
                raise
        return self.call(method, path, body, query, credential=self.shopper_token(user_id, renew=True))

    def recommendations(self, user_id: str, k: int = TOP_K, category: str | None = None) -> dict[str, Any]:
        query = {"k": str(k), **({"category": category} if category else {})}
        return self.as_shopper(user_id, "GET", recommendations_path(user_id), query=query)

    def track(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.as_shopper(event["user_id"], "POST", "/events", event, query={"k": str(TOP_K)})

    def model_version(self) -> str | None:
        return self.call("GET", "/model", credential=self.server_key).get("model_version")

    def catalog(self) -> list[Product]:
        body = self.call("GET", "/_local/catalog")
        return [
            Product(p["item_id"], p.get("title") or p["item_id"], p["category"], p["price"], p["stock"])
            for p in body["items"]
        ]

    def retrain(self) -> dict[str, Any]:
        return self.call("POST", "/_local/retrain", timeout=RETRAIN_TIMEOUT_SECONDS)


def recommendations_path(user_id: str) -> str:
    return f"/users/{urllib.parse.quote(user_id, safe='')}/recommendations"


@dataclass(frozen=True)
class ScopeCheck:
    """One call the scopes must answer a certain way: who calls, what, and the status expected."""

    who: str
    method: str
    path: str
    expected: int
    # None: no Authorization header at all.
    credential: str | None


def scope_checks(client: Client, user_id: str) -> list[ScopeCheck]:
    token = client.shopper_token(user_id)
    another = ANOTHER_SHOPPER if user_id != ANOTHER_SHOPPER else f"{ANOTHER_SHOPPER}-2"
    own, other = recommendations_path(user_id), recommendations_path(another)
    return [
        ScopeCheck(f"shopper token of {user_id}", "GET", own, 200, token),
        ScopeCheck(f"shopper token of {user_id}", "GET", other, 403, token),
        ScopeCheck(f"shopper token of {user_id}", "GET", "/model", 403, token),
        ScopeCheck("no credential", "GET", own, 401, None),
        ScopeCheck("server key", "GET", "/model", 200, client.server_key),
    ]
