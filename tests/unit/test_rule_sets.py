"""The rules of one request (domain/rule_sets.py): query options parsed, merged over a stored set, and
refused on the field at fault before anything else happens; the S3 store's cache when S3 fails."""

from __future__ import annotations

import io
from typing import Any

import pytest
from botocore.exceptions import ClientError

from nextpick.adapters.memory import InMemoryRuleSetStore
from nextpick.adapters.s3_rule_sets import MAX_CACHED, S3RuleSetStore
from nextpick.domain.filters import MAX_DEPTH, MAX_FILTER_LENGTH
from nextpick.domain.rule_sets import RuleQuery, RuleSets, merge, request_rules
from nextpick.domain.rules import RuleSet
from nextpick.errors import InvalidInput, InvalidRequest, MissingReference, StorageUnavailable

STORED = RuleSet.model_validate(
    {
        "filter": "price < 100",
        "promotions": [{"name": "spring", "slots": 2, "items": ["a", "b"]}],
        "max_per_category": 3,
        "pinned": [{"item_id": "p", "position": 1}],
        "exclude_items": ["x"],
    }
)


def test_no_option_means_no_rules() -> None:
    assert RuleSets(InMemoryRuleSetStore()).for_request(RuleQuery()) is None


def test_the_options_become_a_rule_set() -> None:
    rules = request_rules(RuleQuery(filter='brand == "acme"', max_per_category=2, exclude_items="a,b,a"))
    assert rules == RuleSet(filter='brand == "acme"', max_per_category=2, exclude_items=("a", "b", "a"))
    assert request_rules(RuleQuery(exclude_items="")) == RuleSet()


def test_a_bad_filter_names_filter_with_the_parsers_position() -> None:
    with pytest.raises(InvalidRequest) as refused:
        request_rules(RuleQuery(filter="price < 10 and"))
    assert refused.value.errors[0]["field"] == "filter"
    assert refused.value.errors[0]["message"].startswith("position 15:")


def test_request_options_merge_over_the_stored_set() -> None:
    request = request_rules(RuleQuery(filter='brand == "acme"', max_per_category=1, exclude_items="y,x"))
    merged = merge(STORED, request)
    assert merged.filter == '(price < 100) and (brand == "acme")'
    assert merged.max_per_category == 1
    assert merged.exclude_items == ("x", "y")
    assert (merged.promotions, merged.pinned) == (STORED.promotions, STORED.pinned)
    # Options not given keep the stored values.
    assert merge(STORED, request_rules(RuleQuery(exclude_items=""))) == STORED


def test_a_merge_the_bounds_refuse_names_the_field() -> None:
    with pytest.raises(InvalidInput) as too_long:
        merge(STORED, RuleSet(filter="price > 1" + " or price > 1" * 75))
    assert too_long.value.field == "filter" and str(MAX_FILTER_LENGTH) in too_long.value.message
    deep = RuleSet(filter="not " * MAX_DEPTH + "price > 1")
    with pytest.raises(InvalidRequest) as too_deep:
        merge(RuleSet(filter="price < 5"), deep)
    assert too_deep.value.errors[0]["field"] == "filter"
    assert too_deep.value.errors[0]["message"].startswith("with the stored rule set: position")
    cart = RuleSet(exclude_items=tuple(f"i{n}" for n in range(500)))
    with pytest.raises(InvalidRequest) as overflow:
        merge(STORED, cart)
    assert overflow.value.errors[0]["field"] == "exclude_items"


def test_a_named_set_is_looked_up_only_after_the_options_pass() -> None:
    store = InMemoryRuleSetStore()
    sets = RuleSets(store)
    with pytest.raises(MissingReference) as missing:
        sets.for_request(RuleQuery(rules="spring"))
    assert (missing.value.field, missing.value.status) == ("rules", 404)
    with pytest.raises(InvalidRequest):  # the bad filter is reported, not the missing set
        sets.for_request(RuleQuery(rules="spring", filter="price <"))
    with pytest.raises(InvalidRequest) as bad_name:
        sets.for_request(RuleQuery(rules="no such!"))
    assert bad_name.value.errors[0]["field"] == "rules"
    store.put("spring", STORED)
    assert sets.for_request(RuleQuery(rules="spring")) == STORED
    sets.delete("spring")
    with pytest.raises(MissingReference):
        sets.get("spring")
    with pytest.raises(MissingReference):
        sets.delete("spring")


class FlakyS3:
    """get_object answers from `objects`, or raises `failure` when set."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.failure: ClientError | None = None
        self.gets = 0

    def get_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        self.gets += 1
        if self.failure is not None:
            raise self.failure
        if Key not in self.objects:
            raise ClientError({"Error": {"Code": "NoSuchKey"}}, "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}


def test_the_cache_serves_the_last_good_set_while_s3_fails() -> None:
    s3, now = FlakyS3(), [0.0]
    store = S3RuleSetStore("bucket", refresh_seconds=10, client=s3, clock=lambda: now[0])
    s3.objects["rules/spring.json"] = STORED.model_dump_json().encode()
    assert store.cached("spring") == STORED and s3.gets == 1
    assert store.cached("spring") == STORED and s3.gets == 1  # within the interval: no S3 call
    s3.failure = ClientError({"Error": {"Code": "ServiceUnavailable"}}, "GetObject")
    now[0] = 10.0
    assert store.cached("spring") == STORED  # S3 down: the cached set is served
    with pytest.raises(StorageUnavailable):
        store.cached("other")  # nothing cached: 503
    s3.failure = None
    s3.objects["rules/broken.json"] = b'{"filters": "price < 1"}'
    with pytest.raises(StorageUnavailable):
        store.cached("broken")


def test_the_cache_holds_a_bounded_number_of_names() -> None:
    s3 = FlakyS3()
    store = S3RuleSetStore("bucket", refresh_seconds=60, client=s3, clock=lambda: 0.0)
    for n in range(MAX_CACHED + 1):
        store.cached(f"name-{n}")
    gets = s3.gets
    store.cached(f"name-{MAX_CACHED}")
    assert s3.gets == gets  # the newest is cached
    store.cached("name-0")
    assert s3.gets == gets + 1  # the oldest was dropped
