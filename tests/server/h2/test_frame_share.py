"""A connection's frames are parsed a share per loop pass (receive_frames_per_pass_max),
so a burst in one read cannot hold the event loop that Raft's timers share.

bench/hostile.py's SETTINGS flood opens 4,000 streams per connection in one
write: one read held 4,000 HEADERS, all parsed in one pass, and the member's
loop ran up to 200 ms late on a loaded machine.
"""

from __future__ import annotations

import asyncio

import pytest

from syndic.server.h2 import frames
from syndic.server.h2.events import CallStarted, Event
from syndic.server.h2.frames import ErrorCode, FrameType
from syndic.server.h2.limits import ServerLimits
from tests.server.h2.conftest import CALL_TIMEOUT_S, Serve, wait_until
from tests.server.h2.raw_client import RawClient
from tests.server.h2.sansio import Peer

SHARE_FRAMES = 100
PING_ACK_BYTES = frames.FRAME_HEADER_BYTES + 8


def open_streams(peer: Peer, count: int) -> bytes:
    """``count`` HEADERS opening calls that never send their request."""
    return b"".join(
        peer.headers_frame(peer.new_stream_id(), end_stream=False) for _ in range(count)
    )


def started(events: list[Event]) -> int:
    return sum(isinstance(e, CallStarted) for e in events)


def test_a_burst_is_parsed_a_share_per_receive_and_nothing_is_lost() -> None:
    limits = ServerLimits(receive_frames_per_pass_max=SHARE_FRAMES, refused_streams_burst=1000)
    peer = Peer(limits)
    protocol = peer.protocol
    burst = open_streams(peer, 1000)

    per_receive = [started(protocol.receive(burst, peer.now))]
    while protocol.backlogged:
        protocol.check_invariants()
        per_receive.append(started(protocol.receive(b"", peer.now)))

    # One share per receive: 100 streams, then 100, ... until the 256 slots are taken.
    assert per_receive[:3] == [SHARE_FRAMES, SHARE_FRAMES, 56]
    assert len(per_receive) == 1000 // SHARE_FRAMES
    assert not protocol.backlogged
    # The same outcome as parsing it all at once: the rest are refused.
    whole = Peer(ServerLimits(receive_frames_per_pass_max=10**6, refused_streams_burst=1000))
    whole_events = whole.protocol.receive(open_streams(whole, 1000), whole.now)
    assert not whole.protocol.backlogged
    assert sum(per_receive) == started(whole_events) == 256
    peer.send(b"")
    whole.send(b"")
    assert peer.out.resets == whole.out.resets
    assert set(peer.out.resets.values()) == {ErrorCode.REFUSED_STREAM}
    assert len(peer.out.resets) == 1000 - 256


def test_a_partial_frame_after_the_share_is_kept() -> None:
    peer = Peer(ServerLimits(receive_frames_per_pass_max=SHARE_FRAMES))
    ping = frames.frame(FrameType.PING, 0, 0, b"12345678")
    burst = ping * (SHARE_FRAMES + 1) + ping[:10]
    peer.protocol.receive(burst, peer.now)
    assert peer.protocol.backlogged
    peer.protocol.receive(b"", peer.now)
    assert not peer.protocol.backlogged
    peer.send(ping[10:])
    assert peer.protocol.data_to_send() == b""  # Peer read every ACK as it came
    assert peer.out.frame_types.count(FrameType.PING) == SHARE_FRAMES + 2


def test_the_share_must_be_positive() -> None:
    with pytest.raises(ValueError, match="receive_frames_per_pass_max"):
        ServerLimits(receive_frames_per_pass_max=0)


async def test_the_driver_parses_one_share_per_loop_pass(serve: Serve) -> None:
    running = await serve(ServerLimits(receive_frames_per_pass_max=SHARE_FRAMES))
    client = await RawClient.connect(running.port)
    await wait_until(lambda: len(running.server._connections) == 1, "the server has connected")
    (connection,) = running.server._connections
    protocol = connection.protocol

    # Loop passes, counted by a task that yields once per pass; and, per
    # receive, the pass it ran in and the PINGs it answered.
    passes = 0
    receives: list[tuple[int, int]] = []
    receive = protocol.receive

    def counted(data: bytes, now: float) -> list[Event]:
        before = protocol.out_bytes
        events = receive(data, now)
        receives.append((passes, (protocol.out_bytes - before) // PING_ACK_BYTES))
        return events

    async def count_passes() -> None:
        nonlocal passes
        while True:
            passes += 1
            await asyncio.sleep(0)

    protocol.receive = counted  # type: ignore[method-assign]
    counter = asyncio.create_task(count_passes())
    try:
        pings = 2000
        client.send(frames.frame(FrameType.PING, 0, 0, b"12345678") * pings)
        async with asyncio.timeout(CALL_TIMEOUT_S):
            while len(client.ping_acks) < pings:
                assert await client.read_frame() is not None, client.goaway
    finally:
        counter.cancel()
        await client.close()
    answered = [acks for _, acks in receives]
    assert sum(answered) == pings
    assert max(answered) <= SHARE_FRAMES
    # Each share in a pass of its own: the loop ran everything else between.
    in_pass = [pass_ for pass_, _ in receives]
    assert len(set(in_pass)) == len(in_pass), in_pass
    assert client.goaway is None
    await running.assert_serves()


async def test_a_connection_with_a_backlog_is_not_read_until_it_is_parsed(serve: Serve) -> None:
    """Frames left over a share wait in the protocol, the socket unread, and
    a flood past the cheap-frame budget still ends with GOAWAY."""
    limits = ServerLimits(receive_frames_per_pass_max=SHARE_FRAMES, cheap_frames_burst=500)
    running = await serve(limits)
    client = await RawClient.connect(running.port)
    client.send(frames.frame(FrameType.PING, 0, 0, b"12345678") * 5000)
    async with asyncio.timeout(CALL_TIMEOUT_S):
        while await client.read_frame() is not None:
            pass
    assert client.goaway is not None
    assert client.goaway.code == ErrorCode.ENHANCE_YOUR_CALM
    assert len(client.ping_acks) <= 500 + 10  # the burst, and what refilled meanwhile
    await wait_until(lambda: not running.server._connections, "the connection is closed")
    await running.assert_serves()
