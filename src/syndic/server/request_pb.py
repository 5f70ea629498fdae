"""etcd's v3 KV requests, from protobuf to the store's frozen dataclasses.

Free of gRPC (only the generated messages), so the entry codec can decode a
log entry that carries a client's own request bytes (``syndic.server.
entry_codec``) in the simulator and the member runtime as on the server.
Each class's ``__post_init__`` refuses what protobuf lets through (an
unknown sort enum, say).

Example::

    req = put_request_from_pb(rpc_pb2.PutRequest.FromString(wire))
"""

from __future__ import annotations

from typing import Final

from syndic.api.gen import rpc_pb2
from syndic.frozen import unchecked_constructor
from syndic.kv.errors import InvalidArgumentError, InvalidSortOptionError
from syndic.kv.messages import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    SortOrder,
    SortTarget,
    TxnRequest,
)


def range_request_from_pb(pb: rpc_pb2.RangeRequest) -> RangeRequest:
    return RangeRequest(
        key=pb.key,
        range_end=pb.range_end,
        limit=pb.limit,
        revision=pb.revision,
        sort_order=_sort_order(pb.sort_order),
        sort_target=_sort_target(pb.sort_target),
        serializable=pb.serializable,
        keys_only=pb.keys_only,
        count_only=pb.count_only,
        min_mod_revision=pb.min_mod_revision,
        max_mod_revision=pb.max_mod_revision,
        min_create_revision=pb.min_create_revision,
        max_create_revision=pb.max_create_revision,
    )


def _sort_order(value: int) -> SortOrder:
    try:
        return SortOrder(value)
    except ValueError:
        # etcd: checkRangeRequest refuses enum numbers it has no name for.
        raise InvalidSortOptionError(f"sort_order={value}") from None


def _sort_target(value: int) -> SortTarget:
    try:
        return SortTarget(value)
    except ValueError:
        raise InvalidSortOptionError(f"sort_target={value}") from None


# Protobuf already guarantees every type PutRequest's check tests (bytes,
# int64, bool): a restart decodes a million puts, each was checked that way.
_put_request: Final = unchecked_constructor(PutRequest)


def put_request_from_pb(pb: rpc_pb2.PutRequest) -> PutRequest:
    return _put_request(pb.key, pb.value, pb.lease, pb.prev_kv, pb.ignore_value, pb.ignore_lease)


def delete_range_request_from_pb(pb: rpc_pb2.DeleteRangeRequest) -> DeleteRangeRequest:
    return DeleteRangeRequest(key=pb.key, range_end=pb.range_end, prev_kv=pb.prev_kv)


def compare_from_pb(pb: rpc_pb2.Compare) -> Compare:
    if pb.target not in _COMPARE_TARGETS or pb.result not in _COMPARE_RESULTS:
        raise InvalidArgumentError(f"compare target={pb.target} result={pb.result}")
    # Unset members of the target_union read as zero values, which is what
    # etcd compares against when the client sets none of them.
    return Compare(
        key=pb.key,
        target=CompareTarget(pb.target),
        result=CompareResult(pb.result),
        range_end=pb.range_end,
        version=pb.version,
        create_revision=pb.create_revision,
        mod_revision=pb.mod_revision,
        value=pb.value,
        lease=pb.lease,
    )


_COMPARE_TARGETS: Final = frozenset(int(v) for v in CompareTarget)
_COMPARE_RESULTS: Final = frozenset(int(v) for v in CompareResult)


def request_op_from_pb(pb: rpc_pb2.RequestOp) -> RequestOp:
    kind = pb.WhichOneof("request")
    if kind == "request_range":
        return range_request_from_pb(pb.request_range)
    if kind == "request_put":
        return put_request_from_pb(pb.request_put)
    if kind == "request_delete_range":
        return delete_range_request_from_pb(pb.request_delete_range)
    if kind == "request_txn":
        return txn_request_from_pb(pb.request_txn)
    # etcd skips an empty union at apply time; syndic refuses it so a
    # client bug is reported instead of silently dropping an operation.
    raise InvalidArgumentError("txn RequestOp has no request set")


def txn_request_from_pb(pb: rpc_pb2.TxnRequest) -> TxnRequest:
    # Recursion depth is bounded by protobuf's own parse limit (100 levels);
    # the store then applies its tighter txn_depth_max.
    return TxnRequest(
        compare=tuple(compare_from_pb(c) for c in pb.compare),
        success=tuple(request_op_from_pb(op) for op in pb.success),
        failure=tuple(request_op_from_pb(op) for op in pb.failure),
    )
