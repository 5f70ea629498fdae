"""Every abuse class of the HTTP/2 layer meets a named limit (driven sans-IO, time by hand)."""

from __future__ import annotations

import struct

import pytest

from syndic.server.h2 import frames
from syndic.server.h2.events import CallEnded, CallStarted, ConnectionEnded, MessageReceived
from syndic.server.h2.frames import ErrorCode, Flag, FrameType, Setting
from syndic.server.h2.limits import ServerLimits, SharedBudget
from syndic.server.h2.protocol import (
    _TRANSITIONS,
    H2Stream,
    StreamInput,
    StreamState,
    StreamStateError,
)
from tests.server.h2.raw_client import grpc_message
from tests.server.h2.sansio import Peer

RESOURCE_EXHAUSTED = 8
U32 = struct.Struct(">I")


def settings(*pairs: tuple[int, int]) -> bytes:
    return frames.frame(
        FrameType.SETTINGS, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs)
    )


def send_data(peer: Peer, stream_id: int, data: bytes) -> None:
    for offset in range(0, len(data), 16_384):
        peer.frame(FrameType.DATA, 0, stream_id, data[offset : offset + 16_384])


def calm(peer: Peer, reason: str) -> None:
    assert peer.out.goaway is not None, "no GOAWAY"
    assert peer.out.goaway.code == ErrorCode.ENHANCE_YOUR_CALM
    assert reason in peer.out.goaway.reason
    assert any(isinstance(e, ConnectionEnded) and not e.graceful for e in peer.events)


# -- the stream state table ------------------------------------------------------


def test_a_missing_transition_is_a_protocol_error() -> None:
    peer = Peer()
    stream = H2Stream(1, 0, 65_535, 0.0)
    stream.state = StreamState.CLOSED
    with pytest.raises(StreamStateError, match="RECV_DATA in state CLOSED"):
        peer.protocol._transition(stream, StreamInput.RECV_DATA)
    # Every state but CLOSED has a way out; CLOSED has none.
    assert {s for s, _ in _TRANSITIONS} == set(StreamState) - {StreamState.CLOSED}


def test_data_after_the_clients_end_stream_is_stream_closed() -> None:
    peer = Peer()
    stream_id = peer.start_call([b"k"])  # ended by the client; the handler now runs
    peer.frame(FrameType.DATA, 0, stream_id, grpc_message(b"more"))
    assert peer.out.resets[stream_id] == ErrorCode.STREAM_CLOSED
    assert CallEnded(stream_id, "DATA after END_STREAM") in peer.events
    assert peer.out.goaway is None


# -- SETTINGS --------------------------------------------------------------------


class _NoWalk(dict[int, H2Stream]):
    """A stream table that fails any walk over it."""

    def values(self):  # type: ignore[override]
        raise AssertionError("walked every stream")


def test_initial_window_change_does_not_walk_the_streams() -> None:
    # Thousands of open streams whose handlers run: a SETTINGS storm that
    # moves INITIAL_WINDOW_SIZE up and down must not visit each of them.
    peer = Peer(ServerLimits(concurrent_streams_max=5000, settings_frames_burst=10_000))
    ids = [peer.start_call([b"k"]) for _ in range(2000)]
    walk_guard = _NoWalk(peer.protocol.streams)
    peer.protocol.streams = walk_guard
    for value in (0, 65_535, 1, 2**20) * 50:
        peer.protocol.receive(settings((Setting.INITIAL_WINDOW_SIZE, value)), peer.now)
    peer.protocol.streams = dict(walk_guard)
    peer.send(settings((Setting.INITIAL_WINDOW_SIZE, 0)))
    assert peer.out.goaway is None
    # Yet every stream's window moved: at 0 an answer waits, raised it goes.
    peer.answer(ids[0], b"v" * 10)
    assert ids[0] in peer.protocol.blocked
    peer.send(settings((Setting.INITIAL_WINDOW_SIZE, 100)))
    assert peer.out.statuses[ids[0]] == 0


def test_initial_window_overflowing_a_stream_is_found_without_a_walk_per_frame() -> None:
    peer = Peer()
    stream_id = peer.start_call([b"k"], end_stream=False)
    peer.frame(FrameType.WINDOW_UPDATE, 0, stream_id, U32.pack(2**31 - 1 - 65_535))
    peer.send(settings((Setting.INITIAL_WINDOW_SIZE, 65_536)))
    assert peer.out.goaway is not None
    assert peer.out.goaway.code == ErrorCode.FLOW_CONTROL_ERROR


