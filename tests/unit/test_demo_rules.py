"""The demo's stored rule set (docs/storefront.md, "The promotion"): one featured, in-stock, mid-priced
product per category, promoted into FEATURED_SLOTS of the page's picks."""

from __future__ import annotations

import random

from nextpick.domain.events import EventType
from nextpick.domain.rules import RuleSet
from nextpick_local.demo.demo_shop import (
    CATEGORIES,
    COMPANIONS,
    FEATURED_SLOTS,
    DemoConfig,
    generate,
    generate_catalog,
    storefront_rules,
)
from nextpick_training.together import PartnerScoring, partner_table, split_orders


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


def test_the_demo_history_has_baskets_whose_companions_are_the_bought_together_partners() -> None:
    """The demo shop's orders hold companion products (demo_shop.COMPANIONS), so a retrain on it
    publishes real bought-together lists: the training's own order split and partner scoring, on the
    generated history, list a bought product's companion among its partners, and its first partner is
    a companion one way or the other (fitness is bought with outdoor, and skincare with fitness)."""
    shop = generate(DemoConfig(items=600, shoppers=300))
    index = {item.item_id: position for position, item in enumerate(shop.items, 1)}
    purchases: dict[str, list[tuple[float, int]]] = {}
    for event, _ in sorted(shop.history, key=lambda pair: pair[0].timestamp):
        if event.event_type is EventType.PURCHASE:
            purchases.setdefault(event.user_id, []).append(
                (event.timestamp.timestamp(), index[event.item_id])
            )
    orders = [order for user in purchases.values() for order in split_orders(user)]
    baskets = [order for order in orders if len(order) > 1]
    assert len(baskets) > 0.2 * len(orders)
    table = partner_table(orders, len(shop.items) + 1, PartnerScoring())
    category = [None, *(item.category for item in shop.items)]
    for first, companion, *_ in baskets[:50]:
        assert category[companion] == COMPANIONS[str(category[first])]
        assert companion in table.partners[first]
        top = table.partners[first, 0]
        related = {COMPANIONS[str(category[first])]} | {
            c for c, to in COMPANIONS.items() if to == category[first]
        }
        assert category[top] in related
