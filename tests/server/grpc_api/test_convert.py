"""Pure protobuf <-> syndic.kv conversions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.api.gen import rpc_pb2
from syndic.kv.errors import InvalidArgumentError, InvalidSortOptionError
from syndic.kv.messages import (
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    Event,
    EventType,
    KeyValue,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    TxnRequest,
    WatchFilter,
)
from syndic.server import request_pb
from syndic.server.backend import Header, ServerError
from syndic.server.grpc_api import convert
from syndic.server.grpc_api.config import GrpcApiConfig

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)


@given(
    key=st.binary(min_size=1, max_size=16),
    end=st.binary(max_size=16),
    limit=int64,
    rev=int64,
    order=st.sampled_from(list(SortOrder)),
    target=st.sampled_from(list(SortTarget)),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    bounds=st.tuples(int64, int64, int64, int64),
)
def test_range_request_keeps_every_field(
    key: bytes,
    end: bytes,
    limit: int,
    rev: int,
    order: SortOrder,
    target: SortTarget,
    flags: tuple[bool, bool, bool],
    bounds: tuple[int, int, int, int],
) -> None:
    pb = rpc_pb2.RangeRequest(
        key=key,
        range_end=end,
        limit=limit,
        revision=rev,
        sort_order=int(order),
        sort_target=int(target),
        serializable=flags[0],
        keys_only=flags[1],
        count_only=flags[2],
        min_mod_revision=bounds[0],
        max_mod_revision=bounds[1],
        min_create_revision=bounds[2],
        max_create_revision=bounds[3],
    )
    assert request_pb.range_request_from_pb(pb) == RangeRequest(
        key, end, limit, rev, order, target, *flags, *bounds
    )


@given(
    key=st.binary(min_size=1, max_size=8),
    value=st.binary(max_size=8),
    lease=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_put_request_keeps_every_field_in_its_place(
    key: bytes, value: bytes, lease: int, flags: tuple[bool, bool, bool]
) -> None:
    # The conversion builds PutRequest positionally: a field moved in the
    # dataclass would land in another's place.
    prev_kv, ignore_value, ignore_lease = flags
    fields: dict[str, Any] = {
        "key": key,
        "value": value,
        "lease": lease,
        "prev_kv": prev_kv,
        "ignore_value": ignore_value,
        "ignore_lease": ignore_lease,
    }
    from_pb = request_pb.put_request_from_pb(rpc_pb2.PutRequest(**fields))
    assert from_pb == PutRequest(**fields)


def test_unknown_enums_are_refused() -> None:
    with pytest.raises(InvalidSortOptionError):
        request_pb.range_request_from_pb(rpc_pb2.RangeRequest(key=b"k", sort_order=3))
    with pytest.raises(InvalidArgumentError):
        request_pb.compare_from_pb(rpc_pb2.Compare(key=b"k", result=4))
    with pytest.raises(InvalidArgumentError):
        convert.watch_create_from_pb(rpc_pb2.WatchCreateRequest(key=b"k", filters=[2]))
    with pytest.raises(InvalidArgumentError):
        convert.alarm_name(3)


def test_nested_txn_converts_recursively() -> None:
    inner = rpc_pb2.TxnRequest(
        failure=[rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"d"))]
    )
    pb = rpc_pb2.TxnRequest(
        compare=[
            rpc_pb2.Compare(
                key=b"k",
                range_end=b"l",
                target=rpc_pb2.Compare.MOD,
                result=rpc_pb2.Compare.GREATER,
                mod_revision=4,
            )
        ],
        success=[
            rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"p", value=b"v", lease=3)),
            rpc_pb2.RequestOp(request_txn=inner),
        ],
    )
    txn = request_pb.txn_request_from_pb(pb)
    (cmp,) = txn.compare
    assert (cmp.target, cmp.result, cmp.range_end, cmp.mod_revision) == (
        CompareTarget.MOD,
        CompareResult.GREATER,
        b"l",
        4,
    )
    assert txn.success == (
        PutRequest(b"p", b"v", lease=3),
        TxnRequest(failure=(DeleteRangeRequest(b"d"),)),
    )


def test_event_and_watch_create_conversions() -> None:
    ev = Event(EventType.DELETE, KeyValue(b"k", mod_revision=5), KeyValue(b"k", 2, 4, 3, b"v", 9))
    pb = convert.event_to_pb(ev)
    assert (pb.type, pb.kv.mod_revision, pb.prev_kv.value, pb.prev_kv.lease) == (1, 5, b"v", 9)
    assert not convert.event_to_pb(Event(EventType.PUT, KeyValue(b"k"))).HasField("prev_kv")
    create = convert.watch_create_from_pb(
        rpc_pb2.WatchCreateRequest(
            key=b"",
            range_end=b"\0",
            start_revision=7,
            progress_notify=True,
            filters=[1],
            prev_kv=True,
            watch_id=4,
        )
    )
    assert (create.key, create.filters, create.watch_id, create.start_revision) == (
        b"\0",
        (WatchFilter.NODELETE,),
        4,
        7,
    )


def test_header_override_and_status_version() -> None:
    h = convert.header_pb(Header(1, 2, 10, 3), revision=12)
    assert (h.cluster_id, h.member_id, h.revision, h.raft_term) == (1, 2, 12, 3)
    assert convert.status_version("0.1.0") == "3.4.0+syndic.0.1.0"
    assert convert.status_version("3.5.9") == "3.5.9"
    assert convert.status_version("2.3.0") == "3.4.0+syndic.2.3.0"
    assert convert.status_version("dev build!") == "3.4.0+syndic.dev-build-"


@pytest.mark.parametrize(
    "urls",
    [
        ["http://h:1", "unix://sock:2"],
        ["https://[::1]:2380"],
    ],
)
def test_member_urls_accepted(urls: list[str]) -> None:
    assert convert.member_urls_from_pb(urls) == tuple(urls)


@pytest.mark.parametrize(
    "urls",
    [[], ["http://h:1?x=1"], ["http://:1"], ["http://h:1"] * 65, ["http://h:1/" + "a" * 3000]],
)
def test_member_urls_refused(urls: list[str]) -> None:
    with pytest.raises(ServerError, match="given member URLs are invalid"):
        convert.member_urls_from_pb(urls)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_request_bytes": 0},
        {"watchers_per_stream_max": -1},
        {"progress_notify_interval_s": float("nan")},
        {"watch_wait_timeout_s": 0},
        {"snapshot_chunk_bytes": True},
    ],
)
def test_config_refuses_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        GrpcApiConfig(**kwargs)  # type: ignore[arg-type]
