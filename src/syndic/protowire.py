"""Protobuf's varint, shared by syndic's hand-written encoders.

Several hot paths write protobuf bytes themselves rather than through the
protobuf runtime (the client's KV requests, the watch fan-out, etcd's
``leasepb.Lease`` in a bbolt image), because building and serializing
message objects cost more than the work. They share this one encoder
(https://protobuf.dev/programming-guides/encoding/#varints).
"""

from __future__ import annotations

from typing import Final

_UINT64_MASK: Final = (1 << 64) - 1
# Varints of 0..127 are one byte: looked up, not computed.
_SMALL: Final = [bytes([n]) for n in range(128)]


def varint(value: int) -> bytes:
    """Protobuf's base-128 varint; a negative int64 takes ten bytes, as protobuf writes it."""
    if 0 <= value < 128:
        return _SMALL[value]
    value &= _UINT64_MASK
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
