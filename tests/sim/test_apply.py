"""Members share the decoding of an entry, never its failure."""

from __future__ import annotations

import pytest

from syndic.kv.messages import PutRequest
from syndic.server.entry_codec import EntryKind, encode_entry
from syndic.sim.apply import ApplyError, MemberState


def _put(key: bytes, value: bytes, request_id: int) -> bytes:
    return encode_entry(EntryKind.STORE, 1, request_id, PutRequest(key=key, value=value))


def test_every_member_applies_the_same_entry_to_the_same_state() -> None:
    members = [MemberState(lambda: 0) for _ in range(3)]
    entries = [_put(b"k", b"v1", 1), _put(b"k", b"v2", 2), _put(b"other", b"x", 3)]
    for index, data in enumerate(entries, start=1):
        results = [m.apply(index, data) for m in members]
        assert all(r is not None for r in results)
        # One decoding, one payload: what each member applied is the same value.
        payloads = {id(r.payload) for r in results if r is not None}
        assert len(payloads) == 1
    for member in members:
        assert member.revision == 4
        assert member.get("k") == "v2"
        assert member.get("other") == "x"


def test_an_undecodable_entry_fails_on_every_member() -> None:
    garbage = b"\xc1 not msgpack"
    for member in (MemberState(lambda: 0), MemberState(lambda: 0)):
        with pytest.raises(ApplyError, match="entry 1 cannot be decoded"):
            member.apply(1, garbage)


def test_equal_bytes_from_different_buffers_decode_alike() -> None:
    # Entries read back from a WAL are new bytes objects with the same content.
    data = _put(b"k", b"v", 7)
    copy = bytes(bytearray(data))
    assert copy is not data
    first, second = MemberState(lambda: 0), MemberState(lambda: 0)
    a, b = first.apply(1, data), second.apply(1, copy)
    assert a is not None and b is not None
    assert (a.request_id, a.revision, a.payload) == (b.request_id, b.revision, b.payload)
