"""Peer transport on loopback: batches arrive in order, bad frames are refused,
a down peer is reported unreachable instead of blocking the sender."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from syndic.raft import ConfState, Entry, Message, MessageType, Snapshot, SnapshotMeta
from syndic.server.peer_codec import encode_batch
from syndic.server.transport import (
    FRAME_HEADER,
    SNAPSHOT_FRAME_FLAG,
    FrameLimits,
    PeerAddress,
    PeerTransport,
)
from tests.server.cluster_util import free_port

# Small limits, so tests cross them with small messages.
SMALL = FrameLimits(frame_bytes_max=64 * 1024, snapshot_frame_bytes_max=512 * 1024)


def heartbeat(from_id: int, to_id: int, term: int) -> Message:
    return Message(MessageType.HEARTBEAT, from_id, to_id, term)


async def wait_for(predicate: object, timeout_s: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)


@contextlib.asynccontextmanager
async def connected_pair(
    received: list[Message], limits: FrameLimits | None = None
) -> AsyncIterator[PeerTransport]:
    """Member 1's transport, connected to member 2's, which files what it gets in ``received``."""
    port_a, port_b = free_port(), free_port()
    a = PeerTransport(1, "127.0.0.1", port_a, lambda _: None, lambda _: None, limits=limits)
    b = PeerTransport(2, "127.0.0.1", port_b, received.extend, lambda _: None, limits=limits)
    await a.start()
    await b.start()
    try:
        a.set_peers([PeerAddress(2, "127.0.0.1", port_b)])
        await wait_for(lambda: a.stats()[2].connected)
        yield a
    finally:
        await a.stop()
        await b.stop()


async def test_messages_cross_in_order_once_connected() -> None:
    received: list[Message] = []
    async with connected_pair(received) as a:
        for term in range(1, 51):
            a.send([heartbeat(1, 2, term)])
        await wait_for(lambda: len(received) == 50)
        assert [m.term for m in received] == list(range(1, 51))


async def test_frames_written_at_once_and_frames_queued_behind_a_full_socket_keep_order() -> None:
    # A frame is written straight to the socket while its buffer is short
    # and queued once it fills; large appends fill it, so both paths mix.
    received: list[Message] = []
    big = (Entry(term=1, index=1, data=b"x" * 200_000),)
    async with connected_pair(received) as a:
        for term in range(1, 401):
            if term % 2 == 0:
                a.send([Message(MessageType.APPEND, 1, 2, term, entries=big)])
            else:
                a.send([heartbeat(1, 2, term)])
            if term % 7 == 0:
                await asyncio.sleep(0)  # the receiver reads some; the buffer drains a little
        await wait_for(lambda: len(received) == 400, timeout_s=20.0)
        assert [m.term for m in received] == list(range(1, 401))


async def test_sending_to_a_down_peer_reports_it_unreachable() -> None:
    unreachable: list[int] = []
    a = PeerTransport(1, "127.0.0.1", free_port(), lambda _: None, unreachable.append)
    await a.start()
    try:
        a.set_peers([PeerAddress(2, "127.0.0.1", free_port())])
        a.send([heartbeat(1, 2, 1)])
        assert unreachable == [2]
        assert a.stats()[2].frames_dropped == 1
        a.send([heartbeat(1, 9, 1)])  # not a peer at all
        assert unreachable == [2, 9]
    finally:
        await a.stop()


async def test_hostile_frames_are_refused_and_change_nothing() -> None:
    received: list[Message] = []
    port = free_port()
    b = PeerTransport(2, "127.0.0.1", port, received.extend, lambda _: None)
    await b.start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        garbage = b"\xc1\xc1\xc1"
        writer.write(FRAME_HEADER.pack(len(garbage)) + garbage)
        writer.write(FRAME_HEADER.pack(b.limits.frame_bytes_max + 1))
        await writer.drain()
        await wait_for(lambda: b.frames_rejected == 2)
        assert received == []
        writer.close()
    finally:
        await b.stop()


def test_frame_limits_derive_from_the_request_limit_not_a_fixed_512_mib() -> None:
    default = FrameLimits.derive(1_572_864 + 1024, 2 * 1024**3)
    assert 3 * 1024 * 1024 < default.frame_bytes_max < 4 * 1024 * 1024
    bigger = FrameLimits.derive(10 * 1024 * 1024, 2 * 1024**3)
    assert bigger.frame_bytes_max > 2 * 10 * 1024 * 1024
    # A snapshot is bounded by the quota (and the 31-bit length word).
    assert FrameLimits.derive(1024, 100 * 1024**2).snapshot_frame_bytes_max < 200 * 1024**2
    with pytest.raises(ValueError, match="FrameLimits"):
        FrameLimits(frame_bytes_max=0, snapshot_frame_bytes_max=1)


async def _refused(b: PeerTransport, port: int, frame: bytes, *, hangs_up: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rejected = b.frames_rejected
    writer.write(frame)
    await writer.drain()
    await wait_for(lambda: b.frames_rejected == rejected + 1)
    if hangs_up:
        assert await asyncio.wait_for(reader.read(), 5) == b""  # EOF: the peer hung up
    writer.close()


async def test_frames_over_their_limit_are_refused_before_being_read() -> None:
    received: list[Message] = []
    port = free_port()
    b = PeerTransport(2, "127.0.0.1", port, received.extend, lambda _: None, limits=SMALL)
    await b.start()
    try:
        # Only the header is sent: the receiver must not wait for (or buffer) the body.
        over = FRAME_HEADER.pack(SMALL.frame_bytes_max + 1)
        await _refused(b, port, over, hangs_up=True)
        snapshot_over = FRAME_HEADER.pack(SNAPSHOT_FRAME_FLAG | SMALL.snapshot_frame_bytes_max + 1)
        await _refused(b, port, snapshot_over, hangs_up=True)
        # A snapshot in an unmarked frame, or a marked frame with no snapshot.
        snap = Snapshot(SnapshotMeta(5, 1, ConfState(frozenset({1, 2}))), b"state")
        body = encode_batch([Message(MessageType.SNAPSHOT, 1, 2, 1, snapshot=snap)])
        await _refused(b, port, FRAME_HEADER.pack(len(body)) + body, hangs_up=False)
        body = encode_batch([heartbeat(1, 2, 1)])
        marked = FRAME_HEADER.pack(SNAPSHOT_FRAME_FLAG | len(body)) + body
        await _refused(b, port, marked, hangs_up=False)
        assert received == []
    finally:
        await b.stop()


async def test_a_batch_over_the_frame_limit_is_split_and_arrives_in_order() -> None:
    received: list[Message] = []
    entry = (Entry(term=1, index=1, data=b"x" * 20_000),)
    async with connected_pair(received, SMALL) as a:
        # 40 appends of 20 kB for one peer in one cycle: 800 kB, 64 kB frames.
        a.send([Message(MessageType.APPEND, 1, 2, term, entries=entry) for term in range(1, 41)])
        await wait_for(lambda: len(received) == 40, timeout_s=20.0)
        assert [m.term for m in received] == list(range(1, 41))


async def test_a_snapshot_travels_in_its_own_marked_frame() -> None:
    received: list[Message] = []
    snap = Snapshot(SnapshotMeta(5, 1, ConfState(frozenset({1, 2}))), b"s" * 300_000)
    async with connected_pair(received, SMALL) as a:
        # Larger than a plain frame, within the snapshot limit; order kept.
        a.send([heartbeat(1, 2, 1), Message(MessageType.SNAPSHOT, 1, 2, 1, snapshot=snap)])
        a.send([heartbeat(1, 2, 2)])
        await wait_for(lambda: len(received) == 3, timeout_s=20.0)
        assert [m.type for m in received] == [
            MessageType.HEARTBEAT,
            MessageType.SNAPSHOT,
            MessageType.HEARTBEAT,
        ]
        assert received[1].snapshot == snap
        # One over the snapshot limit is not sent at all.
        huge = Snapshot(snap.meta, b"s" * (SMALL.snapshot_frame_bytes_max + 1))
        a.send([Message(MessageType.SNAPSHOT, 1, 2, 1, snapshot=huge)])
        assert a.frames_oversized == 1


async def redial_after_peer_restart() -> None:
    received: list[Message] = []
    port_a, port_b = free_port(), free_port()
    a = PeerTransport(1, "127.0.0.1", port_a, lambda _: None, lambda _: None)
    b = PeerTransport(2, "127.0.0.1", port_b, received.extend, lambda _: None)
    await a.start()
    await b.start()
    try:
        a.set_peers([PeerAddress(2, "127.0.0.1", port_b)])
        await wait_for(lambda: a.stats()[2].connected)
        await b.stop()  # the peer exits: its end of a's connection is closed
        b = PeerTransport(2, "127.0.0.1", port_b, received.extend, lambda _: None)
        await b.start()
        term = 0

        def delivered() -> bool:
            nonlocal term
            term += 1
            a.send([heartbeat(1, 2, term)])
            return bool(received)

        await wait_for(delivered)
    finally:
        await a.stop()
        await b.stop()


async def test_a_restarted_peer_is_redialled() -> None:
    await redial_after_peer_restart()
