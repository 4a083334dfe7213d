"""The credentials behind the three scopes, all derived from one master secret that nextpick keeps.

    admin key      npa_<43 base64url chars>   HMAC-SHA256(master, "nextpick admin key")
    server key     nps_<43 base64url chars>   HMAC-SHA256(master, "nextpick server key")
    token signing  npt_<43 base64url chars>   HMAC-SHA256(master, "nextpick shopper token key")

A shop's backend holds the server key and the token signing key; with the latter it mints shopper
tokens: HS256 JWTs {"sub": user_id, "scope": "shopper", "aud": "nextpick", "iat", "exp"}, which any
JWT library can make (`mint_shopper_token` is the reference). Derivation is one-way, so the holder of
the signing key cannot compute the admin key.

Rotation replaces the master (Secrets Manager's AWSCURRENT); the previous master (AWSPREVIOUS) stays
valid until the next rotation, so clients switch without a failed call; rotating twice revokes a leaked
credential outright (docs/security.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import jwt

from nextpick.domain.access import Principal, Scope
from nextpick.domain.events import ID_MAX_LENGTH, ID_PATTERN
from nextpick.errors import Unauthenticated

ADMIN_KEY_PREFIX = "npa_"
SERVER_KEY_PREFIX = "nps_"
SIGNING_KEY_PREFIX = "npt_"
TOKEN_AUDIENCE = "nextpick"
# Pinned: a token must never choose its own algorithm ("none", or RS256 with the HMAC key as public key).
TOKEN_ALGORITHM = "HS256"
SHOPPER_SCOPE_CLAIM = Scope.SHOPPER.value
# Clock difference tolerated between the shop's backend, which stamps iat/exp, and Lambda.
TOKEN_LEEWAY_SECONDS = 30
_USER_ID = re.compile(ID_PATTERN)


def _derive(master: str, label: str) -> str:
    digest = hmac.new(master.encode(), label.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass(frozen=True)
class ShopCredentials:
    """The three credentials one master secret stands for."""

    admin_key: str
    server_key: str
    token_signing_key: str

    @classmethod
    def derive(cls, master: str) -> ShopCredentials:
        if not master:
            raise ValueError("the master secret is empty")
        return cls(
            admin_key=ADMIN_KEY_PREFIX + _derive(master, "nextpick admin key"),
            server_key=SERVER_KEY_PREFIX + _derive(master, "nextpick server key"),
            token_signing_key=SIGNING_KEY_PREFIX + _derive(master, "nextpick shopper token key"),
        )


def mint_shopper_token(
    signing_key: str, user_id: str, ttl_seconds: int = 900, now: float | None = None
) -> str:
    """A shopper token for `user_id`, valid `ttl_seconds` (what a shop's backend hands its page)."""
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": user_id,
        "scope": SHOPPER_SCOPE_CLAIM,
        "aud": TOKEN_AUDIENCE,
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    return jwt.encode(claims, signing_key, algorithm=TOKEN_ALGORITHM)


def bearer_credential(authorization: str | None) -> str:
    """The credential of an `Authorization: Bearer <credential>` header."""
    scheme, _, credential = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("expected 'Authorization: Bearer <key or token>'")
    return credential.strip()


@lru_cache(maxsize=8)
def _credentials(masters: tuple[str, ...]) -> tuple[ShopCredentials, ...]:
    return tuple(ShopCredentials.derive(master) for master in masters)


class Authenticator:
    """Tells who a credential belongs to, against every master secret still valid (current first)."""

    def __init__(self, masters: Callable[[], Sequence[str]], max_token_seconds: int) -> None:
        self._masters = masters
        self._max_token_seconds = max_token_seconds

    def authenticate(self, authorization: str | None, now: float | None = None) -> Principal:
        credential = bearer_credential(authorization)
        valid = _credentials(tuple(self._masters()))
        if credential.startswith((ADMIN_KEY_PREFIX, SERVER_KEY_PREFIX)):
            return self._key_principal(credential, valid)
        return self._token_principal(credential, valid, time.time() if now is None else now)

    @staticmethod
    def _key_principal(credential: str, valid: Sequence[ShopCredentials]) -> Principal:
        found: Scope | None = None
        # Every candidate is compared, in constant time, so timing tells nothing about which came close.
        for credentials in valid:
            if hmac.compare_digest(credential.encode(), credentials.admin_key.encode()):
                found = Scope.ADMIN
            if hmac.compare_digest(credential.encode(), credentials.server_key.encode()):
                found = Scope.SERVER
        if found is None:
            raise Unauthenticated("unknown or revoked key")
        return Principal(found)

    def _token_principal(self, token: str, valid: Sequence[ShopCredentials], now: float) -> Principal:
        for credentials in valid:
            try:
                claims = jwt.decode(
                    token,
                    credentials.token_signing_key,
                    algorithms=[TOKEN_ALGORITHM],
                    audience=TOKEN_AUDIENCE,
                    leeway=TOKEN_LEEWAY_SECONDS,
                    options={"require": ["sub", "exp", "iat", "aud"], "verify_iat": False},
                )
            except jwt.InvalidSignatureError:
                continue  # signed with another (older or newer) master: try the next one
            except jwt.ExpiredSignatureError:
                raise Unauthenticated("the token has expired") from None
            except jwt.PyJWTError:
                raise Unauthenticated("not a valid shopper token") from None
            return self._shopper(claims, now)
        raise Unauthenticated("the token's signature matches no valid key")

    def _shopper(self, claims: dict[str, object], now: float) -> Principal:
        subject, issued, expires = claims.get("sub"), claims.get("iat"), claims.get("exp")
        if claims.get("scope") != SHOPPER_SCOPE_CLAIM:
            raise Unauthenticated("the token is not a shopper token")
        if not isinstance(subject, str) or len(subject) > ID_MAX_LENGTH or not _USER_ID.match(subject):
            raise Unauthenticated("the token's sub is not a valid user id")
        if not isinstance(issued, int | float) or not isinstance(expires, int | float):
            raise Unauthenticated("the token's iat and exp must be numbers")
        # Long-lived tokens in a browser are a leak waiting to happen: the lifetime is capped.
        if expires - issued > self._max_token_seconds or issued > now + TOKEN_LEEWAY_SECONDS:
            raise Unauthenticated(
                f"the token lives longer than {self._max_token_seconds} s or is not yet valid"
            )
        return Principal(Scope.SHOPPER, subject)
