"""Protobuf <-> ``syndic.kv`` conversions for etcd's v3 messages.

Incoming messages become the store's frozen dataclasses (whose
``__post_init__`` refuses values protobuf lets through, such as an unknown
sort enum) and outgoing dataclasses become etcd's protobufs. Every function
is pure: no backend, no gRPC context. The KV requests' converters live in
``syndic.server.request_pb``, free of gRPC, for the entry codec.

Example::

    req = request_pb.range_request_from_pb(rpc_pb2.RangeRequest(key=b"a", range_end=b"b"))
    resp_pb = range_response_to_pb(backend_resp, header_pb(backend.header(), resp.revision))
"""

from __future__ import annotations

import re
from typing import Final
from urllib.parse import urlsplit

import syndic
from syndic.api.gen import kv_pb2, rpc_pb2
from syndic.kv.errors import InvalidArgumentError
from syndic.kv.messages import (
    AlarmType,
    CompactionRequest,
    DeleteRangeResponse,
    Event,
    KeyValue,
    LeaseTimeToLiveResponse,
    PutResponse,
    RangeResponse,
    ResponseOp,
    TxnResponse,
    WatchFilter,
)
from syndic.kv.watch import WatchCreateRequest, WatchResponse
from syndic.server.backend import Header, Member, MemberStatus, member_bad_urls

# The etcd API version syndic speaks. clientv3 refuses a cluster whose
# Status version parses below 3.2 (checkVersion splits on "." and reads the
# first two numbers), so syndic's own version rides along as semver build
# metadata: "3.4.0+syndic.0.1.0" sorts, prints and parses as etcd 3.4.0.
ETCD_API_VERSION: Final = "3.4.0"
_SEMVER_MAJOR_MINOR = re.compile(r"^(\d+)\.(\d+)\.\d+")
_BUILD_METADATA_UNSAFE = re.compile(r"[^0-9A-Za-z.-]")
# etcd: types.NewURLs accepts only these schemes.
_MEMBER_URL_SCHEMES: Final = frozenset({"http", "https", "unix", "unixs"})
# A member carries a handful of URLs; a longer list is hostile input.
MEMBER_URLS_MAX: Final = 64
MEMBER_URL_BYTES_MAX: Final = 2048

# The protobuf enums and syndic's share their numbers; the tables make the
# mapping explicit and refuse numbers an open proto3 enum lets through.
_ALARM_NAMES: Final = {
    AlarmType.NONE: "NONE",
    AlarmType.NOSPACE: "NOSPACE",
    AlarmType.CORRUPT: "CORRUPT",
}
_ALARM_BY_NAME: Final = {name: alarm for alarm, name in _ALARM_NAMES.items()}


# ---------------------------------------------------------------- headers


def header_pb(header: Header, revision: int | None = None) -> rpc_pb2.ResponseHeader:
    """etcd's ResponseHeader; ``revision`` overrides the header's (a write's own revision)."""
    return rpc_pb2.ResponseHeader(
        cluster_id=header.cluster_id,
        member_id=header.member_id,
        revision=header.revision if revision is None else revision,
        raft_term=header.raft_term,
    )


def _nested_header(revision: int) -> rpc_pb2.ResponseHeader:
    # etcd: responses inside a Txn carry only the revision in their header.
    return rpc_pb2.ResponseHeader(revision=revision)


# ------------------------------------------------------------ key-values


def kv_to_pb(kv: KeyValue) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(
        key=kv.key,
        create_revision=kv.create_revision,
        mod_revision=kv.mod_revision,
        version=kv.version,
        value=kv.value,
        lease=kv.lease,
    )


def event_to_pb(event: Event) -> kv_pb2.Event:
    out = kv_pb2.Event(type=event.type.name, kv=kv_to_pb(event.kv))
    if event.prev_kv is not None:
        out.prev_kv.CopyFrom(kv_to_pb(event.prev_kv))
    return out


# -------------------------------------------------------------------- KV


def compaction_request_from_pb(pb: rpc_pb2.CompactionRequest) -> CompactionRequest:
    return CompactionRequest(revision=pb.revision, physical=pb.physical)


def range_response_to_pb(
    resp: RangeResponse, header: rpc_pb2.ResponseHeader
) -> rpc_pb2.RangeResponse:
    return rpc_pb2.RangeResponse(
        header=header, kvs=[kv_to_pb(kv) for kv in resp.kvs], more=resp.more, count=resp.count
    )


def put_response_to_pb(resp: PutResponse, header: rpc_pb2.ResponseHeader) -> rpc_pb2.PutResponse:
    out = rpc_pb2.PutResponse(header=header)
    if resp.prev_kv is not None:
        out.prev_kv.CopyFrom(kv_to_pb(resp.prev_kv))
    return out


def delete_range_response_to_pb(
    resp: DeleteRangeResponse, header: rpc_pb2.ResponseHeader
) -> rpc_pb2.DeleteRangeResponse:
    return rpc_pb2.DeleteRangeResponse(
        header=header, deleted=resp.deleted, prev_kvs=[kv_to_pb(kv) for kv in resp.prev_kvs]
    )


def response_op_to_pb(resp: ResponseOp) -> rpc_pb2.ResponseOp:
    header = _nested_header(resp.revision)
    if isinstance(resp, RangeResponse):
        return rpc_pb2.ResponseOp(response_range=range_response_to_pb(resp, header))
    if isinstance(resp, PutResponse):
        return rpc_pb2.ResponseOp(response_put=put_response_to_pb(resp, header))
    if isinstance(resp, DeleteRangeResponse):
        return rpc_pb2.ResponseOp(response_delete_range=delete_range_response_to_pb(resp, header))
    return rpc_pb2.ResponseOp(response_txn=txn_response_to_pb(resp, header))


