"""etcd's KV requests written, and their answers read, as protobuf wire bytes.

Every call of a client builds one request and reads one answer, so on the
hot path the protobuf runtime's objects cost more than the work: building a
13-field ``RangeRequest`` and serializing it, or walking a ``RangeResponse``
field by field into the client's values, took 10 µs each, several times
the call's HTTP/2 framing. Protobuf's encoding is simple enough to write by
hand (https://protobuf.dev/programming-guides/encoding/): a field is its
number and wire type as a varint, then a varint or a length and the bytes.

* Requests are written fields in number order with proto3's defaults left
  out (a oneof member is written even when it is zero, as it is set), which
  is exactly what ``SerializeToString`` writes; a test checks the bytes.
* Answers are read straight into :mod:`syndic.client.types`. Fields this
  client does not know are skipped by their wire type, as protobuf does, so
  a newer server's additions are harmless; truncated or malformed bytes
  raise :class:`MalformedAnswerError`, never a wrong value.

The field numbers are those of etcd's ``rpc.proto`` and ``kv.proto``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeAlias

from syndic.client.errors import ClientError
from syndic.client.types import DeleteResult, GetResult, KeyValue, OpResult, PutResult, TxnResult
from syndic.protowire import varint

_Reader: TypeAlias = Callable[[bytes], "OpResult"]

_INT64_SIGN: Final = 1 << 63

_VARINT: Final = 0
_FIXED64: Final = 1
_LEN: Final = 2
_FIXED32: Final = 5


class MalformedAnswerError(ClientError):
    """The member's answer is not a valid protobuf message of the expected type."""


def _tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def _int_field(tag: bytes, value: int) -> bytes:
    """A varint field, or nothing for 0 (proto3 leaves default values out)."""
    return tag + varint(value) if value else b""


def _bytes_field(tag: bytes, value: bytes) -> bytes:
    """A length-delimited field, or nothing when empty (a proto3 default)."""
    return tag + varint(len(value)) + value if value else b""


