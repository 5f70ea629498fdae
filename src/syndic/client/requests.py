"""Building etcd's KV requests from Python arguments, checked first.

One builder per request serves both the client's methods and the ops of a
transaction, so a ``get`` and an ``Op.get`` accept exactly the same options.
Each returns the request's protobuf wire bytes (:mod:`syndic.client.wire`).
"""

from __future__ import annotations

from typing import Final, Literal

from syndic.client import wire
from syndic.client.errors import InvalidRequestError
from syndic.client.validate import (
    REQUEST_BYTES_MAX_DEFAULT,
    flag,
    int_in,
    key_bytes,
    key_range,
    value_bytes,
)

SortOrder = Literal["none", "ascend", "descend"]
SortTarget = Literal["key", "version", "create", "mod", "value"]

_SORT_ORDERS: Final = {"none": 0, "ascend": 1, "descend": 2}
_SORT_TARGETS: Final = {"key": 0, "version": 1, "create": 2, "mod": 3, "value": 4}


def _choice(name: str, value: object, choices: dict[str, int]) -> int:
    if not isinstance(value, str) or value not in choices:
        raise InvalidRequestError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return choices[value]


def range_request(
    key: object,
    *,
    prefix: bool = False,
    range_end: object | None = None,
    from_key: bool = False,
    limit: int = 0,
    revision: int = 0,
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
    sort_order: SortOrder = "none",
    sort_target: SortTarget = "key",
    min_mod_revision: int = 0,
    max_mod_revision: int = 0,
    min_create_revision: int = 0,
    max_create_revision: int = 0,
) -> bytes:
    """A RangeRequest's wire bytes."""
    start, end = key_range(key, prefix=prefix, range_end=range_end, from_key=from_key)
    numbers = (
        int_in("limit", limit),
        int_in("revision", revision),
        _choice("sort_order", sort_order, _SORT_ORDERS),
        _choice("sort_target", sort_target, _SORT_TARGETS),
        int(flag("serializable", serializable)),
        int(flag("keys_only", keys_only)),
        int(flag("count_only", count_only)),
        int_in("min_mod_revision", min_mod_revision),
        int_in("max_mod_revision", max_mod_revision),
        int_in("min_create_revision", min_create_revision),
        int_in("max_create_revision", max_create_revision),
    )
    return wire.range_request(start, end, numbers)


def put_request(
    key: object,
    value: object,
    *,
    lease: int = 0,
    prev_kv: bool = False,
    request_bytes_max: int = REQUEST_BYTES_MAX_DEFAULT,
) -> bytes:
    """A PutRequest's wire bytes."""
    return wire.put_request(
        key_bytes(key),
        value_bytes(value, request_bytes_max),
        int_in("lease", lease),
        flag("prev_kv", prev_kv),
    )


def delete_request(
    key: object,
    *,
    prefix: bool = False,
    range_end: object | None = None,
    from_key: bool = False,
    prev_kv: bool = False,
) -> bytes:
    """A DeleteRangeRequest's wire bytes."""
    start, end = key_range(key, prefix=prefix, range_end=range_end, from_key=from_key)
    return wire.delete_request(start, end, flag("prev_kv", prev_kv))