def txn_response_to_pb(resp: TxnResponse, header: rpc_pb2.ResponseHeader) -> rpc_pb2.TxnResponse:
    return rpc_pb2.TxnResponse(
        header=header,
        succeeded=resp.succeeded,
        responses=[response_op_to_pb(r) for r in resp.responses],
    )


# ----------------------------------------------------------------- Watch


def watch_create_from_pb(pb: rpc_pb2.WatchCreateRequest) -> WatchCreateRequest:
    """etcd's normalisation of a create request, then syndic's validation.

    etcd (v3rpc watch.go recvLoop): an empty key means ``b"\\0"``, the
    smallest key, so ``key="" range_end="\\0"`` watches everything.
    """
    filters = tuple(pb.filters)
    for f in filters:
        if f not in _WATCH_FILTERS:
            raise InvalidArgumentError(f"unknown watch filter {f}")
    return WatchCreateRequest(
        key=pb.key or b"\0",
        range_end=pb.range_end,
        start_revision=pb.start_revision,
        progress_notify=pb.progress_notify,
        filters=tuple(WatchFilter(f) for f in filters),
        prev_kv=pb.prev_kv,
        watch_id=pb.watch_id,
    )


_WATCH_FILTERS: Final = frozenset(int(v) for v in WatchFilter)


def watch_response_to_pb(resp: WatchResponse, header: Header) -> rpc_pb2.WatchResponse:
    """The protobuf form of a watch response. The Watch service sends the same
    bytes built by ``watch_wire.WatchWireEncoder``, which shares the encoding
    across streams; this is the reference its tests compare against."""
    # etcd: a watch response's header revision is the response's revision.
    return rpc_pb2.WatchResponse(
        header=header_pb(header, resp.revision),
        watch_id=resp.watch_id,
        created=resp.created,
        canceled=resp.canceled,
        compact_revision=resp.compact_revision,
        cancel_reason=resp.cancel_reason,
        events=[event_to_pb(ev) for ev in resp.events],
    )


# ----------------------------------------------------------------- Lease


def lease_time_to_live_to_pb(
    resp: LeaseTimeToLiveResponse, header: rpc_pb2.ResponseHeader
) -> rpc_pb2.LeaseTimeToLiveResponse:
    return rpc_pb2.LeaseTimeToLiveResponse(
        header=header,
        ID=resp.id,
        TTL=resp.ttl_s,
        grantedTTL=resp.granted_ttl_s,
        keys=list(resp.keys),
    )


# --------------------------------------------------------------- Cluster


def member_to_pb(member: Member) -> rpc_pb2.Member:
    return rpc_pb2.Member(
        ID=member.id,
        name=member.name,
        peerURLs=list(member.peer_urls),
        clientURLs=list(member.client_urls),
        isLearner=member.is_learner,
    )


def member_urls_from_pb(urls: object) -> tuple[str, ...]:
    """Peer URLs as etcd's types.NewURLs accepts them, else ErrGRPCMemberBadURLs."""
    out = tuple(str(u) for u in urls)  # type: ignore[attr-defined]
    if not out or len(out) > MEMBER_URLS_MAX:
        raise member_bad_urls()
    for url in out:
        if len(url) > MEMBER_URL_BYTES_MAX:
            raise member_bad_urls()
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise member_bad_urls() from None
        if parts.scheme not in _MEMBER_URL_SCHEMES or not parts.hostname:
            raise member_bad_urls()
        # etcd: the host must be "host:port" and the URL must have no path.
        if port is None or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise member_bad_urls()
    return out


# ----------------------------------------------------------- Maintenance


def status_version(backend_version: str) -> str:
    """A Status version every etcd client accepts, naming syndic's own version.

    A version that already reads as etcd >= 3.2 passes through; anything
    else (such as syndic's "0.1.0") becomes ``3.4.0+syndic.<version>``.
    """
    match = _SEMVER_MAJOR_MINOR.match(backend_version)
    if match is not None:
        major, minor = int(match.group(1)), int(match.group(2))
        if major > 3 or (major == 3 and minor >= 2):
            return backend_version
    tag = _BUILD_METADATA_UNSAFE.sub("-", backend_version or syndic.__version__)
    return f"{ETCD_API_VERSION}+syndic.{tag}"


def status_to_pb(status: MemberStatus, header: rpc_pb2.ResponseHeader) -> rpc_pb2.StatusResponse:
    return rpc_pb2.StatusResponse(
        header=header,
        version=status_version(status.version),
        dbSize=status.db_size_bytes,
        dbSizeInUse=status.db_size_in_use_bytes,
        leader=status.leader_id,
        raftIndex=status.raft_index,
        raftTerm=status.raft_term,
        raftAppliedIndex=status.raft_applied_index,
        errors=list(status.errors),
        isLearner=status.is_learner,
    )


def alarm_name(alarm: int) -> str:
    """The backend's name for a protobuf AlarmType number."""
    try:
        return _ALARM_NAMES[AlarmType(alarm)]
    except ValueError:
        raise InvalidArgumentError(f"unknown alarm type {alarm}") from None


def alarm_member_to_pb(member_id: int, name: str) -> rpc_pb2.AlarmMember:
    alarm = _ALARM_BY_NAME.get(name)
    if alarm is None:
        raise ValueError(f"backend reported unknown alarm {name!r}")
    return rpc_pb2.AlarmMember(memberID=member_id, alarm=alarm.name)
