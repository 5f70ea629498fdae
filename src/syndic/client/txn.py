"""The transaction builder: comparisons (``Compare``) and operations (``Op``).

A comparison reads like Python::

    Compare.version(b"k") == 0            # the key does not exist
    Compare.value(b"k") != b"x"
    Compare.mod_revision(b"k") < 5
    Compare.lease(b"k") == lease.id

and an operation is one of ``Op.get``, ``Op.put``, ``Op.delete`` or a nested
``Op.txn``. Both are frozen values holding the wire bytes of the protobuf
message they stand for (``request`` decodes it), checked when built, so a
bad key fails where it was written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from syndic.api.gen import rpc_pb2
from syndic.client import wire
from syndic.client.errors import InvalidRequestError
from syndic.client.requests import delete_request, put_request, range_request
from syndic.client.validate import int_in, key_range, to_bytes

_C = rpc_pb2.Compare
_RESULTS: Final = {"==": _C.EQUAL, "!=": _C.NOT_EQUAL, "<": _C.LESS, ">": _C.GREATER}
# Compare's target_union members (rpc.proto field numbers).
_UNION_FIELDS: Final = {
    "version": 4,
    "create_revision": 5,
    "mod_revision": 6,
    "value": 7,
    "lease": 8,
}


@dataclass(frozen=True, slots=True)
class Comparison:
    """One condition of a transaction (etcd: Compare), as its wire bytes."""

    encoded: bytes

    @property
    def request(self) -> rpc_pb2.Compare:
        return rpc_pb2.Compare.FromString(self.encoded)

    def __repr__(self) -> str:
        return f"Comparison({self.request})"


class _Target:
    """What a comparison looks at; its operators build the Comparison.

    It is not a value: ``==`` builds a condition instead of answering True
    or False, which is why it is not hashable either.
    """

    __slots__ = ("_field", "_key", "_range_end", "_target")

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, target: int, field: str, key: object, prefix: bool) -> None:
        self._target = target
        self._field = field
        self._key, self._range_end = key_range(key, prefix=prefix, range_end=None, from_key=False)

    def _compare(self, op: str, operand: object) -> Comparison:
        if self._field == "value":
            value: int | bytes = to_bytes("value", operand)
        else:
            value = int_in(self._field, operand)
        return Comparison(
            wire.compare(
                _RESULTS[op],
                self._target,
                self._key,
                _UNION_FIELDS[self._field],
                value,
                self._range_end,
            )
        )

    def __eq__(self, operand: object) -> Comparison:  # type: ignore[override]
        return self._compare("==", operand)

    def __ne__(self, operand: object) -> Comparison:  # type: ignore[override]
        return self._compare("!=", operand)

    def __lt__(self, operand: object) -> Comparison:
        return self._compare("<", operand)

    def __gt__(self, operand: object) -> Comparison:
        return self._compare(">", operand)


class Compare:
    """Builders for transaction conditions; ``prefix=True`` compares every key under it."""

    @staticmethod
    def version(key: object, *, prefix: bool = False) -> _Target:
        return _Target(_C.VERSION, "version", key, prefix)

    @staticmethod
    def create_revision(key: object, *, prefix: bool = False) -> _Target:
        return _Target(_C.CREATE, "create_revision", key, prefix)

    @staticmethod
    def mod_revision(key: object, *, prefix: bool = False) -> _Target:
        return _Target(_C.MOD, "mod_revision", key, prefix)

    @staticmethod
    def value(key: object, *, prefix: bool = False) -> _Target:
        return _Target(_C.VALUE, "value", key, prefix)

    @staticmethod
    def lease(key: object, *, prefix: bool = False) -> _Target:
        return _Target(_C.LEASE, "lease", key, prefix)


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a transaction (etcd: RequestOp), as its wire bytes;
    ``is_read_only`` when it writes nothing (a get, or a txn of gets)."""

    encoded: bytes
    is_read_only: bool = False

    @property
    def request(self) -> rpc_pb2.RequestOp:
        return rpc_pb2.RequestOp.FromString(self.encoded)

    @staticmethod
    def get(key: object, **options: Any) -> Op:
        """A range; takes every option of :meth:`Client.get`."""
        return Op(wire.len_field(wire.OP_RANGE, range_request(key, **options)), True)

    @staticmethod
    def put(key: object, value: object, *, lease: int = 0, prev_kv: bool = False) -> Op:
        return Op(
            wire.len_field(wire.OP_PUT, put_request(key, value, lease=lease, prev_kv=prev_kv))
        )

    @staticmethod
    def delete(
        key: object,
        *,
        prefix: bool = False,
        range_end: object | None = None,
        from_key: bool = False,
        prev_kv: bool = False,
    ) -> Op:
        request = delete_request(
            key, prefix=prefix, range_end=range_end, from_key=from_key, prev_kv=prev_kv
        )
        return Op(wire.len_field(wire.OP_DELETE, request))

    @staticmethod
    def txn(
        compare: Iterable[Comparison] = (),
        success: Iterable[Op] = (),
        failure: Iterable[Op] = (),
    ) -> Op:
        request = txn_request(compare, success, failure)
        return Op(wire.len_field(wire.OP_TXN, request.encoded), request.read_only)


@dataclass(frozen=True, slots=True)
class TxnRequest:
    """A TxnRequest's wire bytes, and whether no branch writes (such a
    transaction may be retried like a read)."""

    encoded: bytes
    read_only: bool


def _checked(items: Iterable[object], kind: type, name: str) -> list[Any]:
    if isinstance(items, str | bytes):
        raise InvalidRequestError(f"{name} must be a list of {kind.__name__}, got {items!r}")
    checked = list(items)
    for item in checked:
        if not isinstance(item, kind):
            hint = (
                " (a Python comparison? use Compare.version(key) == 0)"
                if kind is Comparison
                else ""
            )
            raise InvalidRequestError(
                f"{name} must hold {kind.__name__} values, got {type(item).__name__}{hint}"
            )
    return checked


def txn_request(
    compare: Iterable[Comparison], success: Iterable[Op], failure: Iterable[Op]
) -> TxnRequest:
    compares: list[Comparison] = _checked(compare, Comparison, "compare")
    then: list[Op] = _checked(success, Op, "success")
    otherwise: list[Op] = _checked(failure, Op, "failure")
    encoded = wire.txn_request(
        [c.encoded for c in compares], [op.encoded for op in then], [op.encoded for op in otherwise]
    )
    return TxnRequest(encoded, all(op.is_read_only for op in (*then, *otherwise)))


def txn_is_read_only(request: TxnRequest) -> bool:
    """Whether no branch writes: such a transaction may be retried like a read."""
    return request.read_only
