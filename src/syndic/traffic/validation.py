"""Checks every traffic component applies to its settings, with one wording.

A rule document and a constructor argument are refused the same way: a
:class:`RuleError` naming the field's path, what it must be, and (briefly)
what it was, so ``breaker.failure_ratio: must be in (0, 1], got 1.5`` reads
the same whichever component raised it.
"""

from __future__ import annotations

import math

from syndic.traffic.errors import RuleError

# A hostile value's repr can be megabytes; error messages show at most this.
SHOWN_CHARS_MAX = 60


def shown(value: object) -> str:
    """``repr(value)``, cut to a readable length."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS_MAX else text[: SHOWN_CHARS_MAX - 3] + "..."


def type_name(value: object) -> str:
    """The value's type as a rule document's author would name it (None is null)."""
    return "null" if value is None else type(value).__name__


def check_int(path: str, value: object, low: int, high: int) -> int:
    """An int in [low, high]; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(path, f"must be an integer, got {type_name(value)}")
    if not low <= value <= high:
        raise RuleError(path, f"must be in [{low}, {high}], got {shown(value)}")
    return value


def check_number(
    path: str, value: object, low: float, high: float, *, low_open: bool = True
) -> float:
    """A finite number in (low, high] (or [low, high] when ``low_open`` is false)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(path, f"must be a number, got {type_name(value)}")
    too_low = value <= low if low_open else value < low
    if not math.isfinite(value) or too_low or value > high:
        bracket = "(" if low_open else "["
        raise RuleError(path, f"must be in {bracket}{low:g}, {high:g}], got {shown(value)}")
    return float(value)