def test_settings_frames_per_second_are_capped() -> None:
    limits = ServerLimits(settings_frames_per_s=10, settings_frames_burst=20)
    peer = Peer(limits)
    for _ in range(19):  # the client's first SETTINGS took one token
        peer.send(settings())
    assert peer.out.goaway is None
    peer.now += 1.0  # ten more tokens
    for _ in range(10):
        peer.send(settings())
    assert peer.out.goaway is None
    peer.send(settings())
    calm(peer, "too many SETTINGS frames")


# -- cheap frames ----------------------------------------------------------------


def _cheap(kind: str, peer: Peer, stream_id: int) -> bytes:
    if kind == "PING":
        return frames.frame(FrameType.PING, 0, 0, b"12345678")
    if kind == "SETTINGS ACK":
        return frames.frame(FrameType.SETTINGS, Flag.ACK, 0)
    if kind == "empty DATA":
        return frames.frame(FrameType.DATA, 0, stream_id, b"")
    if kind == "PRIORITY":
        return frames.frame(FrameType.PRIORITY, 0, stream_id, b"\x00\x00\x00\x00\x10")
    if kind == "WINDOW_UPDATE":
        return frames.window_update(0, 1)
    if kind == "RST_STREAM":  # on a stream long closed
        return frames.rst_stream(1, ErrorCode.CANCEL)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["PING", "SETTINGS ACK", "empty DATA", "PRIORITY", "WINDOW_UPDATE", "RST_STREAM"]
)
def test_cheap_frame_flood_gets_enhance_your_calm(kind: str) -> None:
    limits = ServerLimits(cheap_frames_burst=100, cheap_frames_per_s=50)
    peer = Peer(limits)
    first = peer.start_call([b"k"])
    peer.answer(first, b"v")
    stream_id = peer.start_call([], end_stream=False)  # open: empty DATA goes here
    frame = _cheap(kind, peer, stream_id)
    peer.send(frame * 95)
    assert peer.out.goaway is None, "within the burst"
    peer.now += 1.0  # 50 more
    peer.send(frame * 50)
    assert peer.out.goaway is None
    peer.send(frame * 10)
    calm(peer, "too many")


def test_zero_length_continuation_flood_gets_enhance_your_calm() -> None:
    limits = ServerLimits(cheap_frames_burst=100, header_block_frames_max=10_000)
    peer = Peer(limits)
    stream_id = peer.new_stream_id()
    block = peer.encoder.encode([(":method", "POST")])
    peer.frame(FrameType.HEADERS, 0, stream_id, block)
    peer.send(frames.frame(FrameType.CONTINUATION, 0, stream_id, b"") * 200)
    calm(peer, "too many empty CONTINUATION frames")


def test_continuation_frames_per_header_block_are_counted() -> None:
    # One byte each: far under header_block_bytes_max, over the frame count.
    peer = Peer(ServerLimits(header_block_frames_max=16))
    stream_id = peer.new_stream_id()
    block = peer.headers_frame(stream_id, end_stream=True)[frames.FRAME_HEADER_BYTES :]
    peer.frame(FrameType.HEADERS, 0, stream_id, block[:1])
    for byte in block[1:16]:
        peer.frame(FrameType.CONTINUATION, 0, stream_id, bytes([byte]))
    assert peer.out.goaway is None  # 16 frames
    peer.frame(FrameType.CONTINUATION, 0, stream_id, block[16:17])
    calm(peer, "header block over 16 frames")


def test_rapid_reset_gets_enhance_your_calm() -> None:
    limits = ServerLimits(stream_resets_burst=50, stream_resets_per_s=10, concurrent_streams_max=8)
    peer = Peer(limits)
    for _ in range(50):
        stream_id = peer.start_call([b"k"])  # the handler runs: reset costs a token
        peer.frame(FrameType.RST_STREAM, 0, stream_id, U32.pack(ErrorCode.CANCEL))
        peer.release(stream_id)  # the cancelled handler ends
    assert peer.out.goaway is None
    stream_id = peer.start_call([b"k"])
    peer.frame(FrameType.RST_STREAM, 0, stream_id, U32.pack(ErrorCode.CANCEL))
    calm(peer, "too many streams reset")


