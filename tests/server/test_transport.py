"""Peer transport on loopback: batches arrive in order, bad frames are refused,
a down peer is reported unreachable instead of blocking the sender."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

from syndic.raft import Entry, Message, MessageType
from syndic.server.transport import FRAME_HEADER, PEER_FRAME_BYTES_MAX, PeerAddress, PeerTransport


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def heartbeat(from_id: int, to_id: int, term: int) -> Message:
    return Message(MessageType.HEARTBEAT, from_id, to_id, term)


async def wait_for(predicate: object, timeout_s: float = 5.0) -> None:
    async def poll() -> None:
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout_s)


@contextlib.asynccontextmanager
async def connected_pair(received: list[Message]) -> AsyncIterator[PeerTransport]:
    """Member 1's transport, connected to member 2's, which files what it gets in ``received``."""
    port_a, port_b = free_port(), free_port()
    a = PeerTransport(1, "127.0.0.1", port_a, lambda _: None, lambda _: None)
    b = PeerTransport(2, "127.0.0.1", port_b, received.extend, lambda _: None)
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
        writer.write(FRAME_HEADER.pack(PEER_FRAME_BYTES_MAX + 1))
        await writer.drain()
        await wait_for(lambda: b.frames_rejected == 2)
        assert received == []
        writer.close()
    finally:
        await b.stop()


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
