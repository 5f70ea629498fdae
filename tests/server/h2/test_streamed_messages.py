"""Messages of a streaming answer (a watch's events), sans-IO: what goes on the wire, in order.

A message with room in every window leaves at once as one DATA frame; one
that finds a queue or a closed window waits behind what is queued. Either
way the client reads every message once, whole and in order.
"""

from __future__ import annotations

from syndic.server.h2 import frames
from syndic.server.h2.frames import FrameType, Setting
from tests.server.h2.raw_client import grpc_message
from tests.server.h2.sansio import Peer


def _window(size: int) -> bytes:
    return frames.settings_frame({Setting.INITIAL_WINDOW_SIZE: size})


def test_a_message_with_room_leaves_as_one_data_frame_after_the_headers() -> None:
    peer = Peer()
    stream_id = peer.start_call([b"w"], end_stream=False)
    before = len(peer.out.frame_types)
    peer.send_message(stream_id, b"first")
    assert peer.out.frame_types[before:] == [FrameType.HEADERS, FrameType.DATA]
    before = len(peer.out.frame_types)
    peer.send_message(stream_id, b"second")
    assert peer.out.frame_types[before:] == [FrameType.DATA]
    assert peer.out.payloads[stream_id] == grpc_message(b"first") + grpc_message(b"second")


def test_messages_behind_a_closed_window_keep_their_order() -> None:
    peer = Peer()
    peer.send(_window(12))  # less than one message of 10 bytes with its prefix
    stream_id = peer.start_call([b"w"], end_stream=False)
    messages = [b"%010d" % n for n in range(6)]
    for message in messages[:3]:
        peer.send_message(stream_id, message)
    assert peer.out.payloads[stream_id] == grpc_message(messages[0])[:12]
    # The window opens for what is queued and 4 bytes more: the queue goes
    # first, the next message takes the 4 bytes, and the rest wait behind it.
    peer.send(frames.window_update(stream_id, 3 * 15 - 12 + 4))
    for message in messages[3:]:
        peer.send_message(stream_id, message)
    peer.send(frames.window_update(stream_id, 1000))
    assert peer.out.payloads[stream_id] == b"".join(grpc_message(m) for m in messages)


def test_a_message_over_the_peer_frame_size_is_split_and_whole_at_the_client() -> None:
    peer = Peer()
    peer.send(_window(2**31 - 1))
    peer.send(frames.window_update(0, 2**31 - 1 - frames.DEFAULT_WINDOW))
    stream_id = peer.start_call([b"w"], end_stream=False)
    big = bytes(range(256)) * 200  # 51,200 bytes: four DATA frames of at most 16 KiB
    peer.send_message(stream_id, b"small")
    peer.send_message(stream_id, big)
    peer.send_message(stream_id, b"after")
    assert peer.out.payloads[stream_id] == (
        grpc_message(b"small") + grpc_message(big) + grpc_message(b"after")
    )
    assert peer.out.frame_types.count(FrameType.DATA) == 1 + 4 + 1