def test_resetting_many_long_lived_streams_at_once_is_not_a_rapid_reset() -> None:
    # A config SDK closing its watches: hundreds of resets in one burst, each
    # of a stream that has been open for a while.
    limits = ServerLimits(
        stream_resets_burst=50, stream_resets_per_s=10, concurrent_streams_max=400
    )
    peer = Peer(limits)
    watches = [peer.start_call([b"k"], end_stream=False) for _ in range(300)]
    peer.now += limits.stream_reset_rapid_s
    peer.send(b"".join(frames.rst_stream(i, ErrorCode.CANCEL) for i in watches))
    assert peer.out.goaway is None
    for stream_id in watches:
        peer.release(stream_id)
    # Opened and reset at once, they still count.
    for _ in range(50):
        stream_id = peer.start_call([b"k"], end_stream=False)
        peer.frame(FrameType.RST_STREAM, 0, stream_id, U32.pack(ErrorCode.CANCEL))
        peer.release(stream_id)
    stream_id = peer.start_call([b"k"], end_stream=False)
    peer.frame(FrameType.RST_STREAM, 0, stream_id, U32.pack(ErrorCode.CANCEL))
    calm(peer, "too many streams reset")


def test_an_honest_clients_control_frames_per_small_call_are_not_a_flood() -> None:
    # grpc-core returns window for the stream and the connection after each
    # answer, however small, and probes bandwidth with a PING: four frames a
    # call, thousands of calls a second from one address.
    limits = ServerLimits(cheap_frames_burst=100, cheap_frames_per_s=10)
    peer = Peer(limits)
    for n in range(2_000):
        stream_id = peer.start_call([b"k"])
        peer.answer(stream_id, b"v")
        peer.release(stream_id)
        ping = frames.frame(FrameType.PING, 0, 0, n.to_bytes(8, "big"))
        ack = frames.frame(FrameType.PING, Flag.ACK, 0, bytes(8))
        peer.send(frames.window_update(0, 64) + frames.window_update(stream_id, 64) + ping + ack)
        peer.now += 0.0005
    assert peer.out.goaway is None
    # The same frames with no calls behind them are still a flood.
    peer.send(frames.window_update(0, 1) * 200)
    calm(peer, "too many WINDOW_UPDATE frames")


def test_watchers_returning_window_for_every_small_event_are_not_a_flood() -> None:
    # One change pushed to many watch streams: the client returns window for
    # the stream and the connection after every small DATA frame it reads.
    limits = ServerLimits(cheap_frames_burst=100, cheap_frames_per_s=10)
    peer = Peer(limits)
    watches = [peer.start_call([b"w"], end_stream=False) for _ in range(100)]
    for _ in range(20):
        for stream_id in watches:
            peer.protocol.send_message(stream_id, b"e" * 200)  # a watch event
            peer.send(frames.window_update(0, 205) + frames.window_update(stream_id, 205))
    assert peer.out.goaway is None
    assert all(peer.out.data[stream_id] == 20 * 205 for stream_id in watches)


def test_answers_sent_earn_window_updates_back() -> None:
    # A client reading a large answer returns window as it reads: not a flood.
    limits = ServerLimits(cheap_frames_burst=10, cheap_frames_per_s=1)
    peer = Peer(limits)
    stream_id = peer.start_call([b"k"], end_stream=True)
    peer.answer(stream_id, b"v" * 1_000_000)
    for _ in range(400):
        if stream_id in peer.out.statuses:
            break
        peer.send(frames.window_update(0, 5000) + frames.window_update(stream_id, 5000))
    assert peer.out.goaway is None
    assert peer.out.statuses[stream_id] == 0
    assert peer.out.data[stream_id] == 1_000_005


# -- slow readers ------------------------------------------------------------------


def test_unary_answers_queue_only_to_the_connection_budget() -> None:
    limits = ServerLimits(connection_send_buffer_bytes_max=3 * (1024 * 1024 + 5))
    peer = Peer(limits)
    peer.send(settings((Setting.INITIAL_WINDOW_SIZE, 0)))  # reads nothing
    ids = [peer.start_call([b"k"]) for _ in range(10)]
    for stream_id in ids:
        peer.answer(stream_id, b"v" * (1024 * 1024))
    queued = [i for i in ids if i in peer.protocol.blocked]
    refused = [i for i in ids if peer.out.statuses.get(i) == RESOURCE_EXHAUSTED]
    assert len(queued) == 3 and len(refused) == 7
    assert "reads too slowly" in peer.out.messages[refused[0]]
    assert peer.protocol.queued_bytes <= 3 * (1024 * 1024 + 5)


