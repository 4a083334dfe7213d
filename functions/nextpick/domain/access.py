"""Who may call what: the API's three scopes, the routes each may use, and the shopper's user binding.

API Gateway enforces the route table before any function runs: the authorizer's policy (cached per
credential) lists exactly the routes of the caller's scope, a shopper's reads with their own user id in
the path. What no policy can see is the body: the API function checks that every event a shopper
token sends is for that token's user (`Principal.require_user`). docs/security.md is the reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from nextpick.errors import Forbidden


class Scope(StrEnum):
    # Catalog writes, model operations, erasure and access requests: the shop's operators.
    ADMIN = "admin"
    # Events and reads for any shopper: the shop's backend, as it called nextpick with the one API key.
    SERVER = "server"
    # A short-lived signed token bound to one user_id: what a browser or an app holds.
    SHOPPER = "shopper"


USER_PATH_PARAMETER = "{user_id}"


@dataclass(frozen=True)
class RouteGrant:
    method: str
    # The API Gateway resource path, as in template.yaml and the method ARN.
    resource: str
    scopes: frozenset[Scope]


def _grant(method: str, resource: str, *scopes: Scope) -> RouteGrant:
    return RouteGrant(method, resource, frozenset(scopes))


# Every authorized route of template.yaml, once (tests/integration/test_access.py holds the two equal).
# /swagger is public: the document holds the API's shape, no data.
ROUTE_GRANTS: tuple[RouteGrant, ...] = (
    _grant("POST", "/events", Scope.SERVER, Scope.SHOPPER),
    _grant("GET", "/users/{user_id}/recommendations", Scope.SERVER, Scope.SHOPPER),
    _grant("DELETE", "/users/{user_id}", Scope.ADMIN, Scope.SERVER),
    _grant("GET", "/users/{user_id}/data", Scope.ADMIN, Scope.SERVER),
    _grant("PUT", "/items/{item_id}", Scope.ADMIN),
    _grant("PUT", "/items", Scope.ADMIN),
    _grant("GET", "/model", Scope.ADMIN, Scope.SERVER),
    # Named rule sets (docs/rules.md): the admin writes them, the shop's server may read what it names.
    _grant("PUT", "/rule-sets/{name}", Scope.ADMIN),
    _grant("GET", "/rule-sets/{name}", Scope.ADMIN, Scope.SERVER),
    _grant("DELETE", "/rule-sets/{name}", Scope.ADMIN),
    # Live trending (docs/trending.md): counts over every shopper, no personal data.
    _grant("GET", "/trending", Scope.ADMIN, Scope.SERVER, Scope.SHOPPER),
    # Similar items (docs/similar.md): the model's item space and live trending, no personal data.
    _grant("GET", "/items/{item_id}/similar", Scope.ADMIN, Scope.SERVER, Scope.SHOPPER),
    # Bought together (docs/bought-together.md): co-purchase counts over every shopper, no personal data.
    _grant("GET", "/items/{item_id}/bought-together", Scope.ADMIN, Scope.SERVER, Scope.SHOPPER),
    # Cart completion: a shopper may only name their own user_id in the body (checked by the function).
    _grant("POST", "/recommendations/cart", Scope.SERVER, Scope.SHOPPER),
)

# The keys of the authorizer's context (API Gateway passes them to the function as
# requestContext.authorizer.<key>; values must be strings, numbers or booleans).
CONTEXT_SCOPE = "scope"
CONTEXT_USER = "user_id"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a scope, and for a shopper token the one user it is bound to."""

    scope: Scope
    user_id: str | None = None

    def __post_init__(self) -> None:
        if (self.scope is Scope.SHOPPER) != (self.user_id is not None):
            raise ValueError("a shopper principal has a user_id, and only a shopper principal")

    def allowed_routes(self) -> list[tuple[str, str]]:
        """(method, path) of every route this principal may call; a shopper's user-scoped routes name
        their own user id instead of the `{user_id}` parameter, so API Gateway refuses another's."""
        routes = []
        for grant in ROUTE_GRANTS:
            if self.scope in grant.scopes:
                path = grant.resource
                if self.user_id is not None:
                    path = path.replace(USER_PATH_PARAMETER, self.user_id)
                routes.append((grant.method, path))
        return routes

    def require_user(self, field: str, user_id: str) -> None:
        """Refuse (403) a shopper token acting for anyone but its own user; other scopes act for all."""
        if self.user_id is not None and user_id != self.user_id:
            raise Forbidden(field, "is not the user this token is for")

    def context(self) -> dict[str, str]:
        """What the authorizer hands the function (requestContext.authorizer)."""
        context = {CONTEXT_SCOPE: self.scope.value}
        if self.user_id is not None:
            context[CONTEXT_USER] = self.user_id
        return context

    @classmethod
    def from_context(cls, context: Mapping[str, object] | None) -> Principal:
        """The principal the authorizer established. No or an unknown scope is refused (403): behind
        API Gateway every authorized route has one, so its absence means the API is misconfigured, and
        a function must not fall back to trusting everyone."""
        raw_scope = (context or {}).get(CONTEXT_SCOPE)
        try:
            scope = Scope(str(raw_scope))
        except ValueError:
            raise Forbidden("Authorization", "the request carries no authorized scope") from None
        user = (context or {}).get(CONTEXT_USER)
        if scope is Scope.SHOPPER and not isinstance(user, str):
            raise Forbidden("Authorization", "the shopper token names no user")
        return cls(scope, user if scope is Scope.SHOPPER else None)  # type: ignore[arg-type]
