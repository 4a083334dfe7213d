"""Filter expressions over catalog attributes: `price >= 10 and brand in ("acme", "zeta")`.

A small hand-written tokenizer and recursive-descent parser (no `eval`, no Python `ast`): the grammar is
in docs/rules.md, and this module is its only implementation. A parsed expression is a tree of frozen
nodes; `nextpick.domain.catalog_columns` turns a tree into a boolean mask over a model's vocabulary.

Errors are `InvalidInput("filter", "position N: ...")`: N is the 1-based character position, and the
message says what was expected there without echoing the caller's text back (docs/design.md, "Errors")."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from nextpick.errors import InvalidInput

# A filter arrives in a query string or a stored rule set: 1,000 characters hold ~40 conditions, far more
# than any merchandiser's rule, and keep the parse (and the first mask build) well under a millisecond.
MAX_FILTER_LENGTH = 1000
# Parentheses and `not`s nested deeper than this are refused: recursion stays far below Python's limit.
MAX_DEPTH = 20
# Values in one `in (...)` list.
MAX_LIST_VALUES = 100
# Integers beyond this are not exact as floats (every catalog number is within it: docs/design.md).
MAX_SAFE_INTEGER = 2**53 - 1

Value = str | float | bool
FieldKind = Literal["price", "category", "item_id", "attribute"]
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
ORDERINGS = ("<", "<=", ">", ">=")
KEYWORDS = frozenset({"and", "or", "not", "in", "true", "false"})
# `brand` is not an ItemFields field: it is the attribute of that name, the one filters use most.
ATTRIBUTE_SHORTHANDS = frozenset({"brand"})
FIELDS_HELP = 'price, category, brand, item_id, attributes.<name> or attributes["<name>"]'


@dataclass(frozen=True)
class FieldRef:
    kind: FieldKind
    # The attribute's name (kind "attribute" only).
    name: str | None = None

    def __str__(self) -> str:
        return f"attributes.{self.name}" if self.kind == "attribute" else self.kind


@dataclass(frozen=True)
class Comparison:
    field: FieldRef
    op: str
    value: Value


@dataclass(frozen=True)
class Membership:
    field: FieldRef
    values: tuple[Value, ...]
    negated: bool = False


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = Comparison | Membership | Not | And | Or


# --- tokens -----------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<number>-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op>==|!=|<=|>=|<|>)
  | (?P<punct>[()\[\].,])
    """,
    re.VERBOSE | re.DOTALL,
)
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class Token:
    kind: str  # number, name, string, op, punct, end
    text: str
    position: int  # 1-based

    def describe(self) -> str:
        # What was found, without the caller's text: keywords and operators are the grammar's own.
        if self.kind == "end":
            return "the end of the expression"
        if self.kind == "name":
            return f"'{self.text}'" if self.text in KEYWORDS else "a name"
        if self.kind in ("op", "punct"):
            return f"'{self.text}'"
        return f"a {self.kind}"


def _error(position: int, message: str) -> InvalidInput:
    return InvalidInput("filter", f"position {position}: {message}")


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    at = 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if match is None:
            if text[at] in "\"'":
                raise _error(at + 1, "unterminated string (a quote is missing)")
            raise _error(at + 1, "unexpected character")
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            tokens.append(Token(kind, match.group(), at + 1))
        at = match.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


def _string_value(token: Token) -> str:
    def unescape(match: re.Match[str]) -> str:
        if match.group(1) not in "\\\"'":
            raise _error(
                token.position + 1 + match.start(), "unknown escape (a string knows \\\\, \\\" and \\')"
            )
        return match.group(1)

    return _ESCAPE.sub(unescape, token.text[1:-1])


def _number_value(token: Token) -> float:
    value = float(token.text)
    if not math.isfinite(value):
        raise _error(token.position, "the number is too large")
    is_integer = not any(mark in token.text for mark in ".eE")
    if is_integer and abs(int(token.text)) > MAX_SAFE_INTEGER:
        raise _error(token.position, "integers must be within ±(2**53 - 1)")
    return value


