"""Watch responses built from shared parts: the same bytes protobuf writes, and etcd's fragments."""

from __future__ import annotations

import pytest

from syndic.api.gen import rpc_pb2
from syndic.kv.messages import Event, EventType, KeyValue
from syndic.kv.watch import WatchResponse
from syndic.protowire import varint
from syndic.server.backend import Header
from syndic.server.grpc_api.convert import watch_response_to_pb
from syndic.server.grpc_api.watch_wire import (
    ENCODED_EVENTS_MAX,
    WatchWireEncoder,
)

HEADER = Header(cluster_id=0xDEADBEEF12345678, member_id=(1 << 64) - 1, revision=9, raft_term=3)


def kv(key: bytes, value: bytes, rev: int = 7, lease: int = 0) -> KeyValue:
    return KeyValue(key, create_revision=2, mod_revision=rev, version=4, value=value, lease=lease)


PUT = Event(EventType.PUT, kv(b"k", b"v" * 300, lease=1 << 62), kv(b"k", b"old"))
DELETE = Event(EventType.DELETE, kv(b"gone", b""), None)

RESPONSES = [
    WatchResponse(watch_id=0, revision=7, created=True),
    WatchResponse(watch_id=5, revision=7, events=(PUT,)),
    WatchResponse(watch_id=(1 << 63) - 1, revision=1 << 40, events=(PUT, DELETE, PUT)),
    WatchResponse(watch_id=-1, revision=7, created=True, canceled=True, cancel_reason="denied"),
    WatchResponse(
        watch_id=3, revision=7, canceled=True, compact_revision=6, cancel_reason="compacted ü"
    ),
    WatchResponse(watch_id=2, revision=0),  # a progress notification at revision 0
]


@pytest.mark.parametrize("resp", RESPONSES)
def test_bytes_are_what_protobuf_writes(resp: WatchResponse) -> None:
    expected = watch_response_to_pb(resp, HEADER).SerializeToString()
    assert WatchWireEncoder().encode(resp, HEADER, None) == [expected]


def test_shared_parts_are_encoded_once_and_stay_right_as_the_header_changes() -> None:
    encoder = WatchWireEncoder()
    first = encoder.encode(RESPONSES[1], HEADER, None)[0]
    again = encoder.encode(WatchResponse(watch_id=9, revision=7, events=(PUT,)), HEADER, None)[0]
    assert again.endswith(first[-100:])  # the same event bytes, another watch_id
    newer = Header(HEADER.cluster_id, HEADER.member_id, 10, raft_term=4)
    resp = WatchResponse(watch_id=5, revision=8, events=(DELETE,))
    assert encoder.encode(resp, newer, None) == [
        watch_response_to_pb(resp, newer).SerializeToString()
    ]


def test_one_response_shared_by_many_streams_is_right_for_each_header_and_limit() -> None:
    # Watchers with the same id share one response object; each stream's
    # encode of it must still follow the header and the fragment limit it
    # is given, not the previous stream's.
    encoder = WatchWireEncoder()
    resp = RESPONSES[2]
    plain = [watch_response_to_pb(resp, HEADER).SerializeToString()]
    assert encoder.encode(resp, HEADER, None) == plain
    assert encoder.encode(resp, HEADER, None) == plain
    assert len(encoder.encode(resp, HEADER, 400)) == 3  # fragments, one event each
    assert encoder.encode(resp, HEADER, None) == plain
    newer = Header(HEADER.cluster_id, HEADER.member_id, 10, raft_term=4)
    assert encoder.encode(resp, newer, None) == [
        watch_response_to_pb(resp, newer).SerializeToString()
    ]


def test_event_cache_is_bounded() -> None:
    encoder = WatchWireEncoder()
    events = [Event(EventType.PUT, kv(b"k%d" % i, b"v")) for i in range(ENCODED_EVENTS_MAX + 5)]
    for ev in events:
        resp = WatchResponse(watch_id=1, revision=7, events=(ev,))
        assert encoder.encode(resp, HEADER, None) == [
            watch_response_to_pb(resp, HEADER).SerializeToString()
        ]
    assert len(encoder._events) <= ENCODED_EVENTS_MAX


def test_varint_matches_protobuf_for_edge_values() -> None:
    for value in (0, 1, 127, 128, 300, (1 << 63) - 1, -1, -(1 << 63)):
        pb = rpc_pb2.WatchResponse(watch_id=value).SerializeToString()
        assert pb == (b"\x10" + varint(value) if value else b"")


def _decode(payloads: list[bytes]) -> list[rpc_pb2.WatchResponse]:
    return [rpc_pb2.WatchResponse.FromString(p) for p in payloads]


def _big_response(count: int, value_bytes: int) -> WatchResponse:
    events = tuple(
        Event(EventType.PUT, kv(b"key/%04d" % i, b"x" * value_bytes)) for i in range(count)
    )
    return WatchResponse(watch_id=4, revision=7, events=events)


def test_fragments_split_events_under_the_limit_in_order() -> None:
    resp = _big_response(40, 1000)
    limit = 5000
    parts = _decode(WatchWireEncoder().encode(resp, HEADER, limit))
    assert len(parts) > 1
    assert [p.fragment for p in parts] == [True] * (len(parts) - 1) + [False]
    assert [e.kv.key for p in parts for e in p.events] == [e.kv.key for e in resp.events]
    for p in parts:
        assert p.watch_id == 4 and p.header.revision == 7
        # etcd: a fragment is filled until one more event would reach the limit.
        assert len(p.events) == 1 or p.ByteSize() < limit
    for p in parts[:-1]:
        one_more = rpc_pb2.WatchResponse()
        one_more.CopyFrom(p)
        one_more.events.append(parts[parts.index(p) + 1].events[0])
        assert one_more.ByteSize() >= limit


def test_no_fragments_below_the_limit_for_one_event_or_when_not_asked() -> None:
    encoder = WatchWireEncoder()
    small = _big_response(3, 10)
    assert _decode(encoder.encode(small, HEADER, 10_000))[0].fragment is False
    # One event is never split, however large (etcd sends it whole).
    huge_one = _big_response(1, 50_000)
    assert len(encoder.encode(huge_one, HEADER, 1000)) == 1
    # Without fragment=true a large response leaves whole, as etcd sends it.
    big = _big_response(40, 1000)
    (whole,) = _decode(encoder.encode(big, HEADER, None))
    assert len(whole.events) == 40 and not whole.fragment


def test_every_event_larger_than_the_limit_goes_alone() -> None:
    resp = _big_response(5, 3000)
    parts = _decode(WatchWireEncoder().encode(resp, HEADER, 1000))
    assert [len(p.events) for p in parts] == [1] * 5
    assert [p.fragment for p in parts] == [True, True, True, True, False]