def test_after_an_answer_is_refused_new_calls_wait_until_the_client_reads() -> None:
    # Unary answers never push the queue past its bound (one that would is
    # refused), so "over the bound" alone never held new calls back.
    limits = ServerLimits(connection_send_buffer_bytes_max=3 * (1024 * 1024 + 5))
    peer = Peer(limits)
    peer.send(settings((Setting.INITIAL_WINDOW_SIZE, 0)))  # reads nothing
    ids = [peer.start_call([b"k"]) for _ in range(4)]
    for stream_id in ids:
        peer.answer(stream_id, b"v" * (1024 * 1024))
    assert peer.out.statuses.get(ids[3]) == RESOURCE_EXHAUSTED
    assert peer.protocol.answers_backed_up()
    held_back = peer.start_call([b"k"])
    assert peer.out.resets[held_back] == ErrorCode.REFUSED_STREAM
    # The client reads one answer: calls run again.
    peer.send(
        frames.window_update(0, 2 * 1024 * 1024) + frames.window_update(ids[0], 2 * 1024 * 1024)
    )
    assert peer.out.data[ids[0]] == 1024 * 1024 + 5
    assert not peer.protocol.answers_backed_up()
    again = peer.start_call([b"k"])
    assert again not in peer.out.resets
    assert any(isinstance(e, CallStarted) and e.stream_id == again for e in peer.events)


def test_a_stream_that_cannot_send_is_reset_after_the_stall_timeout() -> None:
    peer = Peer(ServerLimits(send_stall_timeout_s=10))
    peer.send(settings((Setting.INITIAL_WINDOW_SIZE, 0)))
    stream_id = peer.start_call([b"k"])
    peer.answer(stream_id, b"v" * 100_000)
    peer.release(stream_id)  # the handler has finished; its answer waits
    peer.tick(9.0)
    assert stream_id in peer.protocol.streams
    peer.tick(1.0)
    assert peer.out.resets[stream_id] == ErrorCode.CANCEL
    assert stream_id not in peer.protocol.streams
    assert peer.protocol.queued_bytes == 0


def test_a_stream_that_sends_now_and_then_is_not_stalled() -> None:
    peer = Peer(ServerLimits(send_stall_timeout_s=10))
    peer.send(settings((Setting.INITIAL_WINDOW_SIZE, 0)))
    stream_id = peer.start_call([b"k"])
    peer.answer(stream_id, b"v" * 100_000)
    for _ in range(5):
        peer.tick(8.0)
        peer.send(frames.window_update(stream_id, 1000))
    assert stream_id not in peer.out.resets


# -- idle, keepalive, age ------------------------------------------------------------


def test_idle_connection_is_sent_goaway_no_error() -> None:
    peer = Peer(ServerLimits(connection_idle_timeout_s=60))
    stream_id = peer.start_call([b"k"])
    peer.tick(100.0)  # a call in flight: not idle
    assert peer.out.goaway is None
    peer.answer(stream_id, b"v")
    peer.release(stream_id)
    peer.tick(59.0)
    assert peer.out.goaway is None
    peer.tick(1.0)
    assert peer.out.goaway is not None and peer.out.goaway.code == ErrorCode.NO_ERROR
    assert ConnectionEnded(0, "drained", graceful=True) in peer.events


def test_keepalive_pings_a_silent_client_and_closes_it_without_an_ack() -> None:
    peer = Peer(ServerLimits(keepalive_interval_s=30, keepalive_timeout_s=5))
    peer.tick(30.0)
    assert len(peer.out.pings) == 1
    peer.frame(FrameType.PING, Flag.ACK, 0, peer.out.pings[0])
    peer.tick(30.0)
    assert len(peer.out.pings) == 2
    peer.tick(5.0)
    calm(peer, "keepalive ping not answered")


def test_max_connection_age_drains_then_cuts_after_the_grace() -> None:
    peer = Peer(ServerLimits(connection_age_s_max=100, connection_age_grace_s=10))
    stream_id = peer.start_call([b"k"])
    peer.tick(100.0)
    assert peer.out.goaway is not None and peer.out.goaway.code == ErrorCode.NO_ERROR
    assert peer.start_call([b"k"]) in peer.out.resets  # refused: draining
    peer.tick(10.0)
    assert any(isinstance(e, ConnectionEnded) and not e.graceful for e in peer.events)
    assert stream_id not in peer.out.statuses


