"""A faster ``__init__`` for the core's frozen, slotted value types.

A frozen dataclass's generated ``__init__`` stores each field with
``object.__setattr__(self, "name", value)``: a global lookup, an attribute
lookup, and a search of the class for the slot by name, per field. The Raft
core builds a :class:`~syndic.raft.messages.Message` per peer message and a
``Ready`` per cycle, so that search was a large share of a message's cost (a
12-field message took about three times as long to build as a mutable one).

:func:`fast_frozen_init` replaces that ``__init__`` with one that stores each
field through its slot descriptor's ``__set__``, found once when the class is
defined. The signature, the defaults, the order of the stores and the call
to ``__post_init__`` are the dataclass's own; the class stays frozen (its
``__setattr__`` still refuses), so only construction changes, and only in
speed.

>>> from dataclasses import dataclass
>>> @fast_frozen_init
... @dataclass(frozen=True, slots=True)
... class Point:
...     x: int
...     y: int = 0
>>> Point(1), Point(1, 2) == Point(x=1, y=2)
(Point(x=1, y=0), True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


def _slot_fields(cls: type) -> tuple[tuple[dataclasses.Field[Any], ...], dict[str, Any]]:
    """``cls``'s dataclass fields, and a namespace holding each field's slot
    setter as ``_set_<name>``; TypeError unless ``cls`` is frozen and slotted."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} is not a frozen, slotted dataclass")
    fields = dataclasses.fields(cls)
    return fields, {f"_set_{f.name}": cls.__dict__[f.name].__set__ for f in fields}


def fast_frozen_init(cls: type[_T]) -> type[_T]:
    """Give the frozen, slotted dataclass ``cls`` a descriptor-based ``__init__``.

    Only the plain case is handled (every field in ``__init__``, positional or
    keyword, with a plain default or none); anything else keeps the
    dataclass's own ``__init__``, which is correct, merely slower.
    """
    fields, namespace = _slot_fields(cls)
    if any(not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING for f in fields):
        return cls
    signature: list[str] = []
    body: list[str] = []
    for f in fields:
        if f.default is dataclasses.MISSING:
            signature.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            signature.append(f"{f.name}=_default_{f.name}")
        body.append(f"    _set_{f.name}(self, {f.name})")
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(signature)}):\n" + "\n".join(body) + "\n"
    # The source is built from the dataclass's own field names only.
    exec(source, namespace)
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = dict(cls.__init__.__annotations__)
    setattr(cls, "__init__", init)  # noqa: B010 - mypy refuses assigning a method
    return cls


def unchecked_constructor(cls: type[_T]) -> Callable[..., _T]:
    """A positional constructor for the frozen, slotted dataclass ``cls`` that
    skips ``__post_init__``: for values whose types a decoder already
    guarantees (a protobuf message's bytes, int64 and bool fields), where that
    check would test them a second time. Every field must be given, in order.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True, slots=True)
    ... class Pair:
    ...     a: int
    ...     b: int = 0
    ...     def __post_init__(self) -> None:
    ...         raise AssertionError("not called")
    >>> unchecked_constructor(Pair)(1, 2)
    Pair(a=1, b=2)
    """
    fields, namespace = _slot_fields(cls)
    namespace.update(_new=object.__new__, _cls=cls)
    names = [f.name for f in fields]
    body = [f"    _set_{name}(self, {name})" for name in names]
    source = (
        f"def build({', '.join(names)}):\n    self = _new(_cls)\n"
        + "\n".join(body)
        + "\n    return self\n"
    )
    # The source is built from the dataclass's own field names only.
    exec(source, namespace)
    build: Callable[..., _T] = namespace["build"]
    build.__qualname__ = f"{cls.__qualname__}.<unchecked>"
    return build
