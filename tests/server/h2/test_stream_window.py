"""A WINDOW_UPDATE that would take one stream's send window past 2^31-1 ends
that stream with FLOW_CONTROL_ERROR and nothing else (RFC 9113 §6.9.1), as
python-hyper's h2 does; the connection and its other calls go on."""

from __future__ import annotations

from syndic.server.h2 import frames
from syndic.server.h2.frames import ErrorCode
from tests.server.h2.sansio import Peer


def test_a_stream_window_overflow_resets_that_stream_only() -> None:
    peer = Peer()
    doomed = peer.start_call([b"w"], end_stream=False)
    other = peer.start_call([b"k"])
    peer.send(frames.window_update(doomed, frames.WINDOW_MAX))
    assert peer.out.resets[doomed] == ErrorCode.FLOW_CONTROL_ERROR
    assert peer.out.goaway is None
    peer.answer(other, b"v")
    assert peer.out.payloads[other]
    # A later update for the reset stream is one still in flight: ignored.
    peer.send(frames.window_update(doomed, 1))
    assert peer.out.goaway is None
    peer.protocol.check_invariants()


def test_an_update_that_reaches_the_maximum_exactly_is_accepted() -> None:
    peer = Peer()
    stream_id = peer.start_call([b"w"], end_stream=False)
    peer.send(frames.window_update(stream_id, frames.WINDOW_MAX - 65_535))
    assert stream_id not in peer.out.resets
    assert peer.out.goaway is None
