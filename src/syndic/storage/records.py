"""Binary layout of WAL segments: the segment header and the framed records.

Segment file ``{seq:016x}-{first_index:016x}.wal``::

    segment header (32 bytes, little-endian)
      0  magic        8 bytes  b"\\x89SYNWAL\\n"
      8  version      u16      WAL_FORMAT_VERSION
     10  reserved     u16      0
     12  seq          u64      segment sequence number (contiguous, ascending)
     20  first_index  u64      index the segment's first new entry is expected at
     28  header_crc   u32      CRC-32 of bytes 0..28

    then records, back to back, each:
      0  length       u32      payload length in bytes
      4  type         u8       RecordType
      5  reserved     3 bytes  0
      8  crc          u32      CRC-32 of type byte + payload
     12  header_crc   u32      CRC-32 of bytes 0..12
     16  payload      msgpack

The record header has its own CRC so that a damaged length field is detected
before it is trusted: without it a bit flip in the length of a record in the
middle of the last segment would look like a record running past the end of
the file, i.e. like a torn tail, and the records after it would be dropped
silently instead of reported.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass
from typing import Final

import msgpack

from syndic.raft.errors import InvalidArgumentError
from syndic.raft.messages import Entry, EntryType, HardState

SEGMENT_MAGIC: Final = b"\x89SYNWAL\n"
WAL_FORMAT_VERSION: Final = 1
SEGMENT_HEADER = struct.Struct("<8sHHQQI")
SEGMENT_HEADER_SIZE_BYTES: Final = SEGMENT_HEADER.size  # 32
_SEGMENT_HEADER_BODY = struct.Struct("<8sHHQQ")

RECORD_HEADER = struct.Struct("<IB3sII")
RECORD_HEADER_SIZE_BYTES: Final = RECORD_HEADER.size  # 16
_RECORD_HEADER_BODY = struct.Struct("<IB3sI")
_RESERVED = b"\x00\x00\x00"

# Entry types are stored as fixed codes, not enum values, so renumbering the
# enum can never change the meaning of bytes already on disk.
_ENTRY_TYPE_CODES: Final = {EntryType.NORMAL: 0, EntryType.CONF_CHANGE: 1}
_ENTRY_TYPES_BY_CODE: Final = {code: kind for kind, code in _ENTRY_TYPE_CODES.items()}


class RecordType(enum.IntEnum):
    ENTRY = 1
    HARD_STATE = 2
    SNAPSHOT_MARKER = 3


@dataclass(frozen=True, slots=True)
class SnapshotMarker:
    """The WAL's note that a snapshot at ``(index, term)`` is durable in the snapshot dir.

    Written after the snapshot file is renamed into place (etcd: walpb.Snapshot),
    so a marker always points at a snapshot that exists.
    """

    index: int
    term: int

    def __post_init__(self) -> None:
        for name, value in (("index", self.index), ("term", self.term)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgumentError(f"SnapshotMarker.{name} must be an int >= 0: {value!r}")
            if value >= 2**64:
                raise InvalidArgumentError(f"SnapshotMarker.{name} must be < 2**64: {value}")
        if (self.index == 0) != (self.term == 0):
            raise InvalidArgumentError(
                f"SnapshotMarker: index {self.index} and term {self.term} "
                "must be both 0 or both > 0"
            )


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    seq: int
    first_index: int


class PayloadError(ValueError):
    """A record's payload passed its CRC but does not decode to a valid value."""


def encode_segment_header(header: SegmentHeader) -> bytes:
    body = _SEGMENT_HEADER_BODY.pack(
        SEGMENT_MAGIC, WAL_FORMAT_VERSION, 0, header.seq, header.first_index
    )
    return body + struct.pack("<I", zlib.crc32(body))