# -- memory held for requests ----------------------------------------------------------


def test_server_wide_budget_ends_the_stream_that_would_pass_it() -> None:
    budget = SharedBudget(100_000)
    first, second = Peer(budget=budget), Peer(budget=budget)
    declared = b"\x00" + (90_000).to_bytes(4, "big")
    a = first.start_call([], end_stream=False)
    send_data(first, a, declared + bytes(60_000))
    b = second.start_call([], end_stream=False)
    send_data(second, b, declared + bytes(60_000))
    assert second.out.statuses[b] == RESOURCE_EXHAUSTED
    assert "unread requests" in second.out.messages[b]
    assert first.out.goaway is None and second.out.goaway is None
    assert budget.held_bytes == 60_005
    first.protocol.connection_lost()
    assert budget.held_bytes == 0


def test_a_partial_request_is_ended_after_the_request_stall_timeout() -> None:
    peer = Peer(ServerLimits(request_stall_timeout_s=20))
    stream_id = peer.start_call([], end_stream=False)
    peer.frame(FrameType.DATA, 0, stream_id, b"\x00" + (1000).to_bytes(4, "big") + bytes(10))
    peer.tick(19.0)
    assert stream_id not in peer.out.statuses
    peer.tick(6.0)  # streams are looked at every quarter of the timeout
    assert peer.out.statuses[stream_id] == RESOURCE_EXHAUSTED
    assert peer.protocol.held_bytes == 0


def test_an_unfinished_header_block_ends_the_connection_after_the_stall_timeout() -> None:
    peer = Peer(ServerLimits(request_stall_timeout_s=20))
    peer.frame(FrameType.HEADERS, 0, 1, peer.encoder.encode([(":method", "POST")]))
    peer.tick(20.0)
    calm(peer, "header block left unfinished")


def test_streams_over_the_concurrency_limit_are_refused_and_slots_come_back() -> None:
    peer = Peer(ServerLimits(concurrent_streams_max=3))
    ids = [peer.start_call([b"k"]) for _ in range(4)]
    assert peer.out.resets == {ids[3]: ErrorCode.REFUSED_STREAM}
    assert [e.stream_id for e in peer.events if isinstance(e, CallStarted)] == ids[:3]
    ended = [e.stream_id for e in peer.events if isinstance(e, MessageReceived) and e.end_stream]
    assert ended == ids[:3]
    peer.answer(ids[0], b"v")
    peer.release(ids[0])
    again = peer.start_call([b"k"])
    assert again not in peer.out.resets


def test_streams_opened_past_the_limit_again_and_again_get_enhance_your_calm() -> None:
    # The SETTINGS flood's opening: thousands of streams on one connection
    # past its advertised limit, each a header block to decode and refuse.
    limits = ServerLimits(
        concurrent_streams_max=4, refused_streams_burst=20, refused_streams_per_s=10
    )
    peer = Peer(limits)
    held = [peer.start_call([], end_stream=False) for _ in range(4)]
    refused = [peer.start_call([], end_stream=False) for _ in range(20)]
    assert all(peer.out.resets[i] == ErrorCode.REFUSED_STREAM for i in refused)
    assert peer.out.goaway is None, "a client racing our SETTINGS is refused politely"
    peer.now += 1.0  # 10 more
    for _ in range(10):
        peer.start_call([], end_stream=False)
    assert peer.out.goaway is None
    peer.start_call([], end_stream=False)
    calm(peer, "too many streams opened past 4")
    assert set(peer.protocol.streams) <= set(held)


def test_streams_refused_while_draining_do_not_count_as_opened_past_the_limit() -> None:
    # A draining connection refuses every new stream: not the client's fault.
    peer = Peer(ServerLimits(refused_streams_burst=2))
    held = peer.start_call([], end_stream=False)
    peer.protocol.close_gracefully()
    for _ in range(10):
        assert peer.start_call([b"k"]) in peer.out.resets
    assert peer.out.goaway is not None and peer.out.goaway.code == ErrorCode.NO_ERROR
    assert held in peer.protocol.streams


