"""Load a parsed config into a dataclass, checking every field's type.

Strict in the same way as the traffic rule parser: unknown keys are
refused, ``true`` is not an integer, ``"3"`` is not a number, and the error
names the path (``pool.size: expected int, got str``). An int is accepted
where a float is declared, since YAML and JSON write ``1`` for ``1.0``.

>>> from dataclasses import dataclass
>>> @dataclass
... class Pool:
...     size: int
...     timeout_s: float = 1.0
>>> load_dataclass(Pool, {"size": 8})
Pool(size=8, timeout_s=1.0)
>>> load_dataclass(Pool, {"size": "8"})
Traceback (most recent call last):
...
syndic.config.errors.InvalidInputError: size: expected int, got str
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar, Union

from syndic.config.errors import InvalidInputError

T = TypeVar("T")


def _fail(path: str, expected: str, value: object) -> InvalidInputError:
    return InvalidInputError(path or "$", f"expected {expected}, got {type(value).__name__}")


def _convert(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(option, value, path)
            except InvalidInputError:
                continue
        raise _fail(path, str(tp), value)
    if tp is type(None):
        if value is not None:
            raise _fail(path, "null", value)
        return None
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp, value, path)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list):
            raise _fail(path, "list", value)
        args = typing.get_args(tp)
        item = args[0] if args else Any
        items = [_convert(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin or tp) is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _fail(path, "mapping", value)
        args = typing.get_args(tp)
        val_tp = args[1] if args else Any
        return {str(k): _convert(val_tp, v, f"{path}.{k}") for k, v in value.items()}
    return _scalar(tp, value, path)


def _scalar(tp: Any, value: Any, path: str) -> Any:
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _fail(path, "float", value)
        return float(value)
    if tp is int and isinstance(value, bool):
        raise _fail(path, "int", value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _fail(path, getattr(tp, "__name__", str(tp)), value)


def _dataclass(cls: type[T], value: Any, path: str) -> T:
    if not isinstance(value, Mapping):
        raise _fail(path, "mapping", value)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(value) - set(fields)
    if unknown:
        raise InvalidInputError(path or "$", f"unknown fields {sorted(map(str, unknown))}")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], sub)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise InvalidInputError(sub, "is required")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(path or "$", str(exc)) from None


def load_dataclass(cls: type[T], value: Any) -> T:
    """An instance of the dataclass ``cls`` built from ``value`` (a parsed config)."""
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise TypeError(f"{cls!r} is not a dataclass")
    return _dataclass(cls, value, "")
