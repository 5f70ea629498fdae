"""The transaction builder: comparisons (``Compare``) and operations (``Op``).

A comparison reads like Python::

    Compare.version(b"k") == 0            # the key does not exist
    Compare.value(b"k") != b"x"
    Compare.mod_revision(b"k") < 5
    Compare.lease(b"k") == lease.id

and an operation is one of ``Op.get``, ``Op.put``, ``Op.delete`` or a nested
``Op.txn``. Both are frozen values holding the protobuf they stand for,
checked when built, so a bad key fails where it was written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from syndic.api.gen import rpc_pb2
from syndic.client.errors import InvalidRequestError
from syndic.client.requests import delete_request, put_request, range_request
from syndic.client.validate import int_in, key_range, to_bytes

_C = rpc_pb2.Compare
_RESULTS: Final = {"==": _C.EQUAL, "!=": _C.NOT_EQUAL, "<": _C.LESS, ">": _C.GREATER}


@dataclass(frozen=True, slots=True)
class Comparison:
    """One condition of a transaction (etcd: Compare)."""

    request: rpc_pb2.Compare

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
            value: Any = to_bytes("value", operand)
        else:
            value = int_in(self._field, operand)
        request = _C(result=_RESULTS[op], target=self._target, key=self._key)  # type: ignore[arg-type]
        request.range_end = self._range_end
        setattr(request, self._field, value)
        return Comparison(request)

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
    """One operation of a transaction (etcd: RequestOp)."""

    request: rpc_pb2.RequestOp

    @property
    def is_read_only(self) -> bool:
        kind = self.request.WhichOneof("request")
        if kind == "request_range":
            return True
        if kind == "request_txn":
            return txn_is_read_only(self.request.request_txn)
        return False

    @staticmethod
    def get(key: object, **options: Any) -> Op:
        """A range; takes every option of :meth:`Client.get`."""
        return Op(rpc_pb2.RequestOp(request_range=range_request(key, **options)))

    @staticmethod
    def put(key: object, value: object, *, lease: int = 0, prev_kv: bool = False) -> Op:
        return Op(
            rpc_pb2.RequestOp(request_put=put_request(key, value, lease=lease, prev_kv=prev_kv))
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
        return Op(rpc_pb2.RequestOp(request_delete_range=request))

    @staticmethod
    def txn(
        compare: Iterable[Comparison] = (),
        success: Iterable[Op] = (),
        failure: Iterable[Op] = (),
    ) -> Op:
        return Op(rpc_pb2.RequestOp(request_txn=txn_request(compare, success, failure)))


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
) -> rpc_pb2.TxnRequest:
    return rpc_pb2.TxnRequest(
        compare=[c.request for c in _checked(compare, Comparison, "compare")],
        success=[op.request for op in _checked(success, Op, "success")],
        failure=[op.request for op in _checked(failure, Op, "failure")],
    )


def txn_is_read_only(request: rpc_pb2.TxnRequest) -> bool:
    """Whether no branch writes: such a transaction may be retried like a read."""
    for op in (*request.success, *request.failure):
        kind = op.WhichOneof("request")
        if kind == "request_range":
            continue
        if kind == "request_txn" and txn_is_read_only(op.request_txn):
            continue
        return False
    return True
