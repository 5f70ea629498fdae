"""Consul's ``?filter=`` expressions (hashicorp/go-bexpr's language), parsed and evaluated
against the JSON documents an endpoint answers with.

Grammar (``or`` binds loosest, then ``and``, then ``not``)::

    expr     := and_expr ("or" and_expr)*
    and_expr := not_expr ("and" not_expr)*
    not_expr := "not" not_expr | "(" expr ")" | match
    match    := selector ("==" | "!=") value
              | selector ["not"] ("contains" | "matches") value
              | selector "is" ["not"] "empty"
              | value ["not"] "in" selector
    selector := name ("." name | "[" string "]")*
    value    := "double-quoted" | `backquoted` | bare word or number

A selector names a field of the document (``Service.Tags``,
``Service.Meta.env``, ``Checks.Status``); field names match case-insensitively
when no exact match exists. Going through a list (``Checks.Status``) gives
every element's value: ``==``, ``contains`` and ``matches`` hold when any
element satisfies them, and their negations when none does. Scalars compare
by their text (``Service.Port == 8080``, ``Service.EnableTagOverride ==
true``). ``in``/``contains`` test membership in a list, a key of a map or a
substring of a string; ``is empty`` holds for a missing field, ``""``,
``[]``, ``{}`` and ``null``.

Hostile input is bounded: the expression's length, its nesting depth and
its number of comparisons have named limits, and ``matches`` refuses
patterns that backtrack exponentially in Python's ``re`` (a quantified group
holding a quantifier, back-references, look-arounds), which Go's RE2 never
does. Every refusal is a :class:`FilterError` whose text the API answers
with 400.

Example::

    f = parse_filter('Service.Meta.env == "prod" and "canary" not in Service.Tags')
    kept = [doc for doc in docs if f.matches(doc)]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

#: Longest filter expression, in characters: Consul's own filters in the wild
#: are a few hundred; 4 KiB leaves room while keeping parsing trivially cheap.
FILTER_CHARS_MAX = 4096
#: Deepest nesting of parentheses and ``not``: recursion stays far from Python's limit.
FILTER_DEPTH_MAX = 32
#: Most comparisons in one expression: evaluation cost per document is bounded.
FILTER_MATCHES_MAX = 128
#: Longest ``matches`` pattern, in characters.
FILTER_PATTERN_CHARS_MAX = 256

_ERROR_PREFIX = "Failed to create boolean expression evaluator: "


class FilterError(ValueError):
    """A filter refused: malformed, over a limit, or naming an unknown field."""

    def __init__(self, problem: str) -> None:
        super().__init__(_ERROR_PREFIX + problem)
        self.problem = problem


# -- tokens ---------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
      | (?P<op>==|!=|\(|\)|\[|\]|\.)
      | (?P<word>[A-Za-z0-9_\-+:/@]+)
    )""",
    re.VERBOSE | re.DOTALL,
)


_TRAILING_SPACE = re.compile(r"\s*\Z")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "string" | "op" | "word" | "end"
    text: str
    at: int


