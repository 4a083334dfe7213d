"""How a catalog item's attributes become model input (contract v2): a few hashed tokens per item.

An item's vector in the model is its own (id) embedding plus the mean of its tokens' embeddings, so an
item with few or no events, or one added after the last retrain, still has a meaningful vector: a new
"brand=acme, category=coffee, price_band=4" item sits next to the coffee this shopper already buys.

One definition for training (which learns the token tables) and for the catalog refresh (which gives
new items their attribute-only vectors without a retrain)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

# Rows of the hashed token tables (row 0 is padding). 2^14 rows keep collisions rare for catalogs with a
# few thousand distinct attribute values (brands, categories) and cost 16384 x 64 floats = 4 MB.
ATTRIBUTE_BUCKETS = 1 << 14
# Tokens per item: category, price band and up to six other attributes.
MAX_ITEM_TOKENS = 8


def price_band(price: float) -> int:
    """0 for free, then one band per doubling: 1 = under 1, 2 = 1-3, 3 = 3-7, 4 = 7-15, ..."""
    return 0 if price <= 0 else 1 + int(math.log2(1.0 + float(price)))


def item_tokens(
    category: str | None, price: float | None = None, attributes: Mapping[str, object] | None = None
) -> list[str]:
    """`["category=shoes", "price_band=5", "brand=acme", ...]`: at most MAX_ITEM_TOKENS, in a fixed order
    (category, price band, then attributes sorted by name). Numbers are banded like prices; booleans and
    strings are used as they are; a multi-valued string (`"Comedy|Drama"`) gives one token per value."""
    tokens: list[str] = []
    if category:
        tokens.append(f"category={category}")
    if price is not None:
        tokens.append(f"price_band={price_band(price)}")
    for name in sorted(attributes or {}):
        value = (attributes or {})[name]
        if isinstance(value, bool | str):
            values: Iterable[object] = str(value).split("|") if isinstance(value, str) else [value]
        elif isinstance(value, int | float) and math.isfinite(value):
            values = [f"band{price_band(abs(value))}"]
        else:
            continue
        tokens.extend(f"{name}={v}" for v in values if str(v))
    return tokens[:MAX_ITEM_TOKENS]


def token_bucket(token: str, buckets: int = ATTRIBUTE_BUCKETS) -> int:
    """A stable row in 1..buckets-1 (BLAKE2b, not Python's salted hash: training and refresh agree)."""
    digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "little") % (buckets - 1)
