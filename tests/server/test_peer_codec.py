"""Peer frames round-trip every message field and refuse malformed bytes."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.raft import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)
from syndic.server.peer_codec import PeerCodecError, decode_batch, encode_batch

# Messages carry index 7, so their entries run contiguously from 8.
entries = st.lists(
    st.tuples(st.integers(1, 2**40), st.sampled_from(list(EntryType)), st.binary(max_size=64)),
    max_size=4,
).map(lambda raw: [Entry(term, 8 + i, kind, data) for i, (term, kind, data) in enumerate(raw)])


@given(
    kind=st.sampled_from(list(MessageType)),
    term=st.integers(0, 2**63 - 1),
    batch=entries,
    reject=st.booleans(),
    context=st.binary(max_size=16),
    with_snapshot=st.booleans(),
)
def test_round_trip_preserves_every_field(
    kind: MessageType,
    term: int,
    batch: list[Entry],
    reject: bool,
    context: bytes,
    with_snapshot: bool,
) -> None:
    snapshot = (
        Snapshot(SnapshotMeta(9, 2, ConfState(frozenset({1, 2, 3}), frozenset({4}))), b"state")
        if with_snapshot or kind is MessageType.SNAPSHOT
        else None
    )
    msg = Message(
        type=kind,
        from_id=1,
        to_id=2,
        term=term,
        log_term=3,
        index=7,
        entries=tuple(batch),
        commit=5,
        reject=reject,
        reject_hint=4,
        snapshot=snapshot,
        context=context,
    )
    assert decode_batch(encode_batch([msg, msg], [b"p"])) == ([msg, msg], [b"p"])


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\xc1",
        msgpack.packb([99, [], []]),
        msgpack.packb([1, [], "no"]),
        msgpack.packb([1, [], [1, 2]]),
        msgpack.packb([1, [], [b""] * 10_001]),
        msgpack.packb([1, "not a list", []]),
        msgpack.packb([1, [[1, 2]], []]),
        msgpack.packb([1, [[77, 1, 2, 1, 0, 0, [], 0, False, 0, None, b""]], []]),
        msgpack.packb([1, [[5, 0, 2, 1, 0, 0, [], 0, False, 0, None, b""]], []]),
        msgpack.packb([1, [[5, 1, 2, -1, 0, 0, [], 0, False, 0, None, b""]], []]),
        msgpack.packb([1, [[5, 1, 2, 1, 0, 0, [[1, 1, 9, b""]], 0, False, 0, None, b""]], []]),
    ],
)
def test_malformed_frames_are_refused(body: bytes) -> None:
    with pytest.raises(PeerCodecError):
        decode_batch(body)
