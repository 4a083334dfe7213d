"""The demo's stored rule set (docs/storefront.md, "The promotion"): one featured, in-stock, mid-priced
product per category, promoted into FEATURED_SLOTS of the page's picks."""

from __future__ import annotations

import random

from nextpick.domain.rules import RuleSet
from nextpick_local.demo.demo_shop import (
    CATEGORIES,
    FEATURED_SLOTS,
    DemoConfig,
    generate_catalog,
    storefront_rules,
)


def test_one_featured_in_stock_mid_priced_product_per_category() -> None:
    items = generate_catalog(DemoConfig(items=600), random.Random(7))
    rules = storefront_rules(items)
    (promotion,) = rules.promotions
    assert promotion.slots == FEATURED_SLOTS and promotion.filter is None
    by_id = {item.item_id: item for item in items}
    featured = [by_id[item_id] for item_id in promotion.items]
    assert sorted(item.category for item in featured) == sorted(c for c, _, _ in CATEGORIES)
    for item in featured:
        aisle = sorted(i.price for i in items if i.category == item.category and i.in_stock)
        assert item.in_stock and item.price == aisle[len(aisle) // 2]
    # What PUT /rule-sets/storefront stores reads back as the same rule set.
    assert RuleSet.model_validate_json(rules.model_dump_json(exclude_defaults=True)) == rules
