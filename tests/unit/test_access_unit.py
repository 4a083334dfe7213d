"""Scopes, credentials and the authorizer's policy, small and hand-checked (no AWS)."""

from __future__ import annotations

import time

import pytest

from nextpick.domain.access import ROUTE_GRANTS, Principal, Scope
from nextpick.domain.credentials import (
    Authenticator,
    ShopCredentials,
    bearer_credential,
    mint_shopper_token,
)
from nextpick.errors import Forbidden, Unauthenticated
from nextpick.handlers.authorizer import policy
from nextpick_local.standin.authorizers import policy_allows

ARN = "arn:aws:execute-api:eu-west-1:111122223333:abc123/prod/GET/users/alice/recommendations"


def _allowed(principal: Principal, method: str, path: str) -> bool:
    document = policy(ARN, principal)["policyDocument"]
    return policy_allows(document, f"arn:aws:execute-api:eu-west-1:111122223333:abc123/prod/{method}{path}")


def test_derived_credentials_are_distinct_stable_and_prefixed() -> None:
    one, again, other = (
        ShopCredentials.derive("m1"),
        ShopCredentials.derive("m1"),
        ShopCredentials.derive("m2"),
    )
    assert one == again and one != other
    assert one.admin_key.startswith("npa_") and one.server_key.startswith("nps_")
    assert one.token_signing_key.startswith("npt_")
    assert len({one.admin_key[4:], one.server_key[4:], one.token_signing_key[4:]}) == 3
    with pytest.raises(ValueError):
        ShopCredentials.derive("")


def test_the_policy_lists_exactly_the_scopes_routes() -> None:
    server = Principal(Scope.SERVER)
    assert _allowed(server, "GET", "/users/anyone/recommendations")
    assert _allowed(server, "POST", "/events")
    assert not _allowed(server, "PUT", "/items/i1")
    admin = Principal(Scope.ADMIN)
    assert _allowed(admin, "PUT", "/items/i1") and _allowed(admin, "PUT", "/items")
    assert not _allowed(admin, "POST", "/events")
    shopper = Principal(Scope.SHOPPER, "alice@example.com")
    assert _allowed(shopper, "GET", "/users/alice@example.com/recommendations")
    assert not _allowed(shopper, "GET", "/users/bob/recommendations")
    assert not _allowed(shopper, "GET", "/users/alice@example.com.evil/recommendations")
    assert not _allowed(shopper, "GET", "/model")


def test_the_policy_carries_the_scope_not_the_user_as_principal() -> None:
    answer = policy(ARN, Principal(Scope.SHOPPER, "alice"))
    assert answer["principalId"] == "shopper"
    assert answer["context"] == {"scope": "shopper", "user_id": "alice"}
    assert len(answer["policyDocument"]["Statement"][0]["Resource"]) == sum(
        Scope.SHOPPER in grant.scopes for grant in ROUTE_GRANTS
    )


def test_an_explicit_deny_wins_and_wildcards_cross_segments() -> None:
    arn = "arn:aws:execute-api:r:1:a/s/GET/users/x/recommendations"
    allow = {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": "arn:aws:execute-api:r:1:a/s/*"}
    deny = {"Effect": "Deny", "Action": "execute-api:*", "Resource": [arn]}
    assert policy_allows({"Statement": [allow]}, arn)
    assert not policy_allows({"Statement": [allow, deny]}, arn)
    assert not policy_allows({"Statement": [{**allow, "Action": "s3:GetObject"}]}, arn)


def test_principal_binding_and_context_round_trip() -> None:
    shopper = Principal(Scope.SHOPPER, "alice")
    shopper.require_user("user_id", "alice")
    with pytest.raises(Forbidden) as refused:
        shopper.require_user("events[2].user_id", "bob")
    assert refused.value.field == "events[2].user_id"
    Principal(Scope.SERVER).require_user("user_id", "anyone")
    assert Principal.from_context(shopper.context()) == shopper
    assert Principal.from_context({"scope": "server", "principalId": "server"}) == Principal(Scope.SERVER)
    for context in (None, {}, {"scope": "root"}, {"scope": "shopper"}):
        with pytest.raises(Forbidden):
            Principal.from_context(context)
    with pytest.raises(ValueError):
        Principal(Scope.SERVER, "alice")


def test_the_authenticator_accepts_current_and_previous_masters_only() -> None:
    masters = ["new", "old"]
    authenticator = Authenticator(lambda: masters, max_token_seconds=3600)
    old, new, gone = (
        ShopCredentials.derive("old"),
        ShopCredentials.derive("new"),
        ShopCredentials.derive("gone"),
    )
    assert authenticator.authenticate(f"Bearer {old.admin_key}") == Principal(Scope.ADMIN)
    assert authenticator.authenticate(f"bearer  {new.server_key} ") == Principal(Scope.SERVER)
    token = mint_shopper_token(old.token_signing_key, "alice", 600)
    assert authenticator.authenticate(f"Bearer {token}") == Principal(Scope.SHOPPER, "alice")
    for credential in (gone.server_key, mint_shopper_token(gone.token_signing_key, "alice", 600)):
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(f"Bearer {credential}")
    masters[:] = ["newest", "new"]
    with pytest.raises(Unauthenticated):
        authenticator.authenticate(f"Bearer {old.admin_key}")


def test_token_lifetime_and_clock_rules() -> None:
    keys = ShopCredentials.derive("m")
    authenticator = Authenticator(lambda: ["m"], max_token_seconds=3600)
    now = time.time()
    ok = mint_shopper_token(keys.token_signing_key, "alice", 3600, now=now)
    assert authenticator.authenticate(f"Bearer {ok}", now=now).user_id == "alice"
    # Issued in the future beyond the 30 s leeway, or living longer than the cap: refused.
    future = mint_shopper_token(keys.token_signing_key, "alice", 600, now=now + 120)
    long_lived = mint_shopper_token(keys.token_signing_key, "alice", 3601, now=now)
    for token in (future, long_lived):
        with pytest.raises(Unauthenticated):
            authenticator.authenticate(f"Bearer {token}", now=now)


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer   ", "Basic abc", "Token abc"])
def test_only_a_bearer_header_carries_a_credential(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        bearer_credential(header)
