"""Large requests: gathered without re-copying, and read a fair share per loop pass."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from syndic.server.h2.events import CallEnded, MessageReceived
from syndic.server.h2.frames import FrameType
from syndic.server.h2.limits import SharedBudget
from syndic.server.h2.reads import (
    BUDGET_RECHECK_S,
    READ_BYTES_EXPECTED,
    SMALL_READ_BYTES_MAX,
    ReadShare,
)
from tests.server.h2.raw_client import grpc_message
from tests.server.h2.sansio import Peer

MiB = 1024 * 1024
FRAME_BYTES = 16_384


def frames_of(peer: Peer, stream_id: int, body: bytes, *, end_stream: bool) -> None:
    """``body`` as DATA frames of at most 16 KiB, the last one ending the stream if told."""
    chunks = [body[i : i + FRAME_BYTES] for i in range(0, len(body), FRAME_BYTES)]
    for n, chunk in enumerate(chunks):
        last = n == len(chunks) - 1
        peer.frame(FrameType.DATA, 1 if last and end_stream else 0, stream_id, chunk)


def received(peer: Peer, stream_id: int) -> list[bytes]:
    return [
        e.message
        for e in peer.events
        if isinstance(e, MessageReceived) and e.stream_id == stream_id
    ]


def test_a_1_mib_message_in_16_kib_frames_arrives_whole_with_the_next_one() -> None:
    peer = Peer()
    stream_id = peer.start_call([], end_stream=False)
    big = bytes(range(256)) * (MiB // 256)
    # The second message starts inside the big one's last frame, and its
    # prefix is split between two frames.
    body = grpc_message(big) + grpc_message(b"after")
    frames_of(peer, stream_id, body[:-7], end_stream=False)
    assert received(peer, stream_id) == [big]
    assert peer.protocol.streams[stream_id].recv_buffer  # the second is partial
    peer.frame(FrameType.DATA, 1, stream_id, body[-7:])
    assert received(peer, stream_id) == [big, b"after"]
    assert peer.protocol.held_bytes == len(body)
    peer.protocol.consumed(stream_id, len(body))
    assert peer.protocol.held_bytes == 0


def test_a_long_message_cut_short_by_end_stream_ends_the_call() -> None:
    peer = Peer()
    stream_id = peer.start_call([], end_stream=False)
    frames_of(peer, stream_id, grpc_message(bytes(MiB))[: MiB // 2], end_stream=True)
    assert received(peer, stream_id) == []
    assert any(isinstance(e, CallEnded) for e in peer.events)
    assert peer.protocol.held_bytes == 0


@dataclass
class FakeConnection:
    """What ReadShare needs of a connection: a switch and whether it is gone."""

    name: str
    closed: bool = False
    reading: bool = False
    holds_request_bytes: bool = False

    def resume_from_share(self) -> None:
        self.reading = True


def test_small_reads_are_never_held_back() -> None:
    share = ReadShare(READ_BYTES_EXPECTED, SharedBudget(MiB))
    assert all(share.spend(SMALL_READ_BYTES_MAX - 1, False) for _ in range(10_000))
    assert share.spent_bytes == 0


def test_large_reads_past_the_share_wait_their_turn_in_order() -> None:
    share = ReadShare(2 * READ_BYTES_EXPECTED, SharedBudget(64 * MiB))
    assert share.spend(READ_BYTES_EXPECTED, False)
    assert share.spend(READ_BYTES_EXPECTED, True)
    held = [FakeConnection(str(n)) for n in range(5)]
    for connection in held:
        assert not share.spend(READ_BYTES_EXPECTED, True)
        share.hold(connection)
    held[1].closed = True  # gone while it waited: skipped, costs no turn
    assert share.next_pass() == 0.0  # two turns a pass: 0 and 2
    assert share.spent_bytes == 0
    assert [c.reading for c in held] == [True, False, True, False, False]
    assert share.next_pass() is None  # 3 and 4: none left
    assert [c.reading for c in held] == [True, False, True, True, True]


def test_a_spent_request_budget_holds_large_reads_until_it_has_room() -> None:
    budget = SharedBudget(MiB)
    share = ReadShare(64 * MiB, budget)
    assert budget.take(MiB - READ_BYTES_EXPECTED + 1)  # not one more large read's room
    assert share.spend(SMALL_READ_BYTES_MAX - 1, False)  # small reads still pass
    assert not share.spend(SMALL_READ_BYTES_MAX, False)
    waiting = FakeConnection("bulk")
    share.hold(waiting)
    assert share.next_pass() == BUDGET_RECHECK_S  # looked at later, not every pass
    assert not waiting.reading
    budget.give(1)  # room for one
    assert share.next_pass() is None
    assert waiting.reading


def test_connections_finishing_requests_read_on_while_the_budget_is_spent() -> None:
    """Their bytes complete requests and free the budget: holding them back
    would leave honest uploads that filled it waiting for the stall timeout."""
    budget = SharedBudget(MiB)
    share = ReadShare(3 * READ_BYTES_EXPECTED, budget)
    assert budget.take(MiB)
    assert share.spend(READ_BYTES_EXPECTED, True)
    new, finishing = FakeConnection("new"), FakeConnection("finishing", holds_request_bytes=True)
    assert not share.spend(READ_BYTES_EXPECTED, False)
    share.hold(new)
    assert share.spend(READ_BYTES_EXPECTED, True)
    assert not share.spend(READ_BYTES_EXPECTED, True)  # past the share, though
    share.hold(finishing)
    assert share.next_pass() == BUDGET_RECHECK_S
    assert (new.reading, finishing.reading) == (False, True)
    assert list(share.held) == [new]


def test_the_share_must_be_positive() -> None:
    with pytest.raises(ValueError, match="read_bytes_per_pass_max"):
        ReadShare(0, SharedBudget(MiB))
