"""Parse a config's content by its format, so a malformed document is refused
at publish time and clients get a value they can load.

Every format is text (UTF-8). yaml, json and toml give their natural
values; properties gives a ``dict[str, str]`` read as Java's
``Properties.load`` reads it; text gives the string itself.

YAML aliases are refused: an alias bomb (``a: &a [*a, *a, ...]``) is a few
hundred bytes that expands into billions of nodes once a validator or a
typed loader walks it.

>>> parse_content(Format.PROPERTIES, "# db\\nhost = db1\\nport: 5432\\n")
{'host': 'db1', 'port': '5432'}
>>> parse_content(Format.JSON, "[1,")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
syndic.config.errors.InvalidInputError: content: not valid json: Expecting value: ...
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Callable
from typing import Any

import yaml

from syndic.config.errors import InvalidInputError
from syndic.config.model import Format

# libyaml's loader when present: about ten times faster than the pure-Python
# one, and a publish parses its content once.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _reject_constant(token: str) -> float:
    # NaN and Infinity are not JSON; a schema cannot reason about them.
    raise ValueError(f"{token} is not valid JSON")


def _json(text: str) -> Any:
    return json.loads(text, parse_constant=_reject_constant)


def _yaml(text: str) -> Any:
    # Events first: refusing aliases before anything is built is what stops a bomb.
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            mark = event.start_mark
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise ValueError(f"aliases are not allowed in configs{where}")
    value = yaml.load(text, Loader=_Loader)  # a safe loader: plain data only
    _check_finite(value)
    return value


def _check_finite(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f"{item} is not a finite number")
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\" or i + 1 == len(text):
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "u":
            code = text[i + 2 : i + 6]
            if len(code) != 4 or any(c not in "0123456789abcdefABCDEF" for c in code):
                raise ValueError(f"bad \\u escape {text[i : i + 6]!r}")
            out.append(chr(int(code, 16)))
            i += 6
            continue
        out.append({"t": "\t", "n": "\n", "r": "\r", "f": "\f"}.get(nxt, nxt))
        i += 2
    return "".join(out)


def _logical_lines(text: str) -> list[str]:
    """Java's rule: a line ending in an odd number of backslashes continues."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.lstrip() if pending else raw
        trailing = len(line) - len(line.rstrip("\\"))
        if trailing % 2 == 1:
            pending += line[:-1]
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def _split_property(line: str) -> tuple[str, str]:
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\":
            i += 2
            continue
        if ch in "=: \t\f":
            break
        i += 1
    key, rest = line[:i], line[i:].lstrip(" \t\f")
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(" \t\f")
    return _unescape(key), _unescape(rest)


def _properties(text: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in _logical_lines(text):
        stripped = line.lstrip(" \t\f")
        if not stripped or stripped[0] in "#!":
            continue
        key, value = _split_property(stripped)
        result[key] = value
    return result


_PARSERS: dict[Format, Callable[[str], Any]] = {
    Format.JSON: _json,
    Format.YAML: _yaml,
    Format.TOML: tomllib.loads,
    Format.PROPERTIES: _properties,
    Format.TEXT: lambda text: text,
}


def parse_content(fmt: Format, text: str) -> Any:
    """The value ``text`` holds in ``fmt``; raises InvalidInputError naming the format."""
    try:
        return _PARSERS[fmt](text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        detail = str(exc).replace("\n", " ")
        raise InvalidInputError("content", f"not valid {fmt.value}: {detail}") from None


def decode_utf8(raw: bytes) -> str:
    """Content arrives as bytes from files and HTTP bodies; every format is UTF-8 text."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError("content", f"not UTF-8 text: {exc}") from None