def test_limits_are_validated_with_their_names() -> None:
    with pytest.raises(ValueError, match="cheap_frames_burst"):
        ServerLimits(cheap_frames_burst=0)
    with pytest.raises(ValueError, match="send_stall_timeout_s"):
        ServerLimits(send_stall_timeout_s=-1)
    assert ServerLimits.for_member(1024, 2**32 - 1).concurrent_streams_max == 2**31 - 1


def test_whole_small_messages_pass_a_full_server_budget() -> None:
    # Clients holding partial requests fill the budget; a small call that
    # arrives whole is still served, or they would starve everyone.
    budget = SharedBudget(100_000)
    holder, good = Peer(budget=budget), Peer(budget=budget)
    held = holder.start_call([], end_stream=False)
    send_data(holder, held, b"\x00" + (150_000).to_bytes(4, "big") + bytes(99_000))
    assert budget.held_bytes == 99_005
    stream_id = good.start_call([b"small"])
    assert MessageReceived(stream_id, b"small", True) in good.events
    assert stream_id not in good.out.statuses
    good.protocol.consumed(stream_id, 10)
    assert budget.held_bytes == 99_005
    # A partial message does not pass.
    partial = good.start_call([], end_stream=False)
    good.frame(FrameType.DATA, 0, partial, b"\x00" + (5000).to_bytes(4, "big") + bytes(2000))
    assert good.out.statuses[partial] == RESOURCE_EXHAUSTED


def test_a_unary_request_never_ended_is_ended_after_the_request_stall_timeout() -> None:
    # HEADERS without END_STREAM and nothing more would hold a call slot
    # for good; a streaming call may pause as long as it likes.
    peer = Peer(ServerLimits(request_stall_timeout_s=20))
    unary = peer.start_call([], end_stream=False)
    streaming = peer.start_call([], end_stream=False)
    peer.protocol.let_request_pause(streaming)
    peer.tick(15.0)
    assert unary not in peer.out.statuses
    peer.tick(5.0)
    assert peer.out.statuses[unary] == RESOURCE_EXHAUSTED
    assert CallEnded(unary, "request left unfinished") in peer.events
    peer.tick(100.0)
    assert streaming not in peer.out.statuses


def test_a_connection_over_its_send_budget_gets_no_new_calls_run() -> None:
    # Each call would cost the work of an answer the client will not read.
    peer = Peer(ServerLimits(connection_send_buffer_bytes_max=1024 * 1024))
    peer.send(settings((Setting.INITIAL_WINDOW_SIZE, 0)))
    first = peer.start_call([b"k"])
    peer.answer(first, b"v" * (2 * 1024 * 1024))  # alone in the queue: it may pass the budget
    assert first in peer.protocol.blocked
    refused = peer.start_call([b"k"])
    assert peer.out.resets[refused] == ErrorCode.REFUSED_STREAM
    assert not any(isinstance(e, CallStarted) and e.stream_id == refused for e in peer.events)
    # Once the client reads, calls run again.
    peer.send(settings((Setting.INITIAL_WINDOW_SIZE, 2**30)) + frames.window_update(0, 2**30))
    assert peer.out.statuses[first] == 0
    again = peer.start_call([b"k"])
    assert again not in peer.out.resets


def test_answers_queued_by_all_connections_have_a_server_wide_budget() -> None:
    limits = ServerLimits(server_send_buffer_bytes_max=3 * 1024 * 1024)
    shared = SharedBudget(limits.server_send_buffer_bytes_max)
    slow, reader = Peer(limits), Peer(limits)
    slow.protocol.answers = reader.protocol.answers = shared
    slow.send(settings((Setting.INITIAL_WINDOW_SIZE, 0)))
    first, second = slow.start_call([b"k"]), slow.start_call([b"k"])
    slow.answer(first, b"v" * (4 * 1024 * 1024))  # alone on its connection: it may pass
    slow.answer(second, b"v" * 10)
    assert slow.out.statuses[second] == RESOURCE_EXHAUSTED
    assert shared.held_bytes == slow.protocol.queued_bytes > shared.bytes_max
    # The slow client gets no new calls run; a client that reads is served.
    refused = slow.start_call([b"k"])
    assert slow.out.resets[refused] == ErrorCode.REFUSED_STREAM
    good = reader.start_call([b"k"])
    reader.answer(good, b"v" * 100)
    assert reader.out.statuses[good] == 0
    slow.protocol.connection_lost()
    assert shared.held_bytes == 0
