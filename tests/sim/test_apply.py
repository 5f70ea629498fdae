"""Members share the decoding of an entry, never its failure."""

from __future__ import annotations

import pytest

from syndic.kv.errors import KvError
from syndic.kv.messages import PutRequest, RangeRequest, TxnRequest, TxnResponse
from syndic.server.entry_codec import EntryCodecError, EntryKind, encode_entry
from syndic.server.state_machine import StateMachine
from syndic.sim.apply import SIM_STORE_CONFIG, decode_shared, describe_applied


def _put(key: bytes, value: bytes, request_id: int) -> bytes:
    return encode_entry(EntryKind.STORE, 1, request_id, PutRequest(key=key, value=value))


def test_every_member_applies_the_same_entry_to_the_same_state() -> None:
    members = [StateMachine(SIM_STORE_CONFIG, {}) for _ in range(3)]
    entries = [_put(b"k", b"v1", 1), _put(b"k", b"v2", 2), _put(b"other", b"x", 3)]
    for data in entries:
        decoded = [decode_shared(data) for _ in members]
        # One decoding, one payload: what each member applies is the same value.
        assert len({id(d.payload) for d in decoded}) == 1
        for member, entry in zip(members, decoded, strict=True):
            member.apply(entry)
    for member in members:
        assert member.store.revision == 4
        assert member.store.range(RangeRequest(key=b"k")).kvs[0].value == b"v2"


def test_an_undecodable_entry_fails_on_every_member() -> None:
    garbage = b"\xc1 not msgpack"
    for _ in range(2):
        with pytest.raises(EntryCodecError):
            decode_shared(garbage)


def test_equal_bytes_from_different_buffers_decode_alike() -> None:
    # Entries read back from a WAL are new bytes objects with the same content.
    data = _put(b"k", b"v", 7)
    copy = bytes(bytearray(data))
    assert copy is not data
    a, b = decode_shared(data), decode_shared(copy)
    assert (a.request_id, a.payload) == (b.request_id, b.payload)


def test_the_transcript_says_what_was_applied_and_whether_it_succeeded() -> None:
    put = PutRequest(key=b"k", value=b"v")
    assert describe_applied(put, object()) == (True, "PutRequest k")
    assert describe_applied(TxnRequest(), TxnResponse(revision=1, succeeded=False)) == (
        False,
        "TxnRequest",
    )
    error = KvError("no space")
    assert describe_applied(put, error) == (False, f"PutRequest: {error}")