def len_field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field written even when empty (a set oneof, a list item)."""
    return tag + varint(len(payload)) + payload


# ------------------------------------------------------------------ requests

# Tags of RangeRequest fields 1..13, in number order.
_RANGE_TAGS: Final = (
    _tag(1, _LEN),  # key
    _tag(2, _LEN),  # range_end
    _tag(3, _VARINT),  # limit
    _tag(4, _VARINT),  # revision
    _tag(5, _VARINT),  # sort_order
    _tag(6, _VARINT),  # sort_target
    _tag(7, _VARINT),  # serializable
    _tag(8, _VARINT),  # keys_only
    _tag(9, _VARINT),  # count_only
    _tag(10, _VARINT),  # min_mod_revision
    _tag(11, _VARINT),  # max_mod_revision
    _tag(12, _VARINT),  # min_create_revision
    _tag(13, _VARINT),  # max_create_revision
)
_KEY: Final = _tag(1, _LEN)


def range_request(key: bytes, range_end: bytes, numbers: tuple[int, ...]) -> bytes:
    """A RangeRequest: ``numbers`` are fields 3..13 (limit .. max_create_revision)
    as ints, the bools as 0 or 1."""
    if not range_end and not any(numbers):
        return _KEY + varint(len(key)) + key if key else b""  # a single key: the common read
    parts = [_bytes_field(_KEY, key), _bytes_field(_RANGE_TAGS[1], range_end)]
    parts.extend(_int_field(tag, n) for tag, n in zip(_RANGE_TAGS[2:], numbers, strict=True))
    return b"".join(parts)


_PUT_VALUE: Final = _tag(2, _LEN)
_PUT_LEASE: Final = _tag(3, _VARINT)
_PUT_PREV_KV: Final = _tag(4, _VARINT)


def put_request(key: bytes, value: bytes, lease: int, prev_kv: bool) -> bytes:
    """A PutRequest."""
    out = _bytes_field(_KEY, key) + _bytes_field(_PUT_VALUE, value)
    if lease or prev_kv:
        out += _int_field(_PUT_LEASE, lease) + _int_field(_PUT_PREV_KV, int(prev_kv))
    return out


_DELETE_RANGE_END: Final = _tag(2, _LEN)
_DELETE_PREV_KV: Final = _tag(3, _VARINT)


def delete_request(key: bytes, range_end: bytes, prev_kv: bool) -> bytes:
    """A DeleteRangeRequest."""
    return (
        _bytes_field(_KEY, key)
        + _bytes_field(_DELETE_RANGE_END, range_end)
        + _int_field(_DELETE_PREV_KV, int(prev_kv))
    )


# Compare: result 1, target 2, key 3, the target_union oneof 4..8, range_end 64.
_COMPARE_RESULT: Final = _tag(1, _VARINT)
_COMPARE_TARGET: Final = _tag(2, _VARINT)
_COMPARE_KEY: Final = _tag(3, _LEN)
_COMPARE_RANGE_END: Final = _tag(64, _LEN)


def compare(
    result: int, target: int, key: bytes, number: int, operand: int | bytes, range_end: bytes
) -> bytes:
    """A Compare whose oneof member ``number`` holds ``operand`` (written even if
    zero or empty: a set oneof member is on the wire whatever its value)."""
    if isinstance(operand, bytes):
        union = len_field(_tag(number, _LEN), operand)
    else:
        union = _tag(number, _VARINT) + varint(operand)
    return b"".join(
        (
            _int_field(_COMPARE_RESULT, result),
            _int_field(_COMPARE_TARGET, target),
            _bytes_field(_COMPARE_KEY, key),
            union,
            _bytes_field(_COMPARE_RANGE_END, range_end),
        )
    )


# RequestOp's oneof members and TxnRequest's lists.
OP_RANGE: Final = _tag(1, _LEN)
OP_PUT: Final = _tag(2, _LEN)
OP_DELETE: Final = _tag(3, _LEN)
OP_TXN: Final = _tag(4, _LEN)
_TXN_COMPARE: Final = _tag(1, _LEN)
_TXN_SUCCESS: Final = _tag(2, _LEN)
_TXN_FAILURE: Final = _tag(3, _LEN)


def txn_request(compares: list[bytes], success: list[bytes], failure: list[bytes]) -> bytes:
    """A TxnRequest from encoded Compares and RequestOps."""
    parts = [len_field(_TXN_COMPARE, c) for c in compares]
    parts.extend(len_field(_TXN_SUCCESS, op) for op in success)
    parts.extend(len_field(_TXN_FAILURE, op) for op in failure)
    return b"".join(parts)


# ------------------------------------------------------------------ answers


def _read_varint(data: bytes, i: int) -> tuple[int, int]:
    """(value, next offset); IndexError past the end."""
    byte = data[i]
    if byte < 0x80:
        return byte, i + 1
    value = byte & 0x7F
    shift = 7
    while True:
        i += 1
        byte = data[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
        if shift > 63:
            raise MalformedAnswerError("varint longer than ten bytes")


def _int64(value: int) -> int:
    return value - (1 << 64) if value & _INT64_SIGN else value


def _skip(data: bytes, i: int, wire_type: int) -> int:
    """The offset past an unknown field's value (protobuf skips what it does not know)."""
    if wire_type == _VARINT:
        return _read_varint(data, i)[1]
    if wire_type == _LEN:
        size, i = _read_varint(data, i)
        return i + size
    if wire_type == _FIXED64:
        return i + 8
    if wire_type == _FIXED32:
        return i + 4
    raise MalformedAnswerError(f"wire type {wire_type} is not one this client reads")


def _fields(data: bytes, start: int, end: int) -> list[tuple[int, int | bytes]]:
    """Every (field number, value) of the message in ``data[start:end]``: a
    varint's int (unsigned), a length-delimited field's bytes; others skipped."""
    out: list[tuple[int, int | bytes]] = []
    i = start
    while i < end:
        key, i = _read_varint(data, i)
        wire_type = key & 7
        if wire_type == _VARINT:
            value, i = _read_varint(data, i)
            out.append((key >> 3, value))
        elif wire_type == _LEN:
            size, i = _read_varint(data, i)
            if i + size > end:
                raise MalformedAnswerError("a field runs past the end of its message")
            out.append((key >> 3, data[i : i + size]))
            i += size
        else:
            i = _skip(data, i, wire_type)
    if i != end:
        raise MalformedAnswerError("the last field runs past the end of its message")
    return out


