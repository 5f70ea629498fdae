"""Request heads in, response heads out: HPACK (RFC 7541) as a gRPC server needs it.

Decoding uses the ``hpack`` package. A gRPC client sends the same few
headers on every call: after the first calls they are references to its
HPACK table, or literals it chose never to index (nghttp2 never indexes
``:path`` or ``content-length``, so h2load's and curl's blocks are full of
Huffman-coded literals). A block made only of references and non-indexing
literals does not change the table, so its parsed form is cached by its
bytes until a block that may change the table arrives: decoding the same
bytes against the same table gives the same headers. Steady traffic is then
parsed once per connection, whatever mix of representations the client uses.

Encoding never touches the client's table: every header is a literal "not
indexed", and the first block on a connection sets the table size to 0, so
whatever table size the client allows is respected without tracking it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Final

import hpack

from syndic.server.h2.frames import ErrorCode, ProtocolError

# Headers that carry gRPC's own protocol, not the caller's metadata.
_RESERVED: Final = frozenset(
    {b"content-type", b"te", b"grpc-timeout", b"grpc-encoding", b"grpc-accept-encoding"}
)
_TIMEOUT: Final = re.compile(rb"(\d{1,8})([HMSmun])")
_TIMEOUT_UNIT_S: Final = {
    b"H": 3600.0,
    b"M": 60.0,
    b"S": 1.0,
    b"m": 1e-3,
    b"u": 1e-6,
    b"n": 1e-9,
}
_CACHE_ENTRIES_MAX: Final = 256
# Only blocks this small are cached, so a connection's cache holds at most
# 256 x 1 KiB however large the blocks a client sends. A gRPC call's head is
# a few dozen bytes; one with a bearer token a few hundred.
_CACHED_BLOCK_BYTES_MAX: Final = 1024
TABLE_SIZE_ZERO: Final = b"\x20"


@dataclass(frozen=True, slots=True)
class RequestHead:
    """What a gRPC request's HEADERS say."""

    method: bytes
    path: str
    content_type: bytes
    timeout_s: float | None
    encoding: bytes
    metadata: tuple[tuple[str, str | bytes], ...]
    malformed: str = ""  # why the head cannot start a call, or ""


class RequestHeadDecoder:
    """One connection's HPACK decoder, with the cache of unchanging blocks."""

    __slots__ = ("_cache", "_decoder")

    def __init__(self, header_list_bytes_max: int) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=header_list_bytes_max)
        self._cache: dict[bytes, RequestHead] = {}

    def decode(self, block: bytes) -> RequestHead:
        head = self._cache.get(block)
        if head is not None:
            return head
        neutral = leaves_table_unchanged(block)
        if not neutral:
            self._cache.clear()  # references may now point at other entries
        try:
            fields = self._decoder.decode(block, raw=True)
        except hpack.OversizedHeaderListError as exc:
            raise ProtocolError(ErrorCode.ENHANCE_YOUR_CALM, f"header list: {exc}") from exc
        except hpack.HPACKError as exc:
            # The table is now out of step with the client's: nothing after
            # this block could be decoded, so the connection ends.
            raise ProtocolError(ErrorCode.COMPRESSION_ERROR, f"HPACK: {exc}") from exc
        head = _request_head(fields)  # type: ignore[arg-type]
        if neutral and len(block) <= _CACHED_BLOCK_BYTES_MAX:
            if len(self._cache) >= _CACHE_ENTRIES_MAX:
                self._cache.clear()
            self._cache[block] = head
        return head


def leaves_table_unchanged(block: bytes) -> bool:
    """True if decoding ``block`` cannot change the HPACK table (RFC 7541 §6).

    Indexed fields (§6.1) and literals "without indexing" or "never indexed"
    (§6.2.2, §6.2.3) leave the table alone; a literal "with incremental
    indexing" (§6.2.1) or a table size update (§6.3) changes it. A block that
    is cut short is reported as changing it, so it is never cached.
    """
    i, n = 0, len(block)
    while i < n:
        byte = block[i]
        if byte & 0x80:  # indexed field: a 7-bit prefix integer
            i = _skip_integer(block, i, 0x7F)
        elif byte & 0xE0:  # 01xxxxxx (incremental indexing) or 001xxxxx (size update)
            return False
        else:  # 0000xxxx or 0001xxxx: a 4-bit prefix name index, 0 = literal name
            name_index = byte & 0x0F
            i = _skip_integer(block, i, 0x0F)
            if name_index == 0:
                i = _skip_string(block, i)
            i = _skip_string(block, i)
        if i < 0:
            return False
    return True


def _skip_integer(block: bytes, i: int, prefix_mask: int) -> int:
    """The offset after the integer (§5.1) that starts at ``i``; -1 if cut short."""
    return _read_integer(block, i, prefix_mask)[1]


