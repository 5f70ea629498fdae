"""Crash and corruption: torn tails are repaired; damage anywhere else is reported, not skipped."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.raft import Entry, HardState
from syndic.storage import Wal, WalCorruptError, WalOptions
from syndic.storage.records import (
    RECORD_HEADER,
    RECORD_HEADER_SIZE_BYTES,
    SEGMENT_HEADER_SIZE_BYTES,
    SEGMENT_MAGIC,
    RecordType,
    SegmentHeader,
    encode_entry,
    encode_segment_header,
    frame_record,
)
from tests.storage._util import make_entries, no_fsync, segment_paths

SMALL = WalOptions(
    segment_size_bytes_max=4096, record_size_bytes_max=1024, write_buffer_size_bytes_max=512
)


def record_offsets(path: str) -> list[tuple[int, int]]:
    """(start, end) of every record in a healthy segment file."""
    data = Path(path).read_bytes()
    offsets = []
    offset = SEGMENT_HEADER_SIZE_BYTES
    while offset < len(data):
        length = RECORD_HEADER.unpack_from(data, offset)[0]
        end = offset + RECORD_HEADER_SIZE_BYTES + length
        offsets.append((offset, end))
        offset = end
    return offsets


def build_log(path: Path, options: WalOptions | None = None) -> None:
    """Synced prefix: entries 1..5 and a hard state; then a final batch e6, e7, hs."""
    with Wal.open(path, options, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=3), make_entries(1, 5, size=40))
        wal.save(HardState(term=1, vote=1, commit=5), make_entries(6, 2, size=100))


def open_state(path: Path, options: WalOptions | None = None) -> tuple[list[int], HardState]:
    with Wal.open(path, options, fsync=no_fsync) as wal:
        state = wal.read_all()
    return [e.index for e in state.entries], state.hard_state


def test_cut_at_every_byte_of_the_final_batch(tmp_path: Path) -> None:
    pristine = tmp_path / "pristine"
    build_log(pristine)
    [segment] = segment_paths(pristine)
    records = record_offsets(segment)
    batch = records[-3:]  # ENTRY 6, ENTRY 7, HARD_STATE
    data = Path(segment).read_bytes()
    for cut in range(batch[0][0], len(data) + 1):
        work = tmp_path / f"cut{cut}"
        shutil.copytree(pristine, work)
        work_segment = os.path.join(work, os.path.basename(segment))
        os.truncate(work_segment, cut)
        complete = sum(1 for _, end in batch if end <= cut)
        with Wal.open(work, fsync=no_fsync) as wal:
            state = wal.read_all()
            expected = [1, 2, 3, 4, 5, 6, 7][: 5 + min(complete, 2)]
            assert [e.index for e in state.entries] == expected, cut
            assert state.hard_state.commit == (5 if complete == 3 else 3), cut
            torn_start = next((start for start, end in batch if start < cut < end), None)
            if torn_start is None:
                assert state.repairs == (), cut
            else:
                [repair] = state.repairs
                assert (repair.path, repair.offset) == (work_segment, torn_start), cut
                assert repair.dropped_bytes == cut - torn_start
                assert os.path.getsize(work_segment) == torn_start
            # The repaired log takes further appends that replay correctly.
            next_index = expected[-1] + 1
            wal.save(HardState(term=2, vote=2, commit=4), make_entries(next_index, 1, term=2))
        indexes, hard_state = open_state(work)
        assert indexes == [*expected, next_index], cut
        assert hard_state == HardState(term=2, vote=2, commit=4)
        shutil.rmtree(work)


def test_zero_filled_tail_is_torn(tmp_path: Path) -> None:
    build_log(tmp_path)
    [segment] = segment_paths(tmp_path)
    last_start, last_end = record_offsets(segment)[-1]
    with open(segment, "r+b") as handle:  # the final record's blocks never written
        handle.seek(last_start)
        handle.write(b"\0" * (last_end - last_start) + b"\0" * 4096)
    indexes, hard_state = open_state(tmp_path)
    assert indexes == [1, 2, 3, 4, 5, 6, 7]
    assert hard_state.commit == 3
    assert os.path.getsize(segment) == last_start


def test_crc_failure_of_the_final_record_is_a_torn_tail(tmp_path: Path) -> None:
    build_log(tmp_path)
    [segment] = segment_paths(tmp_path)
    start, end = record_offsets(segment)[-1]
    # Payload bytes, the payload CRC field, the header CRC field, the type byte:
    # the length is intact, so the record provably ends at the end of the file.
    for position in (end - 1, start + RECORD_HEADER_SIZE_BYTES, start + 9, start + 13, start + 4):
        work = tmp_path / f"w{position}"
        shutil.copytree(tmp_path, work, ignore=shutil.ignore_patterns("w*"))
        work_segment = os.path.join(work, os.path.basename(segment))
        raw = bytearray(Path(work_segment).read_bytes())
        raw[position] ^= 0x01
        Path(work_segment).write_bytes(bytes(raw))
        with Wal.open(work, fsync=no_fsync) as wal:
            state = wal.read_all()
        assert [e.index for e in state.entries] == [1, 2, 3, 4, 5, 6, 7]
        assert state.hard_state.commit == 3
        assert state.repairs[0].offset == start


def test_damaged_length_of_the_final_record_is_reported_not_guessed(tmp_path: Path) -> None:
    # With its length unreadable the record's end is unknown: more records may
    # follow, so this is reported rather than truncated away.
    build_log(tmp_path)
    [segment] = segment_paths(tmp_path)
    start, _ = record_offsets(segment)[-1]
    raw = bytearray(Path(segment).read_bytes())
    raw[start + 1] ^= 0x04
    Path(segment).write_bytes(bytes(raw))
    with pytest.raises(WalCorruptError, match="header CRC") as caught:
        Wal.open(tmp_path, fsync=no_fsync)
    assert caught.value.offset == start


def _flip_every_byte(tmp_path: Path, segment: str, start: int, end: int, step: int = 1) -> None:
    pristine = Path(segment).read_bytes()
    try:
        for position in range(start, end, step):
            damaged = bytearray(pristine)
            damaged[position] ^= 1 << (position % 8)
            Path(segment).write_bytes(bytes(damaged))
            with pytest.raises(WalCorruptError) as caught:
                Wal.open(tmp_path, SMALL, fsync=no_fsync)
            assert caught.value.path == segment, position
            assert caught.value.offset == start, position
            assert f"{segment} at byte offset {start}" in str(caught.value)
            assert Path(segment).read_bytes() == bytes(damaged), "must not repair mid-log damage"
    finally:
        Path(segment).write_bytes(pristine)


def test_bit_flip_in_every_byte_of_a_middle_record_is_reported(tmp_path: Path) -> None:
    build_log(tmp_path)
    [segment] = segment_paths(tmp_path)
    start, end = record_offsets(segment)[3]
    _flip_every_byte(tmp_path, segment, start, end)
    assert open_state(tmp_path)[0] == [1, 2, 3, 4, 5, 6, 7]


def test_bit_flips_in_a_non_last_segment_are_reported(tmp_path: Path) -> None:
    with Wal.open(tmp_path, SMALL, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=1), make_entries(1, 120, size=64))
    first = segment_paths(tmp_path)[0]
    records = record_offsets(first)
    # Every byte of the segment's final record (the one a torn-tail rule would
    # forgive in the last segment) and a sample of a middle one.
    _flip_every_byte(tmp_path, first, *records[-1])
    _flip_every_byte(tmp_path, first, *records[len(records) // 2], step=7)


def test_bit_flip_in_segment_header_is_reported(tmp_path: Path) -> None:
    build_log(tmp_path)
    [segment] = segment_paths(tmp_path)
    pristine = Path(segment).read_bytes()
    for position in range(SEGMENT_HEADER_SIZE_BYTES):
        damaged = bytearray(pristine)
        damaged[position] ^= 0x10
        Path(segment).write_bytes(bytes(damaged))
        with pytest.raises(WalCorruptError) as caught:
            Wal.open(tmp_path, fsync=no_fsync)
        assert caught.value.offset == 0


def test_truncated_non_last_segment_is_corrupt(tmp_path: Path) -> None:
    with Wal.open(tmp_path, SMALL, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=1), make_entries(1, 120, size=64))
    first = segment_paths(tmp_path)[0]
    size = os.path.getsize(first)
    os.truncate(first, size - 5)
    with pytest.raises(WalCorruptError, match="past the end") as caught:
        Wal.open(tmp_path, SMALL, fsync=no_fsync)
    assert caught.value.path == first
    assert os.path.getsize(first) == size - 5


def _append_raw(segment: str, raw: bytes) -> None:
    with open(segment, "ab") as handle:
        handle.write(raw)


def _header(length: int, record_type: int, crc: int = 0) -> bytes:
    body = struct.pack("<IB3sI", length, record_type, b"\0\0\0", crc)
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.mark.parametrize("at_end", [True, False])
def test_record_claiming_a_huge_length_is_corrupt(tmp_path: Path, at_end: bool) -> None:
    build_log(tmp_path)
    [segment] = segment_paths(tmp_path)
    hostile = _header(2**31, RecordType.ENTRY)
    if at_end:
        _append_raw(segment, hostile + b"x" * 100)
    else:
        _append_raw(segment, hostile + frame_record(RecordType.ENTRY, b"\x90"))
    with pytest.raises(WalCorruptError, match="record_size_bytes_max"):
        Wal.open(tmp_path, fsync=no_fsync)


@pytest.mark.parametrize(
    ("payload", "record_type", "match"),
    [
        (b"\xc1garbage", RecordType.ENTRY, "not valid msgpack"),
        (msgpack.packb({"a": 1}), RecordType.ENTRY, "msgpack|list"),
        (msgpack.packb([1, 9, 0, b""]), RecordType.ENTRY, "gap"),
        (msgpack.packb([1, 8, 9, b""]), RecordType.ENTRY, "entry type"),
        (msgpack.packb([1, 6, 0, "text"]), RecordType.ENTRY, "bytes"),
        (msgpack.packb([-1, 0, 0]), RecordType.HARD_STATE, "unsigned"),
        (msgpack.packb([1, 2]), 99, "RecordType|not a valid"),
        (msgpack.packb([3, 0]), RecordType.SNAPSHOT_MARKER, "both 0"),
    ],
)
def test_well_framed_but_invalid_records_are_corrupt(
    tmp_path: Path, payload: bytes, record_type: int, match: str
) -> None:
    build_log(tmp_path)
    [segment] = segment_paths(tmp_path)
    start = os.path.getsize(segment)
    type_byte = bytes((record_type,))
    crc = zlib.crc32(payload, zlib.crc32(type_byte))
    _append_raw(segment, _header(len(payload), record_type, crc) + payload)
    with pytest.raises(WalCorruptError, match=match) as caught:
        Wal.open(tmp_path, fsync=no_fsync)
    assert caught.value.offset == start


def _write_segment(path: Path, header: bytes, body: bytes = b"") -> str:
    path.mkdir(exist_ok=True)
    segment = path / "0000000000000000-0000000000000001.wal"
    segment.write_bytes(header + body)
    return str(segment)


def test_wrong_magic_is_corrupt(tmp_path: Path) -> None:
    header = bytearray(encode_segment_header(SegmentHeader(0, 1)))
    header[:8] = b"NOTAWAL!"
    _write_segment(tmp_path, bytes(header))
    with pytest.raises(WalCorruptError, match="magic"):
        Wal.open(tmp_path, fsync=no_fsync)


def test_wrong_version_is_corrupt(tmp_path: Path) -> None:
    body = struct.pack("<8sHHQQ", SEGMENT_MAGIC, 99, 0, 0, 1)
    _write_segment(tmp_path, body + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(WalCorruptError, match="version 99"):
        Wal.open(tmp_path, fsync=no_fsync)


def test_empty_segment_file_is_corrupt(tmp_path: Path) -> None:
    segment = _write_segment(tmp_path, b"")
    with pytest.raises(WalCorruptError, match="truncated") as caught:
        Wal.open(tmp_path, fsync=no_fsync)
    assert caught.value.path == segment


def test_segment_name_must_match_header(tmp_path: Path) -> None:
    _write_segment(tmp_path, encode_segment_header(SegmentHeader(0, 7)))
    with pytest.raises(WalCorruptError, match="file name"):
        Wal.open(tmp_path, fsync=no_fsync)


def test_missing_middle_segment_is_corrupt(tmp_path: Path) -> None:
    with Wal.open(tmp_path, SMALL, fsync=no_fsync) as wal:
        wal.save(HardState(term=1, vote=1, commit=1), make_entries(1, 200, size=64))
    paths = segment_paths(tmp_path)
    assert len(paths) >= 3
    os.unlink(paths[1])
    with pytest.raises(WalCorruptError, match="sequence gap"):
        Wal.open(tmp_path, SMALL, fsync=no_fsync)


def test_unfinished_new_segment_is_removed_and_reported(tmp_path: Path) -> None:
    build_log(tmp_path)
    leftover = tmp_path / "0000000000000001-0000000000000008.wal.tmp"
    leftover.write_bytes(b"half a header")
    with Wal.open(tmp_path, fsync=no_fsync) as wal:
        state = wal.read_all()
    assert not leftover.exists()
    assert [repair.path for repair in state.repairs] == [str(leftover)]
    assert [e.index for e in state.entries] == [1, 2, 3, 4, 5, 6, 7]


def test_open_fsyncs_the_replayed_tail(tmp_path: Path) -> None:
    build_log(tmp_path)
    synced: list[int] = []
    with Wal.open(tmp_path, fsync=synced.append):
        assert synced, "replayed bytes must be made durable before they are acted on"


# --------------------------------------------------------------------------- property

_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.integers(1, 6),  # entries
            st.integers(0, 3),  # how far back the batch starts (overwrite)
            st.booleans(),  # with a hard state
        ),
        st.tuples(st.just("sync")),
        st.tuples(st.just("crash"), st.floats(0, 1)),
        st.tuples(st.just("reopen")),
    ),
    min_size=1,
    max_size=25,
)


def _model(records: list[tuple[str, object]]) -> tuple[list[Entry], HardState]:
    """Plain replay semantics: an entry replaces its index and drops everything after."""
    entries: dict[int, Entry] = {}
    hard_state = HardState()
    for kind, value in records:
        if kind == "E":
            assert isinstance(value, Entry)
            for index in [i for i in entries if i >= value.index]:
                del entries[index]
            entries[value.index] = value
        else:
            assert isinstance(value, HardState)
            hard_state = value
    return [entries[i] for i in sorted(entries)], hard_state


@given(ops=_OPS, buffer_bytes=st.sampled_from([0, 300]))
def test_crashes_never_lose_synced_records_nor_invent_any(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[object, ...]], buffer_bytes: int
) -> None:
    path = tmp_path_factory.mktemp("wal")
    options = WalOptions(
        segment_size_bytes_max=2048,
        record_size_bytes_max=512,
        write_buffer_size_bytes_max=buffer_bytes,
    )
    records: list[tuple[str, object]] = []
    synced = 0
    serial = 0
    wal = Wal.open(path, options, fsync=no_fsync)
    try:
        for op in ops:
            if op[0] == "append":
                _, count, back, with_hs = op
                assert isinstance(count, int) and isinstance(back, int)
                entries, hard_state = _model(records)
                last = entries[-1].index if entries else 0
                term = max([hard_state.term, *(e.term for e in entries)]) or 1
                first = max(1, last + 1 - back)
                if first <= last:
                    term += 1  # a new leader overwrites the suffix
                batch = []
                for index in range(first, first + count):
                    serial += 1
                    batch.append(Entry(term=term, index=index, data=serial.to_bytes(4, "big")))
                new_hs = HardState(term=term, vote=1, commit=serial) if with_hs else None
                wal.append(new_hs, batch)
                records.extend(("E", entry) for entry in batch)
                if new_hs is not None:
                    records.append(("H", new_hs))
                continue
            if op[0] == "sync":
                wal.sync()
                synced = len(records)
                continue
            if op[0] == "crash":
                fraction = op[1]
                assert isinstance(fraction, float)
                status = wal.status()
                wal.abandon()
                size = os.path.getsize(status.segment_path)
                cut = status.synced_size_bytes + int(fraction * (size - status.synced_size_bytes))
                os.truncate(status.segment_path, cut)
            else:
                wal.close()
                synced = len(records)
            wal = Wal.open(path, options, fsync=no_fsync)
            state = wal.read_all()
            candidates = [_model(records[:k]) for k in range(synced, len(records) + 1)]
            replayed = (list(state.entries), state.hard_state)
            assert replayed in candidates, (replayed, records, synced)
            survived = candidates.index(replayed) + synced
            del records[survived:]
            synced = len(records)
    finally:
        wal.abandon()
    with Wal.open(path, options, fsync=no_fsync) as final:
        state = final.read_all()
    assert (list(state.entries), state.hard_state) in [
        _model(records[:k]) for k in range(synced, len(records) + 1)
    ]


def test_entry_codec_round_trip_of_large_payload() -> None:
    entry = Entry(term=2**63, index=2**64 - 1, data=os.urandom(1000))
    frame = frame_record(RecordType.ENTRY, encode_entry(entry))
    assert len(frame) == RECORD_HEADER_SIZE_BYTES + len(encode_entry(entry))


def test_a_damaged_length_reaching_the_end_of_the_file_is_corruption(tmp_path: Path) -> None:
    # The header of the second-to-last record now claims it runs to the end of
    # the file, swallowing the final record: a bit flip can do this, and the
    # intact record header inside the span shows it is not a torn tail.
    build_log(tmp_path)
    [segment] = segment_paths(tmp_path)
    (start, _), (_, last_end) = record_offsets(segment)[-2:]
    raw = bytearray(Path(segment).read_bytes())
    struct.pack_into("<I", raw, start, last_end - start - RECORD_HEADER_SIZE_BYTES)
    Path(segment).write_bytes(bytes(raw))
    with pytest.raises(WalCorruptError, match="header CRC") as caught:
        Wal.open(tmp_path, fsync=no_fsync)
    assert caught.value.offset == start


def test_a_header_cut_by_a_sector_boundary_then_zeros_is_a_torn_tail(tmp_path: Path) -> None:
    # A crash kept the first bytes of the final record's header, and the
    # sectors after them were never written.
    build_log(tmp_path)
    [segment] = segment_paths(tmp_path)
    start, end = record_offsets(segment)[-1]
    raw = bytearray(Path(segment).read_bytes())
    raw[start + 6 : end] = bytes(end - start - 6)
    Path(segment).write_bytes(bytes(raw))
    with Wal.open(tmp_path, fsync=no_fsync) as wal:
        state = wal.read_all()
    assert state.repairs[0].offset == start
    assert [e.index for e in state.entries] == [1, 2, 3, 4, 5, 6, 7]