# --- parser -----------------------------------------------------------------------------------------


class _Parser:
    """filter = or ; or = and {"or" and} ; and = unary {"and" unary} ; unary = "not" unary | primary ;
    primary = "(" or ")" | condition (the full grammar, with values: docs/rules.md)."""

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._at = 0
        self._depth = 0

    @property
    def _token(self) -> Token:
        return self._tokens[self._at]

    def _advance(self) -> Token:
        token = self._tokens[self._at]
        self._at += 1
        return token

    def _is(self, kind: str, text: str | None = None) -> bool:
        token = self._token
        return token.kind == kind and (text is None or token.text == text)

    def _expect(self, kind: str, text: str, after: str) -> Token:
        if not self._is(kind, text):
            raise _error(
                self._token.position, f"expected '{text}' after {after}, found {self._token.describe()}"
            )
        return self._advance()

    def parse(self) -> Node:
        node = self._or()
        if not self._is("end"):
            raise _error(
                self._token.position,
                f"expected 'and', 'or' or the end of the expression, found {self._token.describe()}",
            )
        return node

    def _or(self) -> Node:
        operands = [self._and()]
        while self._is("name", "or"):
            self._advance()
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self) -> Node:
        operands = [self._unary()]
        while self._is("name", "and"):
            self._advance()
            operands.append(self._unary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _deeper(self, token: Token) -> None:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _error(token.position, f"nested deeper than {MAX_DEPTH} levels of parentheses and 'not'")

    def _unary(self) -> Node:
        if self._is("name", "not"):
            self._deeper(self._advance())
            node: Node = Not(self._unary())
            self._depth -= 1
            return node
        return self._primary()

    def _primary(self) -> Node:
        if self._is("punct", "("):
            opening = self._advance()
            self._deeper(opening)
            node = self._or()
            if not self._is("punct", ")"):
                raise _error(
                    self._token.position,
                    f"expected ')' to close the '(' at position {opening.position}, "
                    f"found {self._token.describe()}",
                )
            self._advance()
            self._depth -= 1
            return node
        return self._condition()

    def _condition(self) -> Node:
        field_token = self._token
        field = self._field()
        if self._is("name", "not") or self._is("name", "in"):
            negated = self._advance().text == "not"
            if negated:
                self._expect("name", "in", "'not'")
            values = self._values()
            for value, position in values:
                _check_value(field, "in", value, position)
            return Membership(field, tuple(value for value, _ in values), negated)
        if not self._is("op"):
            raise _error(
                self._token.position,
                f"expected a comparison (==, !=, <, <=, >, >=, in, not in) after the field "
                f"at position {field_token.position}, found {self._token.describe()}",
            )
        op_token = self._advance()
        op = op_token.text
        if op in ORDERINGS and field.kind in ("category", "item_id"):
            raise _error(
                op_token.position, f"{field.kind} takes ==, !=, in or not in ('{op}' compares numbers)"
            )
        value, position = self._value(f"'{op}'")
        _check_value(field, op, value, position)
        return Comparison(field, op, value)

    def _field(self) -> FieldRef:
        token = self._token
        if token.kind != "name" or token.text in KEYWORDS:
            raise _error(token.position, f"expected a field ({FIELDS_HELP}), found {token.describe()}")
        self._advance()
        if token.text in ("price", "category", "item_id"):
            return FieldRef(token.text)  # type: ignore[arg-type]
        if token.text in ATTRIBUTE_SHORTHANDS:
            return FieldRef("attribute", token.text)
        if token.text != "attributes":
            raise _error(token.position, f"unknown field; the fields are {FIELDS_HELP}")
        return FieldRef("attribute", self._attribute_name(token))

    def _attribute_name(self, attributes: Token) -> str:
        if self._is("punct", "."):
            self._advance()
            if not self._is("name"):
                raise _error(
                    self._token.position,
                    f"expected an attribute name after '.', found {self._token.describe()}",
                )
            return self._advance().text
        if self._is("punct", "["):
            self._advance()
            if not self._is("string"):
                raise _error(
                    self._token.position,
                    f"expected a quoted attribute name after '[', found {self._token.describe()}",
                )
            name_token = self._advance()
            name = _string_value(name_token)
            if not 1 <= len(name) <= 64:
                raise _error(name_token.position, "attribute names are 1-64 characters")
            self._expect("punct", "]", "the attribute name")
            return name
        raise _error(
            attributes.position, "'attributes' needs a name: attributes.<name> or attributes[\"<name>\"]"
        )

    def _value(self, after: str) -> tuple[Value, int]:
        token = self._token
        if token.kind == "string":
            self._advance()
            return _string_value(token), token.position
        if token.kind == "number":
            self._advance()
            return _number_value(token), token.position
        if token.kind == "name" and token.text in ("true", "false"):
            self._advance()
            return token.text == "true", token.position
        raise _error(
            token.position,
            f"expected a value (a string, a number, true or false) after {after}, found {token.describe()}",
        )

    def _values(self) -> list[tuple[Value, int]]:
        opening = self._expect("punct", "(", "'in'")
        values = [self._value("'('")]
        while self._is("punct", ","):
            comma = self._advance()
            if self._is("punct", ")"):  # a trailing comma, as in Python and most query languages
                break
            values.append(self._value("','"))
            if len(values) > MAX_LIST_VALUES:
                raise _error(comma.position, f"a list holds at most {MAX_LIST_VALUES} values")
        if not self._is("punct", ")"):
            raise _error(
                self._token.position,
                f"expected ',' or ')' to close the list opened at position {opening.position}, "
                f"found {self._token.describe()}",
            )
        self._advance()
        return values


def _kind_of(value: Value) -> str:
    return "a boolean" if isinstance(value, bool) else "a number" if isinstance(value, float) else "a string"


def _check_value(field: FieldRef, op: str, value: Value, position: int) -> None:
    """The checks the grammar cannot express: which values each field takes."""
    is_number = isinstance(value, float) and not isinstance(value, bool)
    if field.kind == "price" and not is_number:
        raise _error(position, f"price is compared with numbers, found {_kind_of(value)}")
    if field.kind in ("category", "item_id") and not isinstance(value, str):
        raise _error(position, f"{field.kind} is compared with strings, found {_kind_of(value)}")
    if field.kind == "attribute" and op in ORDERINGS and not is_number:
        raise _error(position, f"'{op}' compares numbers, found {_kind_of(value)}")


@lru_cache(maxsize=256)
def parse_filter(text: str) -> Node:
    """The expression's tree, or `InvalidInput("filter", "position N: what was expected")`.

    Cached: a stored rule set's filter is parsed once per container, not per request (a refused one is
    not cached, so bad input cannot fill the cache)."""
    if len(text) > MAX_FILTER_LENGTH:
        raise InvalidInput("filter", f"is longer than {MAX_FILTER_LENGTH} characters")
    tokens = tokenize(text)
    if tokens[0].kind == "end":
        raise InvalidInput("filter", "is empty; give a condition such as price < 50")
    return _Parser(tokens).parse()


def render(node: Node) -> str:
    """A tree back to an expression that parses to the same tree (tests round-trip through it)."""
    if isinstance(node, Comparison):
        return f"{_field_text(node.field)} {node.op} {_value_text(node.value)}"
    if isinstance(node, Membership):
        keyword = "not in" if node.negated else "in"
        return f"{_field_text(node.field)} {keyword} ({', '.join(_value_text(v) for v in node.values)})"
    if isinstance(node, Not):
        return f"not ({render(node.operand)})"
    joiner = " and " if isinstance(node, And) else " or "
    return "(" + joiner.join(render(operand) for operand in node.operands) + ")"


def _field_text(field: FieldRef) -> str:
    if field.kind != "attribute":
        return field.kind
    assert field.name is not None
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", field.name) and field.name not in KEYWORDS:
        return f"attributes.{field.name}"
    return f"attributes[{_value_text(field.name)}]"


def _value_text(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
