"""The filter grammar (docs/rules.md): every construct, precedence, limits, and the 4xx messages."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nextpick.domain.filters import (
    MAX_DEPTH,
    MAX_FILTER_LENGTH,
    MAX_LIST_VALUES,
    And,
    Comparison,
    FieldRef,
    Membership,
    Not,
    Or,
    parse_filter,
    render,
)
from nextpick.domain.requests import RequestLimits, parse_body
from nextpick.domain.rules import RuleSet, rules_from
from nextpick.errors import InvalidInput, InvalidRequest

PRICE = FieldRef("price")
CATEGORY = FieldRef("category")
BRAND = FieldRef("attribute", "brand")


def attr(name: str) -> FieldRef:
    return FieldRef("attribute", name)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("price >= 10 and price < 50", And((Comparison(PRICE, ">=", 10.0), Comparison(PRICE, "<", 50.0)))),
        ("price == 9.99", Comparison(PRICE, "==", 9.99)),
        ("price != 0", Comparison(PRICE, "!=", 0.0)),
        ("price <= -1.5e2", Comparison(PRICE, "<=", -150.0)),
        ("price > .5", Comparison(PRICE, ">", 0.5)),
        ("price in (1, 2.5)", Membership(PRICE, (1.0, 2.5))),
        ('brand in ("acme", "zeta")', Membership(BRAND, ("acme", "zeta"))),
        ("brand == 'acme'", Comparison(BRAND, "==", "acme")),
        ('category not in ("hats", "socks",)', Membership(CATEGORY, ("hats", "socks"), negated=True)),
        ('category in ("hats")', Membership(CATEGORY, ("hats",))),
        ('category != "hats"', Comparison(CATEGORY, "!=", "hats")),
        ('item_id in ("a-1", "b:2")', Membership(FieldRef("item_id"), ("a-1", "b:2"))),
        ('attributes.color == "red"', Comparison(attr("color"), "==", "red")),
        ('attributes["screen size"] >= 13.3', Comparison(attr("screen size"), ">=", 13.3)),
        ("attributes.organic == true", Comparison(attr("organic"), "==", True)),
        ("attributes.organic != false", Comparison(attr("organic"), "!=", False)),
        ("attributes.size in (10, 'XL', true)", Membership(attr("size"), (10.0, "XL", True))),
        ("attributes.brand == 'x'", Comparison(BRAND, "==", "x")),
        (
            r"""brand == 'it\'s' or brand == "say \"hi\"" or brand == "a\\b" """,
            Or(tuple(Comparison(BRAND, "==", v) for v in ("it's", 'say "hi"', "a\\b"))),
        ),
        ('brand == "é ü 🎉"', Comparison(BRAND, "==", "é ü 🎉")),
        ("\tprice\n>\r\n1 ", Comparison(PRICE, ">", 1.0)),
        ("price>1and price<2", And((Comparison(PRICE, ">", 1.0), Comparison(PRICE, "<", 2.0)))),
    ],
)
def test_each_construct_parses_to_its_tree(text: str, tree: object) -> None:
    assert parse_filter(text) == tree
    assert parse_filter(render(parse_filter(text))) == tree


A, B, C = (Comparison(PRICE, "==", float(n)) for n in (1, 2, 3))


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        # not binds tighter than and, and tighter than or; chains of one operator are one node.
        ("price == 1 or price == 2 and price == 3", Or((A, And((B, C))))),
        ("price == 1 and price == 2 or price == 3", Or((And((A, B)), C))),
        ("not price == 1 and price == 2", And((Not(A), B))),
        ("not (price == 1 and price == 2)", Not(And((A, B)))),
        ("(price == 1 or price == 2) and price == 3", And((Or((A, B)), C))),
        ("price == 1 and price == 2 and price == 3", And((A, B, C))),
        ("price == 1 or price == 2 or price == 3", Or((A, B, C))),
        ("not not price == 1", Not(Not(A))),
        ("((price == 1))", A),
    ],
)
def test_precedence(text: str, tree: object) -> None:
    assert parse_filter(text) == tree


BAD = [
    ("", "is empty; give a condition such as price < 50"),
    ("   ", "is empty; give a condition such as price < 50"),
    ("brand in", "position 9: expected '(' after 'in', found the end of the expression"),
    (
        "brand in (",
        "position 11: expected a value (a string, a number, true or false) after '(', found the end of the expression",
    ),
    (
        'brand in ("a" "b")',
        "position 15: expected ',' or ')' to close the list opened at position 10, found a string",
    ),
    (
        'brand in ("a",,)',
        "position 15: expected a value (a string, a number, true or false) after ',', found ','",
    ),
    ("brand in ()", "position 11: expected a value (a string, a number, true or false) after '(', found ')'"),
    ('brand not ("a")', "position 11: expected 'in' after 'not', found '('"),
    (
        "brand ==",
        "position 9: expected a value (a string, a number, true or false) after '==', found the end of the expression",
    ),
    (
        "brand == acme",
        "position 10: expected a value (a string, a number, true or false) after '==', found a name",
    ),
    (
        'brand "acme"',
        "position 7: expected a comparison (==, !=, <, <=, >, >=, in, not in) after the field at position 1, found a string",
    ),
    ("brand = 'acme'", "position 7: unexpected character"),
    ("price ? 3", "position 7: unexpected character"),
    (
        'colour == "red"',
        'position 1: unknown field; the fields are price, category, brand, item_id, attributes.<name> or attributes["<name>"]',
    ),
    (
        '== "red"',
        "position 1: expected a field (price, category, brand, item_id, attributes.<name> or attributes[\"<name>\"]), found '=='",
    ),
    (
        "price > 1 and",
        'position 14: expected a field (price, category, brand, item_id, attributes.<name> or attributes["<name>"]), found the end of the expression',
    ),
    (
        "and price > 1",
        "position 1: expected a field (price, category, brand, item_id, attributes.<name> or attributes[\"<name>\"]), found 'and'",
    ),
    (
        'price > 1 brand == "a"',
        "position 11: expected 'and', 'or' or the end of the expression, found a name",
    ),
    ("price > 1)", "position 10: expected 'and', 'or' or the end of the expression, found ')'"),
    (
        "(price > 1",
        "position 11: expected ')' to close the '(' at position 1, found the end of the expression",
    ),
    (
        "((price > 1) or price < 0",
        "position 26: expected ')' to close the '(' at position 1, found the end of the expression",
    ),
    ('brand == "acme', "position 10: unterminated string (a quote is missing)"),
    (r'brand == "a\nb"', "position 12: unknown escape (a string knows \\\\, \\\" and \\')"),
    ('price >= "10"', "position 10: price is compared with numbers, found a string"),
    ("price == true", "position 10: price is compared with numbers, found a boolean"),
    ('price in (1, "2")', "position 14: price is compared with numbers, found a string"),
    ('category < "b"', "position 10: category takes ==, !=, in or not in ('<' compares numbers)"),
    ("category == 3", "position 13: category is compared with strings, found a number"),
    ("item_id in (1)", "position 13: item_id is compared with strings, found a number"),
    ('attributes.size > "M"', "position 19: '>' compares numbers, found a string"),
    ("attributes.organic >= true", "position 23: '>=' compares numbers, found a boolean"),
    ("attributes == 1", "position 1: 'attributes' needs a name: attributes.<name> or attributes[\"<name>\"]"),
    ("attributes. == 1", "position 13: expected an attribute name after '.', found '=='"),
    ("attributes[color] == 1", "position 12: expected a quoted attribute name after '[', found a name"),
    ('attributes[""] == 1', "position 12: attribute names are 1-64 characters"),
    ('attributes["color" == 1', "position 20: expected ']' after the attribute name, found '=='"),
    ("price < 1e999", "position 9: the number is too large"),
    ("attributes.sku == 9007199254740992", "position 19: integers must be within ±(2**53 - 1)"),
    (
        "price > 1 and not",
        'position 18: expected a field (price, category, brand, item_id, attributes.<name> or attributes["<name>"]), found the end of the expression',
    ),
    ("price > 1 && price < 2", "position 11: unexpected character"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_a_bad_expression_is_a_422_on_filter_saying_where_and_what(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_filter(text)
    assert (raised.value.field, raised.value.message, raised.value.status) == ("filter", message, 422)


def test_limits_length_depth_and_list_size() -> None:
    long = "price > 1 or " * 80 + "price > 2"
    assert len(long) > MAX_FILTER_LENGTH
    with pytest.raises(InvalidInput, match=f"filter: is longer than {MAX_FILTER_LENGTH} characters"):
        parse_filter(long)
    assert isinstance(parse_filter("price > 1 or " * 76 + "price > 2"), Or)  # 997 characters
    deepest = "(" * MAX_DEPTH + "price > 1" + ")" * MAX_DEPTH
    assert parse_filter(deepest) == Comparison(PRICE, ">", 1.0)
    with pytest.raises(InvalidInput, match=f"position {MAX_DEPTH + 1}: nested deeper than {MAX_DEPTH}"):
        parse_filter("(" + deepest + ")")
    with pytest.raises(InvalidInput, match=f"position {4 * MAX_DEPTH + 1}: nested deeper"):
        parse_filter("not " * (MAX_DEPTH + 1) + "price > 1")
    values = ", ".join(str(n) for n in range(MAX_LIST_VALUES))
    assert len(parse_filter(f"price in ({values})").values) == MAX_LIST_VALUES  # type: ignore[union-attr]
    with pytest.raises(InvalidInput, match=f"a list holds at most {MAX_LIST_VALUES} values"):
        parse_filter(f"price in ({values}, 100)")
    assert parse_filter("attributes.sku == 9007199254740991") == Comparison(attr("sku"), "==", 2.0**53 - 1)


def test_a_rule_set_refuses_a_bad_filter_naming_the_field() -> None:
    limits = RequestLimits()
    body = json.dumps({"filter": "brand in"}).encode()
    with pytest.raises(InvalidRequest) as raised:
        parse_body(RuleSet, body, limits)
    assert raised.value.status == 422
    assert raised.value.errors == [
        {"field": "filter", "message": "position 9: expected '(' after 'in', found the end of the expression"}
    ]
    with pytest.raises(InvalidRequest) as raised:
        rules_from({"promotions": [{"name": "sale", "slots": 2, "filter": "price <"}]})
    assert raised.value.errors[0]["field"] == "promotions[0].filter"
    assert raised.value.errors[0]["message"].startswith("position 8: expected a value")
    with pytest.raises(InvalidRequest) as raised:
        rules_from({"filter": "x" * (MAX_FILTER_LENGTH + 1)})
    assert raised.value.errors == [
        {"field": "filter", "message": "String should have at most 1000 characters"}
    ]


SECRET = "zqxjvk"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "price",
                "brand",
                "category",
                "attributes",
                ".",
                "[",
                "]",
                "(",
                ")",
                ",",
                "==",
                "<",
                "!=",
                "in",
                "not",
                "and",
                "or",
                "1",
                "-2.5",
                "'a'",
                f'"{SECRET}"',
                SECRET,
                "true",
                " ",
                '"',
                "\\",
                "?",
            ]
        ),
        max_size=25,
    )
)
def test_any_text_parses_or_is_refused_cleanly_and_never_echoed(parts: list[str]) -> None:
    text = " ".join(parts)
    try:
        tree = parse_filter(text)
    except InvalidInput as error:
        assert error.field == "filter"
        assert SECRET not in error.message
        return
    assert parse_filter(render(tree)) == tree