def _tokens(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    while pos < len(text):
        if _TRAILING_SPACE.match(text, pos):
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"unexpected character {text[pos:].lstrip()[:1]!r} at {pos}")
        kind = m.lastgroup
        assert kind is not None
        out.append(Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    out.append(Token("end", "", len(text)))
    return out


def _unquote(token: Token) -> str:
    text = token.text
    if text.startswith("`"):
        return text[1:-1]
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


# -- the tree ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selector:
    path: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join(self.path)


@dataclass(frozen=True, slots=True)
class Match:
    selector: Selector
    operator: str  # "==", "contains", "matches", "empty", "in"
    value: str
    negated: bool
    pattern: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node


@dataclass(frozen=True, slots=True)
class BoolOp:
    operator: str  # "and" | "or"
    operands: tuple[Node, ...]


Node = Match | Not | BoolOp


# -- parsing ----------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.matches = 0

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        token = self.peek()
        self.pos += 1
        return token

    def keyword(self, word: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == "word" and token.text == word

    def expect(self, kind: str, text: str | None = None) -> Token:
        token = self.next()
        if token.kind != kind or (text is not None and token.text != text):
            wanted = text or kind
            got = token.text or "end of expression"
            raise FilterError(f"expected {wanted!r} at {token.at}, found {got!r}")
        return token

    def expression(self, depth: int) -> Node:
        if depth > FILTER_DEPTH_MAX:
            raise FilterError(f"nested deeper than {FILTER_DEPTH_MAX} levels")
        operands = [self.conjunction(depth)]
        while self.keyword("or"):
            self.next()
            operands.append(self.conjunction(depth))
        return operands[0] if len(operands) == 1 else BoolOp("or", tuple(operands))

    def conjunction(self, depth: int) -> Node:
        operands = [self.negation(depth)]
        while self.keyword("and"):
            self.next()
            operands.append(self.negation(depth))
        return operands[0] if len(operands) == 1 else BoolOp("and", tuple(operands))

    def negation(self, depth: int) -> Node:
        if depth > FILTER_DEPTH_MAX:
            raise FilterError(f"nested deeper than {FILTER_DEPTH_MAX} levels")
        # "not" starts a negation unless it is the "not in" of a bare value.
        if self.keyword("not") and not self.keyword("in", 1):
            self.next()
            return Not(self.negation(depth + 1))
        if self.peek().kind == "op" and self.peek().text == "(":
            self.next()
            node = self.expression(depth + 1)
            self.expect("op", ")")
            return node
        return self.match()

    def match(self) -> Match:
        self.matches += 1
        if self.matches > FILTER_MATCHES_MAX:
            raise FilterError(f"more than {FILTER_MATCHES_MAX} comparisons")
        if self.peek().kind == "string" or self._value_then_in():
            value = self.value()
            negated = self.keyword("not")
            if negated:
                self.next()
            self.expect("word", "in")
            return Match(self.selector(), "in", value, negated)
        selector = self.selector()
        token = self.next()
        if token.kind == "op" and token.text in ("==", "!="):
            return Match(selector, "==", self.value(), token.text == "!=")
        if token.kind == "word" and token.text == "is":
            negated = self.keyword("not")
            if negated:
                self.next()
            self.expect("word", "empty")
            return Match(selector, "empty", "", negated)
        negated = token.kind == "word" and token.text == "not"
        if negated:
            token = self.next()
        if token.kind == "word" and token.text == "contains":
            return Match(selector, "contains", self.value(), negated)
        if token.kind == "word" and token.text == "matches":
            value = self.value()
            return Match(selector, "matches", value, negated, _compile(value))
        got = token.text or "end of expression"
        raise FilterError(
            f"expected an operator after {str(selector)!r} at {token.at}, found {got!r}"
        )

    def _value_then_in(self) -> bool:
        # A bare value before "in" / "not in": `canary in Service.Tags`.
        return self.peek().kind == "word" and (
            self.keyword("in", 1) or (self.keyword("not", 1) and self.keyword("in", 2))
        )

    def value(self) -> str:
        token = self.next()
        if token.kind == "string":
            return _unquote(token)
        if token.kind == "word":
            return token.text
        got = token.text or "end of expression"
        raise FilterError(f"expected a value at {token.at}, found {got!r}")

    def selector(self) -> Selector:
        first = self.expect("word")
        path = [first.text]
        while self.peek().kind == "op" and self.peek().text in (".", "["):
            if self.next().text == ".":
                path.append(self.expect("word").text)
            else:
                token = self.next()
                if token.kind != "string":
                    raise FilterError(f"expected a quoted map key at {token.at}")
                path.append(_unquote(token))
                self.expect("op", "]")
        return Selector(tuple(path))


# Exponential backtracking in Python's re needs a quantified group that itself
# holds a quantifier or an alternation ((a+)+, (a|aa)*), a back-reference or a
# look-around; these are refused, as RE2 (Consul's engine) never backtracks.
_QUANTIFIERS = frozenset("*+?{")


def _backtracks(pattern: str) -> bool:
    if re.search(r"\\[1-9]|\(\?[=!<P]", pattern):
        return True
    risky: list[bool] = []  # per open group: holds a quantifier or an alternation
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":  # a character class holds no quantifier
            end = pattern.find("]", i + 2)
            i = len(pattern) if end < 0 else end + 1
            continue
        following = pattern[i + 1] if i + 1 < len(pattern) else ""
        if ch == "(":
            risky.append(False)
            if following == "?":  # (?:...), (?i): the "?" is syntax, not a quantifier
                i += 3
                continue
        elif ch == ")" and risky:
            inner = risky.pop()
            if inner and following in _QUANTIFIERS:
                return True
            if risky:
                risky[-1] = risky[-1] or inner
        elif (ch in _QUANTIFIERS or ch == "|") and risky:
            risky[-1] = True
        i += 1
    return False


def _compile(pattern: str) -> re.Pattern[str]:
    if len(pattern) > FILTER_PATTERN_CHARS_MAX:
        raise FilterError(f"pattern longer than {FILTER_PATTERN_CHARS_MAX} characters")
    if _backtracks(pattern):
        raise FilterError(
            f"pattern {pattern[:64]!r} may backtrack without bound "
            "(nested quantifier, alternation under a quantifier, back-reference or look-around)"
        )
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise FilterError(f"invalid pattern {pattern[:64]!r}: {exc}") from exc


# -- evaluation -------------------------------------------------------------------

_MISSING = object()


def _field(doc: Any, name: str) -> Any:
    if not isinstance(doc, dict):
        return _MISSING
    if name in doc:
        return doc[name]
    folded = name.casefold()
    for key, value in doc.items():
        if isinstance(key, str) and key.casefold() == folded:
            return value
    return _MISSING


def _resolve(doc: Any, path: tuple[str, ...]) -> Iterator[Any]:
    """Every value the selector reaches; a list on the way fans out to its elements."""
    if not path:
        yield doc
        return
    if isinstance(doc, list):
        for item in doc:
            yield from _resolve(item, path)
        return
    value = _field(doc, path[0])
    if value is not _MISSING:
        yield from _resolve(value, path[1:])


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _contains(container: Any, value: str) -> bool:
    if isinstance(container, list):
        return any(_text(item) == value for item in container)
    if isinstance(container, dict):
        return value in container
    if isinstance(container, str):
        return value in container
    return False


def _empty(value: Any) -> bool:
    return value is None or value in ("", [], {})


def _holds(match: Match, values: list[Any]) -> bool:
    if match.operator == "empty":
        return all(_empty(v) for v in values)
    if match.operator == "==":
        return any(_text(v) == match.value for v in values if not isinstance(v, (list, dict)))
    if match.operator == "matches":
        assert match.pattern is not None
        return any(
            match.pattern.search(_text(v)) is not None
            for v in values
            if not isinstance(v, (list, dict))
        )
    # "in" and "contains": membership in what the selector names.
    return any(_contains(v, match.value) for v in values)


def _evaluate(node: Node, doc: Any) -> bool:
    if isinstance(node, Match):
        return _holds(node, list(_resolve(doc, node.selector.path))) != node.negated
    if isinstance(node, Not):
        return not _evaluate(node.operand, doc)
    if node.operator == "and":
        return all(_evaluate(n, doc) for n in node.operands)
    return any(_evaluate(n, doc) for n in node.operands)


def _selectors(node: Node) -> Iterator[Selector]:
    if isinstance(node, Match):
        yield node.selector
    elif isinstance(node, Not):
        yield from _selectors(node.operand)
    else:
        for operand in node.operands:
            yield from _selectors(operand)


@dataclass(frozen=True, slots=True)
class Filter:
    """A parsed expression; :meth:`matches` tells whether a document passes."""

    text: str
    root: Node

    def matches(self, doc: Any) -> bool:
        return _evaluate(self.root, doc)

    def select(self, docs: Iterable[Any]) -> list[Any]:
        return [d for d in docs if self.matches(d)]

    def check_fields(self, fields: Iterable[str]) -> None:
        """Refuse a selector whose first name is not a field of the endpoint's documents
        (Consul answers 400 for an unknown selector rather than matching nothing)."""
        known = {f.casefold() for f in fields}
        for selector in _selectors(self.root):
            if selector.path[0].casefold() not in known:
                raise FilterError(f'Selector "{selector}" is not valid')


def parse_filter(text: str) -> Filter:
    """Parse ``text``; :class:`FilterError` when malformed or over a limit."""
    if len(text) > FILTER_CHARS_MAX:
        raise FilterError(f"expression longer than {FILTER_CHARS_MAX} characters")
    if "\x00" in text:
        raise FilterError("expression contains a NUL character")
    parser = _Parser(_tokens(text))
    if parser.peek().kind == "end":
        raise FilterError("empty expression")
    root = parser.expression(0)
    trailing = parser.peek()
    if trailing.kind != "end":
        raise FilterError(f"unexpected {trailing.text!r} at {trailing.at}")
    return Filter(text, root)
