"""Business rules on a request: the query options of the recommendation routes merged over a named,
stored rule set (docs/rules.md, "On the API"), and the admin's store of named sets.

Everything here runs before anything is applied: a bad option or a missing set refuses the request
while no event has been tracked yet."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nextpick.domain.filters import MAX_FILTER_LENGTH
from nextpick.domain.ports import RuleSetStore
from nextpick.domain.requests import parse_identifier
from nextpick.domain.rules import RuleSet, rules_from
from nextpick.errors import InvalidInput, InvalidRequest, MissingReference

# The query parameters, as the API names them (they are also the fields 422s and 404s name).
FILTER, MAX_PER_CATEGORY, EXCLUDE_ITEMS, RULES = "filter", "max_per_category", "exclude_items", "rules"


@dataclass(frozen=True)
class RuleQuery:
    """The rule options of one request, as they arrive (query strings, already URL-decoded)."""

    filter: str | None = None
    max_per_category: int | None = None
    # Comma-separated ids: the shopper's cart.
    exclude_items: str | None = None
    # The name of a stored rule set.
    rules: str | None = None

    @property
    def is_empty(self) -> bool:
        return all(
            value is None for value in (self.filter, self.max_per_category, self.exclude_items, self.rules)
        )


def _cart(raw: str | None) -> tuple[str, ...]:
    """`a,b,c` as ids; an empty parameter is an empty cart. Ids never hold a comma (the id rule)."""
    if raw is None or raw == "":
        return ()
    return tuple(raw.split(","))


def request_rules(query: RuleQuery) -> RuleSet:
    """The request's own options as a rule set, or `InvalidRequest` naming each bad one (a filter's
    message is the parser's, with its position in the request's `filter`)."""
    data: dict[str, Any] = {EXCLUDE_ITEMS: _cart(query.exclude_items)}
    if query.filter is not None:
        data[FILTER] = query.filter
    if query.max_per_category is not None:
        data[MAX_PER_CATEGORY] = query.max_per_category
    return rules_from(data)


def merge(stored: RuleSet, request: RuleSet) -> RuleSet:
    """The request's options over a stored set: both filters apply (`(stored) and (request)`), the
    request's `max_per_category` replaces the stored one, the cart joins the stored `exclude_items`;
    promotions and pins are the stored set's."""
    data = stored.model_dump()
    if request.filter is not None:
        both = request.filter if stored.filter is None else f"({stored.filter}) and ({request.filter})"
        if len(both) > MAX_FILTER_LENGTH:
            raise InvalidInput(
                FILTER,
                f"with the stored rule set's filter it is {len(both)} characters, over {MAX_FILTER_LENGTH}",
            )
        data[FILTER] = both
    if request.max_per_category is not None:
        data[MAX_PER_CATEGORY] = request.max_per_category
    try:
        merged = rules_from(data)
    except InvalidRequest as error:
        # Only the combination can fail here (each part was valid alone): too deep, or too many items.
        raise InvalidRequest(
            [{**e, "message": f"with the stored rule set: {e['message']}"} for e in error.errors]
        ) from None
    return merged.with_excluded(request.exclude_items)


class RuleSets:
    """Named rule sets: the admin's CRUD, and the rules a recommendation request asks for."""

    def __init__(self, store: RuleSetStore) -> None:
        self._store = store

    def for_request(self, query: RuleQuery) -> RuleSet | None:
        """The rules of one request; None when it gives none (ranking exactly as without rules)."""
        if query.is_empty:
            return None
        request = request_rules(query)
        if query.rules is None:
            return request
        name = parse_identifier(RULES, query.rules)
        stored = self._store.cached(name)
        if stored is None:
            raise MissingReference(RULES, f"no rule set is named {name!r}")
        return merge(stored, request)

    def get(self, name: str) -> RuleSet:
        stored = self._store.read(name)
        if stored is None:
            raise MissingReference("name", f"no rule set is named {name!r}")
        return stored

    def put(self, name: str, rule_set: RuleSet) -> None:
        self._store.put(name, rule_set)

    def delete(self, name: str) -> None:
        if not self._store.delete(name):
            raise MissingReference("name", f"no rule set is named {name!r}")