def decode_segment_header(raw: bytes) -> SegmentHeader:
    """Parse a segment header; raises :class:`PayloadError` naming what is wrong."""
    if len(raw) < SEGMENT_HEADER_SIZE_BYTES:
        raise PayloadError(
            f"segment header truncated: {len(raw)} of {SEGMENT_HEADER_SIZE_BYTES} bytes"
        )
    magic, version, reserved, seq, first_index, crc = SEGMENT_HEADER.unpack_from(raw)
    if magic != SEGMENT_MAGIC:
        raise PayloadError(f"bad segment magic {magic!r}, expected {SEGMENT_MAGIC!r}")
    if zlib.crc32(raw[: SEGMENT_HEADER_SIZE_BYTES - 4]) != crc:
        raise PayloadError("segment header CRC mismatch")
    if version != WAL_FORMAT_VERSION:
        raise PayloadError(
            f"unsupported WAL format version {version}, this build reads {WAL_FORMAT_VERSION}"
        )
    if reserved != 0:
        raise PayloadError(f"segment header reserved field is {reserved}, expected 0")
    if first_index < 1:
        raise PayloadError(f"segment first_index {first_index} must be >= 1")
    return SegmentHeader(seq=seq, first_index=first_index)


def frame_record(record_type: RecordType, payload: bytes) -> bytes:
    """Frame one record: header (with both CRCs) followed by the payload."""
    type_byte = bytes((record_type,))
    crc = zlib.crc32(payload, zlib.crc32(type_byte))
    body = _RECORD_HEADER_BODY.pack(len(payload), record_type, _RESERVED, crc)
    return body + struct.pack("<I", zlib.crc32(body)) + payload


@dataclass(frozen=True, slots=True)
class RecordHeader:
    length: int
    record_type: int
    crc: int


def decode_record_header(raw: bytes | memoryview) -> RecordHeader | None:
    """Return the header at the start of ``raw``, or None when its own CRC fails."""
    length, record_type, reserved, crc, header_crc = RECORD_HEADER.unpack_from(raw)
    if zlib.crc32(raw[: RECORD_HEADER_SIZE_BYTES - 4]) != header_crc or reserved != _RESERVED:
        return None
    return RecordHeader(length=length, record_type=record_type, crc=crc)


def payload_crc(record_type: int, payload: bytes | memoryview) -> int:
    return zlib.crc32(payload, zlib.crc32(bytes((record_type,))))


def encode_entry(entry: Entry) -> bytes:
    return msgpack.packb(
        [entry.term, entry.index, _ENTRY_TYPE_CODES[entry.type], entry.data], use_bin_type=True
    )


def encode_hard_state(hard_state: HardState) -> bytes:
    return msgpack.packb([hard_state.term, hard_state.vote, hard_state.commit])


def encode_snapshot_marker(marker: SnapshotMarker) -> bytes:
    return msgpack.packb([marker.index, marker.term])


def _unpack_list(payload: bytes | memoryview, length: int, what: str) -> list[object]:
    try:
        value = msgpack.unpackb(
            payload,
            raw=False,
            strict_map_key=True,
            max_array_len=length,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise PayloadError(f"{what} payload is not valid msgpack: {exc}") from exc
    if not isinstance(value, list) or len(value) != length:
        raise PayloadError(f"{what} payload must be a list of {length} fields, got {value!r:.80}")
    return value


def _uint(what: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PayloadError(f"{what} must be an unsigned int, got {value!r:.40}")
    return value


def decode_entry(payload: bytes | memoryview) -> Entry:
    term, index, type_code, data = _unpack_list(payload, 4, "ENTRY")
    kind = _ENTRY_TYPES_BY_CODE.get(_uint("ENTRY type", type_code))
    if kind is None:
        raise PayloadError(f"ENTRY has unknown entry type code {type_code}")
    if not isinstance(data, bytes):
        raise PayloadError(f"ENTRY data must be bytes, got {type(data).__name__}")
    try:
        return Entry(term=_uint("term", term), index=_uint("index", index), type=kind, data=data)
    except InvalidArgumentError as exc:
        raise PayloadError(f"ENTRY is invalid: {exc}") from exc


def decode_hard_state(payload: bytes | memoryview) -> HardState:
    term, vote, commit = _unpack_list(payload, 3, "HARD_STATE")
    try:
        return HardState(
            term=_uint("term", term), vote=_uint("vote", vote), commit=_uint("commit", commit)
        )
    except InvalidArgumentError as exc:
        raise PayloadError(f"HARD_STATE is invalid: {exc}") from exc


def decode_snapshot_marker(payload: bytes | memoryview) -> SnapshotMarker:
    index, term = _unpack_list(payload, 2, "SNAPSHOT_MARKER")
    try:
        return SnapshotMarker(index=_uint("index", index), term=_uint("term", term))
    except InvalidArgumentError as exc:
        raise PayloadError(f"SNAPSHOT_MARKER is invalid: {exc}") from exc