def _skip_string(block: bytes, i: int) -> int:
    """The offset after the string literal (§5.2) that starts at ``i``; -1 if cut short."""
    length, i = _read_integer(block, i, 0x7F)  # the top bit is the Huffman flag
    if i < 0 or i + length > len(block):
        return -1
    return i + length


def _read_integer(block: bytes, i: int, prefix_mask: int) -> tuple[int, int]:
    """(value, offset after it) of the integer (§5.1) at ``i``; offset -1 if cut short."""
    n = len(block)
    if i < 0 or i >= n:
        return 0, -1
    value = block[i] & prefix_mask
    i += 1
    if value < prefix_mask:
        return value, i
    shift = 0
    while i < n:
        byte = block[i]
        i += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i
        if shift > 28:  # longer than any header block syndic accepts
            return 0, -1
    return 0, -1


def _request_head(fields: list[tuple[bytes, bytes]]) -> RequestHead:
    method = path = content_type = encoding = b""
    timeout_s: float | None = None
    metadata: list[tuple[str, str | bytes]] = []
    malformed = ""
    for name, value in fields:
        if name.startswith(b":"):
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name not in (b":scheme", b":authority"):
                malformed = f"unexpected pseudo-header {name.decode('latin-1')!r}"
        elif name == b"content-type":
            content_type = value
        elif name == b"grpc-timeout":
            timeout_s = parse_timeout(value)
            if timeout_s is None:
                malformed = f"malformed grpc-timeout: {value.decode('latin-1')!r}"
        elif name == b"grpc-encoding":
            encoding = value
        elif name not in _RESERVED:
            decoded = _metadata_value(name, value)
            if decoded is None:
                malformed = f"malformed binary header {name.decode('latin-1')!r}"
            else:
                metadata.append((name.decode("latin-1"), decoded))
    if not path:
        malformed = malformed or "missing :path"
    return RequestHead(
        method,
        path.decode("latin-1"),
        content_type,
        timeout_s,
        encoding,
        tuple(metadata),
        malformed,
    )


def _metadata_value(name: bytes, value: bytes) -> str | bytes | None:
    if not name.endswith(b"-bin"):
        return value.decode("latin-1")
    try:  # gRPC sends binary values base64-encoded, padding optional
        return base64.b64decode(value + b"=" * (-len(value) % 4), validate=True)
    except binascii.Error:
        return None


def parse_timeout(value: bytes) -> float | None:
    """gRPC's ``grpc-timeout`` ("100m", "5S") in seconds; None if malformed."""
    match = _TIMEOUT.fullmatch(value)
    if match is None:
        return None
    return int(match.group(1)) * _TIMEOUT_UNIT_S[match.group(2)]


def encode_integer(value: int, prefix_bits: int, first_byte: int) -> bytes:
    """HPACK's integer representation (RFC 7541 §5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    out = bytearray([first_byte | limit])
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def literal(name: bytes, value: bytes) -> bytes:
    """A header field "without indexing", name and value as plain octets."""
    name_len = encode_integer(len(name), 7, 0)
    return b"\x00" + name_len + name + encode_integer(len(value), 7, 0) + value


# ":status: 200" is entry 8 of HPACK's static table.
_STATUS_200: Final = b"\x88"
RESPONSE_HEADERS: Final = _STATUS_200 + literal(b"content-type", b"application/grpc")
OK_TRAILERS: Final = literal(b"grpc-status", b"0")


# grpc-message is cut to this many bytes once encoded, so that a status
# always fits one frame of the smallest size a client may allow.
STATUS_MESSAGE_BYTES_MAX: Final = 8192


def status_trailers(code: int, message: str) -> bytes:
    """The trailers that end a call with ``code`` (and ``message`` unless empty)."""
    block = literal(b"grpc-status", str(code).encode())
    if message:
        block += literal(b"grpc-message", _cut(percent_encode(message)))
    return block


def _cut(encoded: bytes) -> bytes:
    """``encoded`` within STATUS_MESSAGE_BYTES_MAX, never splitting a %XX escape."""
    if len(encoded) <= STATUS_MESSAGE_BYTES_MAX:
        return encoded
    cut = encoded[:STATUS_MESSAGE_BYTES_MAX]
    escape = cut.rfind(b"%", len(cut) - 2)
    return cut[:escape] if escape >= 0 else cut


def http_error_headers(status: int, grpc_code: int, message: str) -> bytes:
    """A non-200 reply, for requests that are not gRPC calls at all."""
    return (
        literal(b":status", str(status).encode())
        + literal(b"content-type", b"text/plain")
        + status_trailers(grpc_code, message)
    )


def percent_encode(message: str) -> bytes:
    """gRPC's percent-encoding of ``grpc-message``: UTF-8, then %XX outside printable ASCII."""
    raw = message.encode("utf-8", errors="replace")
    if all(0x20 <= b <= 0x7E and b != 0x25 for b in raw):
        return raw
    return b"".join(bytes([b]) if 0x20 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b for b in raw)
