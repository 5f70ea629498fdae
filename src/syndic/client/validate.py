"""Checks and coercions made before a request is built, so bad input never
leaves the process: a wrong type, an empty key, a range that cannot be
meant, a value over the request limit.

Keys and values accept ``str`` (encoded as UTF-8) or bytes-like objects.
"""

from __future__ import annotations

from typing import Final, TypeAlias

from syndic.client.errors import InvalidRequestError, RequestTooLargeError

Bytesish: TypeAlias = str | bytes | bytearray | memoryview

# etcd: embed.DefaultMaxRequestBytes. A server refuses a larger request with
# "etcdserver: request is too large"; the client refuses it before sending.
REQUEST_BYTES_MAX_DEFAULT: Final = 1536 * 1024
# etcd's int64 fields: a larger number cannot be encoded.
INT64_MAX: Final = 2**63 - 1
UINT64_MAX: Final = 2**64 - 1


class InvalidTypeError(InvalidRequestError, TypeError):
    """An argument has the wrong type (a TypeError too, as Python callers expect)."""


def to_bytes(name: str, value: object) -> bytes:
    """``value`` as bytes; str is UTF-8; anything else is an InvalidTypeError."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise InvalidTypeError(f"{name} must be str or bytes, got {type(value).__name__}")


def key_bytes(key: object, *, allow_empty: bool = False) -> bytes:
    data = to_bytes("key", key)
    if not data and not allow_empty:
        raise InvalidRequestError("key must not be empty (etcd: key is not provided)")
    return data


def value_bytes(value: object, request_bytes_max: int) -> bytes:
    data = to_bytes("value", value)
    if len(data) > request_bytes_max:
        raise RequestTooLargeError(
            f"value of {len(data)} bytes is over the request limit of {request_bytes_max} "
            "bytes (etcd: request is too large)"
        )
    return data


def check_request_size(size_bytes: int, request_bytes_max: int) -> None:
    if size_bytes > request_bytes_max:
        raise RequestTooLargeError(
            f"request of {size_bytes} bytes is over the limit of {request_bytes_max} bytes "
            "(etcd: request is too large)"
        )


def int_in(name: str, value: object, low: int = 0, high: int = INT64_MAX) -> int:
    """An int in ``[low, high]``; bools and floats are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise InvalidRequestError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidTypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def prefix_end(prefix: bytes) -> bytes:
    """The range end covering every key starting with ``prefix`` (etcd: GetPrefixRangeEnd).

    >>> prefix_end(b"app/"), prefix_end(b"a\\xff"), prefix_end(b"\\xff")
    (b'app0', b'b', b'\\x00')
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\x00"  # every key from `prefix` on
    return stripped[:-1] + bytes([stripped[-1] + 1])


def key_range(
    key: object, *, prefix: bool, range_end: object | None, from_key: bool
) -> tuple[bytes, bytes]:
    """(key, range_end) for a single key, a prefix, an explicit end or "from key on".

    An empty key is allowed with ``prefix`` or ``from_key`` and means every
    key (etcdctl's ``get "" --prefix``).
    """
    flag("prefix", prefix)
    flag("from_key", from_key)
    chosen = sum((prefix, from_key, range_end is not None))
    if chosen > 1:
        raise InvalidRequestError("give at most one of prefix, from_key and range_end")
    start = key_bytes(key, allow_empty=prefix or from_key)
    if prefix:
        if not start:
            return b"\x00", b"\x00"
        return start, prefix_end(start)
    if from_key:
        return (start or b"\x00"), b"\x00"
    if range_end is None:
        return start, b""
    end = to_bytes("range_end", range_end)
    if end != b"\x00" and end <= start:
        raise InvalidRequestError(
            f"range_end {end!r} must sort after key {start!r} (or be b'\\x00' for 'to the end')"
        )
    return start, end