def _header_revision(data: bytes) -> int:
    """ResponseHeader.revision (field 3). Its four fields are varints with
    one-byte tags; the others are stepped over without being computed."""
    i = 0
    end = len(data)
    revision = 0
    while i < end:
        tag = data[i]
        if tag & 7 or tag >= 0x80:  # not a small varint field: a newer header
            return _header_revision_any(data)
        if tag == 0x18:
            revision, i = _read_varint(data, i + 1)
            continue
        i += 1
        while data[i] >= 0x80:
            i += 1
        i += 1
    if i != end:
        raise MalformedAnswerError("the last field runs past the end of its message")
    return _int64(revision)


def _header_revision_any(data: bytes) -> int:
    revision = 0
    for number, value in _fields(data, 0, len(data)):
        if number == 3 and isinstance(value, int):
            revision = _int64(value)
    return revision


def _key_value(data: bytes) -> KeyValue:
    key = value = b""
    create = mod = version = lease = 0
    for number, field in _fields(data, 0, len(data)):
        if isinstance(field, bytes):
            if number == 1:
                key = field
            elif number == 5:
                value = field
        elif number == 2:
            create = _int64(field)
        elif number == 3:
            mod = _int64(field)
        elif number == 4:
            version = _int64(field)
        elif number == 6:
            lease = _int64(field)
    return KeyValue(key, value, create, mod, version, lease)


def _checked(what: str, data: bytes, read: _Reader) -> OpResult:
    try:
        return read(data)
    except IndexError:
        raise MalformedAnswerError(f"{what} from the member is cut short") from None


def _get(data: bytes) -> GetResult:
    kvs = []
    count = revision = 0
    more = False
    for number, value in _fields(data, 0, len(data)):
        if isinstance(value, bytes):
            if number == 2:
                kvs.append(_key_value(value))
            elif number == 1:
                revision = _header_revision(value)
        elif number == 4:
            count = _int64(value)
        elif number == 3:
            more = bool(value)
    return GetResult(kvs, count, more, revision)


def _put(data: bytes) -> PutResult:
    revision = 0
    prev = None
    for number, value in _fields(data, 0, len(data)):
        if isinstance(value, bytes):
            if number == 1:
                revision = _header_revision(value)
            elif number == 2:
                prev = _key_value(value)
    return PutResult(revision, prev)


def _delete(data: bytes) -> DeleteResult:
    deleted = revision = 0
    prev_kvs = []
    for number, value in _fields(data, 0, len(data)):
        if isinstance(value, bytes):
            if number == 3:
                prev_kvs.append(_key_value(value))
            elif number == 1:
                revision = _header_revision(value)
        elif number == 2:
            deleted = _int64(value)
    return DeleteResult(deleted, revision, prev_kvs)


def _txn(data: bytes) -> TxnResult:
    succeeded = False
    revision = 0
    responses: list[OpResult] = []
    for number, value in _fields(data, 0, len(data)):
        if isinstance(value, bytes):
            if number == 3:
                responses.append(_response_op(value))
            elif number == 1:
                revision = _header_revision(value)
        elif number == 2:
            succeeded = bool(value)
    return TxnResult(succeeded, responses, revision)


def _response_op(data: bytes) -> OpResult:
    """ResponseOp: the one member of its oneof that is set (an empty one is a
    default answer of that kind, as protobuf reads it)."""
    result: OpResult | None = None
    for number, value in _fields(data, 0, len(data)):
        if isinstance(value, bytes) and 1 <= number <= 4:
            result = _OP_READERS[number](value)  # the last member set wins, as in protobuf
    if result is None:
        raise MalformedAnswerError("a transaction's response holds no operation's answer")
    return result


_OP_READERS: Final[dict[int, _Reader]] = {1: _get, 2: _put, 3: _delete, 4: _txn}


def get_result(data: bytes) -> GetResult:
    """A RangeResponse as the client's value."""
    result = _checked("a Range answer", data, _get)
    assert isinstance(result, GetResult)
    return result


def put_result(data: bytes) -> PutResult:
    """A PutResponse as the client's value."""
    result = _checked("a Put answer", data, _put)
    assert isinstance(result, PutResult)
    return result


def delete_result(data: bytes) -> DeleteResult:
    """A DeleteRangeResponse as the client's value."""
    result = _checked("a DeleteRange answer", data, _delete)
    assert isinstance(result, DeleteResult)
    return result


def txn_result(data: bytes) -> TxnResult:
    """A TxnResponse as the client's value."""
    result = _checked("a Txn answer", data, _txn)
    assert isinstance(result, TxnResult)
    return result
