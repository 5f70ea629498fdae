"""A segmented write-ahead log for the Raft core's hard state, entries and snapshot markers.

Shaped for the Ready contract (see :class:`syndic.raft.Ready`): the runtime
calls :meth:`Wal.append` for every Ready it handles in one cycle, then one
:meth:`Wal.sync` (group commit: many appends, one fsync), and only then sends
the Ready's messages. :meth:`Wal.save` does both for a single Ready.

Durability rules, after etcd's ``wal`` package:

* Records are framed with a length, a type and CRCs (layout in
  :mod:`syndic.storage.records`); payloads are msgpack.
* A segment is closed (fsynced) before the next one is created, and a new
  segment appears atomically (written as ``*.tmp``, fsynced, renamed, the
  directory fsynced). So only the tail of the *last* segment can ever be torn
  by a crash; damage anywhere else raises :class:`WalCorruptError`.
* Every segment starts by restating the current hard state and latest
  snapshot marker (etcd: ``cut()`` saves the state into the new file), so
  segments older than a durable snapshot can be deleted without losing them.
* On replay, an entry at an index <= the last index replaces that entry and
  every later one (the leader overwrote a conflicting suffix, Raft §5.3;
  etcd: ``ents = append(ents[:e.Index-start-1], e)``).
* A snapshot marker whose (index, term) matches the entry held at that index
  keeps the log (local compaction); otherwise the whole log is discarded, as a
  follower does when it installs a leader's snapshot (Raft §7).

Example::

    >>> import tempfile
    >>> from syndic.raft import Entry, HardState
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with Wal.open(d) as wal:
    ...         wal.save(HardState(term=1, vote=1, commit=0), [Entry(term=1, index=1)])
    ...     with Wal.open(d) as wal:
    ...         [e.index for e in wal.read_all().entries]
    [1]
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, ParamSpec, TypeVar

from syndic.raft.messages import Entry, HardState, SnapshotMeta
from syndic.storage.disk import Disk, FsyncFn, OsDisk
from syndic.storage.durable import write_atomically
from syndic.storage.errors import (
    DataDirError,
    StorageArgumentError,
    WalClosedError,
    WalCorruptError,
    WalError,
)
from syndic.storage.records import (
    RECORD_HEADER,
    RECORD_HEADER_SIZE_BYTES,
    SEGMENT_HEADER_SIZE_BYTES,
    PayloadError,
    RecordType,
    SegmentHeader,
    SnapshotMarker,
    decode_entry,
    decode_hard_state,
    decode_record_header,
    decode_segment_header,
    decode_snapshot_marker,
    encode_entry,
    encode_hard_state,
    encode_segment_header,
    encode_snapshot_marker,
    frame_record,
    payload_crc,
)

log = logging.getLogger(__name__)

MIB: Final = 1024 * 1024
# A disk writes whole sectors: a crash mid-write leaves some sectors of a
# write on the platter and the later ones as zeros (blocks allocated to the
# extended file but never written).
SECTOR_SIZE_BYTES: Final = 512
LOCK_FILE_NAME: Final = "LOCK"
SEGMENT_SUFFIX: Final = ".wal"
TEMP_SUFFIX: Final = ".tmp"
_SEGMENT_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
# A segment's head holds its header, one HARD_STATE and at most one
# SNAPSHOT_MARKER; each of those payloads is a few dozen bytes.
_SEGMENT_HEAD_SIZE_BYTES_MAX: Final = SEGMENT_HEADER_SIZE_BYTES + 2 * (
    RECORD_HEADER_SIZE_BYTES + 64
)

# Deliberately unsafe replay modes for the simulator's negative controls
# (syndic.sim.buggify); a production WAL never sets any.
WAL_PLANTED_BUGS: Final = frozenset({"skip-undecodable-entry"})

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True)
class WalOptions:
    """Tunables of a WAL; every bound has its unit in its name.

    ``segment_size_bytes_max``: a segment is closed and a new one started before
    a record would take it past this size (etcd: SegmentSizeBytes, 64 MiB).
    ``record_size_bytes_max``: the largest payload accepted on append and on
    replay; a header claiming more is corruption, never an allocation.
    Default 16 MiB: ten times the 1.5 MiB request limit, so any entry the
    server accepts fits.
    ``write_buffer_size_bytes_max``: appended records wait in memory until
    this many bytes accumulate (then they are written, not synced), so one
    cycle's batch reaches the kernel in one ``write``.
    ``planted_bugs``: names from :data:`WAL_PLANTED_BUGS`, for the simulator only.
    """

    segment_size_bytes_max: int = 64 * MIB
    record_size_bytes_max: int = 16 * MIB
    write_buffer_size_bytes_max: int = 1 * MIB
    planted_bugs: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.planted_bugs) - WAL_PLANTED_BUGS)
        if unknown:
            raise StorageArgumentError(f"WalOptions.planted_bugs: unknown {unknown}")
        for name in ("segment_size_bytes_max", "record_size_bytes_max"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise StorageArgumentError(f"WalOptions.{name} must be an int >= 1: {value!r}")
        buffer_max = self.write_buffer_size_bytes_max
        if not isinstance(buffer_max, int) or isinstance(buffer_max, bool) or buffer_max < 0:
            raise StorageArgumentError(
                f"WalOptions.write_buffer_size_bytes_max must be an int >= 0: {buffer_max!r}"
            )
        smallest_segment = (
            _SEGMENT_HEAD_SIZE_BYTES_MAX + RECORD_HEADER_SIZE_BYTES + self.record_size_bytes_max
        )
        if self.segment_size_bytes_max < smallest_segment:
            raise StorageArgumentError(
                f"WalOptions.segment_size_bytes_max ({self.segment_size_bytes_max}) must hold "
                f"a segment head plus one maximal record ({smallest_segment} bytes)"
            )


@dataclass(frozen=True, slots=True)
class WalRepair:
    """A repair made on open: ``dropped_bytes`` removed from ``path`` starting at ``offset``."""

    path: str
    offset: int
    dropped_bytes: int
    reason: str


@dataclass(frozen=True, slots=True)
class WalState:
    """What the WAL replays to.

    ``snapshot_markers`` lists, oldest first, every marker whose snapshot the
    held ``entries`` continue from (the newest is :attr:`snapshot_marker`);
    ``entries`` are contiguous and may start below the newest marker, so a
    runtime whose newest snapshot file is damaged can start from an older one.
    Use :meth:`entries_after` for the entries a snapshot at ``index`` needs.
    """

    hard_state: HardState
    snapshot_markers: tuple[SnapshotMarker, ...]
    entries: tuple[Entry, ...]
    repairs: tuple[WalRepair, ...] = ()

    @property
    def snapshot_marker(self) -> SnapshotMarker | None:
        return self.snapshot_markers[-1] if self.snapshot_markers else None

    @property
    def last_index(self) -> int:
        if self.entries:
            return self.entries[-1].index
        marker = self.snapshot_marker
        return marker.index if marker is not None else 0

    def entries_after(self, index: int) -> tuple[Entry, ...]:
        """The held entries with an index greater than ``index``."""
        if not self.entries:
            return ()
        start = max(0, index + 1 - self.entries[0].index)
        return self.entries[start:]


@dataclass(frozen=True, slots=True)
class WalStatus:
    """Counters and positions for metrics and tests."""

    dir_path: str
    segment_count: int
    segment_path: str
    segment_size_bytes: int
    synced_size_bytes: int
    buffered_bytes: int
    last_index: int
    fsync_count: int


class _LogShape:
    """Index/term bookkeeping shared by the writer (to refuse bad appends) and replay.

    Holds no entry payloads: terms are kept as runs (a term changes rarely),
    so the writer's memory does not grow with the log.

    ``after_release`` is set when replay starts at a segment whose predecessors
    were released: the entries before it are gone, so the first entry read,
    and any later one that overwrites an index below the held range (the
    leader replaced an uncommitted suffix that began in a released segment,
    Raft §5.3), starts the held log afresh.

    Invariant: ``first_index <= last_index + 1``; ``_run_starts`` ascending,
    ``_run_terms`` strictly ascending (Raft: terms in a log never go down).
    """

    __slots__ = (
        "_run_starts",
        "_run_terms",
        "after_release",
        "first_index",
        "last_index",
        "markers",
    )

    def __init__(self) -> None:
        self.first_index = 1
        self.last_index = 0
        self.after_release = False
        self._run_starts: list[int] = []
        self._run_terms: list[int] = []
        self.markers: list[SnapshotMarker] = []

    def start_after_release(self, first_index: int) -> None:
        self.first_index = first_index
        self.last_index = first_index - 1
        self.after_release = True

    def copy(self) -> _LogShape:
        twin = _LogShape()
        twin.after_release = self.after_release
        twin.first_index = self.first_index
        twin.last_index = self.last_index
        twin._run_starts = list(self._run_starts)
        twin._run_terms = list(self._run_terms)
        twin.markers = list(self.markers)
        return twin

    @property
    def marker(self) -> SnapshotMarker | None:
        return self.markers[-1] if self.markers else None

    def term_at(self, index: int) -> int | None:
        if self.first_index <= index <= self.last_index:
            return self._run_terms[bisect.bisect_right(self._run_starts, index) - 1]
        marker = self.marker
        if marker is not None and marker.index == index:
            return marker.term
        return None

    def entry_problem(self, index: int, term: int) -> str | None:
        marker = self.marker
        floor = marker.index if marker is not None else 0
        if index <= floor:
            # Raft: entries covered by a snapshot are committed and never rewritten.
            return f"entry {index} is at or below the snapshot at index {floor}"
        if self._restarts_held_log(index):
            return None
        if index > self.last_index + 1:
            return f"entry {index} leaves a gap after last index {self.last_index}"
        if index < self.first_index:
            return f"entry {index} precedes the first held entry {self.first_index}"
        previous_term = self.term_at(index - 1)
        if previous_term is not None and term < previous_term:
            return f"entry {index} has term {term} below the preceding term {previous_term}"
        return None

    def add_entry(self, index: int, term: int) -> None:
        if self._restarts_held_log(index):
            self.first_index = index
            self.last_index = index - 1
            self._run_starts.clear()
            self._run_terms.clear()
        if index <= self.last_index:
            self.last_index = index - 1
            while self._run_starts and self._run_starts[-1] >= index:
                self._run_starts.pop()
                self._run_terms.pop()
        if not self._run_terms or self._run_terms[-1] != term:
            self._run_starts.append(index)
            self._run_terms.append(term)
        self.last_index = index

    def _restarts_held_log(self, index: int) -> bool:
        return self.after_release and (
            index < self.first_index or self.last_index < self.first_index
        )

    def marker_problem(self, marker: SnapshotMarker) -> str | None:
        if marker.index == 0:
            return "snapshot marker at index 0"
        current = self.marker
        if current is None or current == marker:
            return None
        if marker.index <= current.index:
            return f"snapshot marker {marker} does not advance past {current}"
        return None

    def add_marker(self, marker: SnapshotMarker) -> bool:
        """Apply a marker; True when it replaced the whole log (Raft §7)."""
        if self.marker == marker:
            return False  # a segment head restating the current marker
        if self.after_release and self.last_index < self.first_index:
            self.markers = [marker]
            if marker.index < self.last_index:
                return False  # a head marker older than the released segments
            self.after_release = False
            self.first_index = marker.index + 1
            self.last_index = marker.index
            return True
        if self.term_at(marker.index) == marker.term:
            self.markers.append(marker)
            return False
        self.markers = [marker]
        self.after_release = False
        self._run_starts.clear()
        self._run_terms.clear()
        self.first_index = marker.index + 1
        self.last_index = marker.index
        return True


class _Replay:
    """Folds decoded records into the replayed state."""

    __slots__ = ("entries", "hard_state", "shape")

    def __init__(self, first_segment_index: int) -> None:
        self.shape = _LogShape()
        if first_segment_index > 1:
            self.shape.start_after_release(first_segment_index)
        self.hard_state = HardState()
        self.entries: list[Entry] = []

    def apply(self, record_type: RecordType, payload: bytes | memoryview) -> None:
        """Raises PayloadError when the record cannot follow what came before."""
        if record_type is RecordType.HARD_STATE:
            self.hard_state = decode_hard_state(payload)
        elif record_type is RecordType.ENTRY:
            entry = decode_entry(payload)
            problem = self.shape.entry_problem(entry.index, entry.term)
            if problem is not None:
                raise PayloadError(problem)
            if self.entries and entry.index <= self.entries[-1].index:
                del self.entries[max(0, entry.index - self.entries[0].index) :]
            self.shape.add_entry(entry.index, entry.term)
            self.entries.append(entry)
        else:
            marker = decode_snapshot_marker(payload)
            problem = self.shape.marker_problem(marker)
            if problem is not None:
                raise PayloadError(problem)
            if self.shape.add_marker(marker):
                self.entries.clear()

    def state(self, repairs: Sequence[WalRepair]) -> WalState:
        return WalState(
            hard_state=self.hard_state,
            snapshot_markers=tuple(self.shape.markers),
            entries=tuple(self.entries),
            repairs=tuple(repairs),
        )


@dataclass(frozen=True, slots=True)
class _Segment:
    seq: int
    first_index: int
    path: str


def segment_file_name(seq: int, first_index: int) -> str:
    return f"{seq:016x}-{first_index:016x}{SEGMENT_SUFFIX}"


def _holds_record_header(view: memoryview, start: int, end: int) -> bool:
    """Whether a record header with a valid CRC starts anywhere in [start, end).

    Only called while judging damage at the very end of a segment, so the scan
    is rare; a random 16 bytes pass the header CRC with odds of 2**-32."""
    return any(
        decode_record_header(view[pos : pos + RECORD_HEADER_SIZE_BYTES]) is not None
        for pos in range(start, end - RECORD_HEADER_SIZE_BYTES + 1)
    )


def _is_zero(data: bytes, start: int) -> bool:
    start = min(start, len(data))
    return data.count(0, start) == len(data) - start


def _scan_segment(
    segment: _Segment,
    data: bytes,
    *,
    is_last: bool,
    options: WalOptions,
    replay: _Replay,
) -> tuple[int, str | None]:
    """Replay one segment's records.

    Returns ``(valid_size_bytes, torn_reason)``: ``torn_reason`` is set when the
    last segment ends in a torn record that starts at ``valid_size_bytes``.
    Raises :class:`WalCorruptError` for any other damage.
    """
    path = segment.path
    try:
        header = decode_segment_header(data)
    except PayloadError as exc:
        raise WalCorruptError(path, 0, str(exc)) from exc
    if header != SegmentHeader(seq=segment.seq, first_index=segment.first_index):
        raise WalCorruptError(path, 0, f"segment header {header} does not match its file name")
    view = memoryview(data)
    size = len(data)
    offset = SEGMENT_HEADER_SIZE_BYTES
    while offset < size:
        torn = False
        if size - offset < RECORD_HEADER_SIZE_BYTES:
            reason, torn = "partial record header at end of file", True
        else:
            record = decode_record_header(view[offset : offset + RECORD_HEADER_SIZE_BYTES])
            if record is None:
                claimed_end = (
                    offset + RECORD_HEADER_SIZE_BYTES + RECORD_HEADER.unpack_from(data, offset)[0]
                )
                # A crash can leave an extended file whose new blocks were never
                # written (zeros, possibly from a sector boundary inside this
                # header: nothing but zeros after it), or damage the header of
                # the final record. A length that reaches the end of the file is
                # not proof of that: a bit flip in a length can land exactly
                # there, so no intact record header may lie inside the span.
                torn = _is_zero(data, offset + RECORD_HEADER_SIZE_BYTES) or (
                    claimed_end == size
                    and not _holds_record_header(view, offset + RECORD_HEADER_SIZE_BYTES, size)
                )
                reason = "record header CRC mismatch"
            elif record.length > options.record_size_bytes_max:
                reason = (
                    f"record length {record.length} exceeds record_size_bytes_max "
                    f"{options.record_size_bytes_max}"
                )
            elif offset + RECORD_HEADER_SIZE_BYTES + record.length > size:
                reason, torn = "record runs past the end of the file", True
            else:
                start = offset + RECORD_HEADER_SIZE_BYTES
                end = start + record.length
                # A view, not a copy: replay reads every byte of the log once
                # for the CRC and once to decode, and copies only entry data.
                payload = view[start:end]
                if payload_crc(record.record_type, payload) != record.crc:
                    # Torn if nothing but never-written zeros follows it.
                    reason, torn = "record CRC mismatch", end == size or _is_zero(data, end)
                else:
                    try:
                        replay.apply(RecordType(record.record_type), payload)
                    except ValueError as bad:  # PayloadError, or an unknown RecordType
                        # Its own name: compiled (mypyc), a reused ``exc`` keeps
                        # the PayloadError type of the handler above.
                        raise WalCorruptError(path, offset, str(bad)) from bad
                    offset = end
                    continue
        if is_last and torn:
            return offset, reason
        if "skip-undecodable-entry" in options.planted_bugs:
            # Planted bug: damage mid-log is taken for a torn tail and dropped.
            return offset, reason
        raise WalCorruptError(path, offset, reason)
    return offset, None


def _prepare_dir(disk: Disk, dir_path: str, *, create: bool) -> None:
    try:
        usable = disk.stat_dir(dir_path)
    except NotADirectoryError:
        raise DataDirError(dir_path, "WAL path exists and is not a directory") from None
    except OSError as exc:
        raise DataDirError(dir_path, f"cannot stat WAL directory: {exc}") from exc
    if usable is None:
        if not create:
            raise DataDirError(dir_path, "WAL directory does not exist")
        try:
            disk.make_dir(dir_path)
        except OSError as exc:
            raise DataDirError(dir_path, f"cannot create WAL directory: {exc}") from exc
        disk.fsync_dir(os.path.dirname(os.path.abspath(dir_path)))
        return
    if not usable:
        raise DataDirError(dir_path, "WAL directory is not readable and writable")


def _list_segments(disk: Disk, dir_path: str) -> list[_Segment]:
    segments = []
    for name in disk.list_dir(dir_path):
        match = _SEGMENT_NAME.match(name)
        if match is not None:
            segments.append(
                _Segment(
                    seq=int(match.group(1), 16),
                    first_index=int(match.group(2), 16),
                    path=os.path.join(dir_path, name),
                )
            )
    segments.sort(key=lambda segment: segment.seq)
    for previous, segment in itertools.pairwise(segments):
        if segment.seq != previous.seq + 1:
            raise WalCorruptError(
                segment.path, 0, f"segment sequence gap: {previous.seq:#x} is followed by this one"
            )
        if segment.first_index < previous.first_index:
            raise WalCorruptError(
                segment.path, 0, "segment first_index goes down from the previous segment"
            )
    return segments


class Wal:
    """An open, locked WAL directory. Not thread-safe: use from one thread at a time.

    Create with :meth:`open`; close with :meth:`close` (or use ``with``).
    """

    def __init__(
        self,
        *,
        dir_path: str,
        options: WalOptions,
        disk: Disk,
        lock_fd: int,
        segments: list[_Segment],
        replay: _Replay,
        size_bytes: int,
        repairs: Sequence[WalRepair],
    ) -> None:
        self._dir_path = dir_path
        self._options = options
        self._disk = disk
        self._lock_fd: int | None = lock_fd
        self._segments = segments
        self._shape = replay.shape
        self._hard_state = replay.hard_state
        self._durable_marker = replay.shape.marker
        self._buffer = bytearray()
        self._segment_size_bytes = size_bytes
        self._synced_size_bytes = size_bytes
        self._fsync_count = 0
        self._failure: BaseException | None = None
        self._opened_state: WalState | None = replay.state(repairs)
        self._fd: int | None = disk.open_write(segments[-1].path, create=False)

    # ----------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        dir_path: str | os.PathLike[str],
        options: WalOptions | None = None,
        *,
        fsync: FsyncFn = os.fsync,
        create: bool = True,
        disk: Disk | None = None,
    ) -> Wal:
        """Lock ``dir_path``, repair a torn tail, replay every segment, and open for append.

        ``fsync`` is called for every file and directory sync (inject a counter
        in tests); ``disk`` replaces the operating system altogether (the
        simulator's disk), in which case ``fsync`` is not used. Raises
        :class:`DataDirError` / :class:`WalLockedError` for an unusable or busy
        directory and :class:`WalCorruptError` for damage that is not a torn tail.
        """
        path = os.fspath(dir_path)
        options = options or WalOptions()
        io: Disk = disk if disk is not None else OsDisk(fsync)
        _prepare_dir(io, path, create=create)
        lock_fd = io.lock(path, LOCK_FILE_NAME)
        try:
            return cls._open_locked(path, options, io, lock_fd)
        except BaseException:
            io.close(lock_fd)
            raise

    @classmethod
    def _open_locked(cls, path: str, options: WalOptions, disk: Disk, lock_fd: int) -> Wal:
        repairs: list[WalRepair] = []
        for name in sorted(disk.list_dir(path)):
            if name.endswith(SEGMENT_SUFFIX + TEMP_SUFFIX):
                # A segment that was never renamed into place held nothing durable.
                temp_path = os.path.join(path, name)
                size = disk.file_size(temp_path)
                disk.remove(temp_path)
                repairs.append(WalRepair(temp_path, 0, size, "removed unfinished new segment"))
        segments = _list_segments(disk, path)
        if not segments:
            _create_segment(disk, path, _Segment(0, 1, ""), HardState(), None)
            segments = _list_segments(disk, path)
        elif repairs:
            disk.fsync_dir(path)
        replay = _Replay(segments[0].first_index)
        size = 0
        for number, segment in enumerate(segments):
            is_last = number == len(segments) - 1
            data = disk.read_file(segment.path)
            size, torn_reason = _scan_segment(
                segment, data, is_last=is_last, options=options, replay=replay
            )
            if torn_reason is not None:
                repair = WalRepair(segment.path, size, len(data) - size, torn_reason)
                log.warning("WAL torn tail repaired: %s", repair)
                repairs.append(repair)
                if not is_last:  # only under a planted bug: the rest is dropped
                    for later in segments[number + 1 :]:
                        disk.remove(later.path)
                    segments = segments[: number + 1]
                    break
        # Make the tail durable before anything is decided from it: bytes a
        # crashed process wrote but never synced may still be only in the page
        # cache, and a vote replayed from them must not be forgotten later.
        disk.truncate(segments[-1].path, size)
        return cls(
            dir_path=path,
            options=options,
            disk=disk,
            lock_fd=lock_fd,
            segments=segments,
            replay=replay,
            size_bytes=size,
            repairs=repairs,
        )

    # ----------------------------------------------------------------- reading

    def read_all(self) -> WalState:
        """Replay the log as it stands (buffered records are written first).

        Right after :meth:`open` this returns the state found on disk, with the
        repairs made on open; later calls rescan the files.
        """
        self._check_usable()
        if self._opened_state is not None:
            return self._opened_state
        self.flush()
        replay = _Replay(self._segments[0].first_index)
        for number, segment in enumerate(self._segments):
            data = self._disk.read_file(segment.path)
            _, torn_reason = _scan_segment(
                segment,
                data,
                is_last=number == len(self._segments) - 1,
                options=self._options,
                replay=replay,
            )
            if torn_reason is not None:
                raise WalCorruptError(
                    segment.path, len(data), f"live segment is torn: {torn_reason}"
                )
        return replay.state(())

    # ----------------------------------------------------------------- writing

    def append(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Buffer ``entries`` then ``hard_state``; nothing is durable until :meth:`sync`.

        Entries go first so that a hard state never reaches disk without the
        entries its commit index counts (etcd's ``Save`` order). Raises
        :class:`StorageArgumentError`, changing nothing, for a batch that is not
        contiguous, rewrites entries under a snapshot, leaves a gap, lowers the
        term, changes a vote within a term, or holds an oversized entry.
        """
        self._write_batch(None, hard_state, entries)

    def append_snapshot_marker(self, marker: SnapshotMarker | SnapshotMeta) -> None:
        """Buffer a marker for a snapshot whose file is already durable.

        A marker whose term differs from the entry held at its index (a leader's
        snapshot installed over a divergent log) discards the whole log.
        """
        self._write_batch(marker, None, ())

    def save(
        self,
        hard_state: HardState | None,
        entries: Sequence[Entry],
        *,
        snapshot: SnapshotMarker | SnapshotMeta | None = None,
        must_sync: bool = True,
    ) -> None:
        """Persist one Ready: snapshot marker, entries, hard state; sync if ``must_sync``.

        The snapshot file itself must already be saved (see
        :class:`syndic.storage.SnapshotStore`), so the marker never points at a
        snapshot that does not exist.
        """
        self._write_batch(snapshot, hard_state, entries)
        if must_sync:
            self.sync()

    def flush(self) -> None:
        """Hand buffered records to the kernel (no fsync)."""
        self._check_usable()
        if self._buffer:
            assert self._fd is not None
            self._guarded(self._disk.write, self._fd, self._buffer)
            self._buffer.clear()

    def sync(self) -> None:
        """Write buffered records and fsync the segment: one fsync for the whole batch."""
        self.flush()
        if self._synced_size_bytes == self._segment_size_bytes:
            return
        assert self._fd is not None
        self._guarded(self._fsync, self._fd)
        self._synced_size_bytes = self._segment_size_bytes
        self._durable_marker = self._shape.marker

    def release_before(self, index: int) -> list[str]:
        """Delete the oldest segments whose entries all have an index <= ``index``.

        Only allowed once a snapshot marker at ``index`` or later is durable
        (synced): the segments are the only other copy of that state. The last
        segment is never deleted. Returns the deleted paths.
        """
        self._check_usable()
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise StorageArgumentError(f"release_before: index must be an int >= 0: {index!r}")
        durable = self._durable_marker
        if durable is None or durable.index < index:
            raise StorageArgumentError(
                f"release_before({index}): no durable snapshot covers it "
                f"(latest durable snapshot marker: {durable})"
            )
        released = 0
        # A segment's entries are all below the next segment's first_index.
        while (
            released + 1 < len(self._segments)
            and self._segments[released + 1].first_index <= index + 1
        ):
            released += 1
        paths = [segment.path for segment in self._segments[:released]]
        for path in paths:  # oldest first: a crash leaves a contiguous suffix
            self._guarded(self._disk.remove, path)
        if paths:
            self._guarded(self._disk.fsync_dir, self._dir_path)
            del self._segments[:released]
        return paths

    # ----------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Sync what is buffered, then release the files and the lock. Idempotent."""
        if self._lock_fd is None:
            return
        try:
            if self._failure is None:
                self.sync()
        finally:
            self._release_fds()

    def abandon(self) -> None:
        """Drop buffered records and release files and lock without syncing, as a crash would."""
        self._buffer.clear()
        self._release_fds()

    def __enter__(self) -> Wal:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abandon()

    def status(self) -> WalStatus:
        return WalStatus(
            dir_path=self._dir_path,
            segment_count=len(self._segments),
            segment_path=self._segments[-1].path,
            segment_size_bytes=self._segment_size_bytes,
            synced_size_bytes=self._synced_size_bytes,
            buffered_bytes=len(self._buffer),
            last_index=self._shape.last_index,
            fsync_count=self._fsync_count,
        )

    @property
    def hard_state(self) -> HardState:
        """The last hard state appended (durable only after :meth:`sync`)."""
        return self._hard_state

    @property
    def last_index(self) -> int:
        return self._shape.last_index

    @property
    def durable_snapshot_marker(self) -> SnapshotMarker | None:
        return self._durable_marker

    def held_size_bytes(self) -> int:
        """Bytes of every segment held (buffered records included): what a
        restart reads and replays, less the records before its snapshot.
        A figure for deciding, never an error: 0 once the WAL is closed or
        has failed, and a segment that cannot be sized counts 0."""
        if self._lock_fd is None or self._failure is not None:
            return 0
        closed = 0
        for segment in self._segments[:-1]:
            with contextlib.suppress(OSError):
                closed += self._disk.file_size(segment.path)
        return closed + self._segment_size_bytes

    # ----------------------------------------------------------------- internals

    def _write_batch(
        self,
        snapshot: SnapshotMarker | SnapshotMeta | None,
        hard_state: HardState | None,
        entries: Sequence[Entry],
    ) -> None:
        self._check_usable()
        marker = self._as_marker(snapshot)
        frames = self._validate(marker, hard_state, entries)
        self._opened_state = None
        if marker is not None:
            self._add_frame(frames[0])
            self._shape.add_marker(marker)
            frames = frames[1:]
        for entry, frame in zip(entries, frames, strict=False):
            self._add_frame(frame)
            self._shape.add_entry(entry.index, entry.term)
        if hard_state is not None:
            self._add_frame(frames[-1])
            self._hard_state = hard_state

    @staticmethod
    def _as_marker(snapshot: SnapshotMarker | SnapshotMeta | None) -> SnapshotMarker | None:
        if snapshot is None or isinstance(snapshot, SnapshotMarker):
            return snapshot
        if isinstance(snapshot, SnapshotMeta):
            return SnapshotMarker(index=snapshot.index, term=snapshot.term)
        raise StorageArgumentError(
            f"snapshot must be a SnapshotMarker or SnapshotMeta, got {type(snapshot).__name__}"
        )

    def _validate(
        self,
        marker: SnapshotMarker | None,
        hard_state: HardState | None,
        entries: Sequence[Entry],
    ) -> list[bytes]:
        """Check the whole batch against a copy of the log shape; return its frames."""
        shape = self._shape.copy()
        frames: list[bytes] = []
        if marker is not None:
            problem = shape.marker_problem(marker)
            if problem is not None:
                raise StorageArgumentError(problem)
            shape.add_marker(marker)
            frames.append(self._frame(RecordType.SNAPSHOT_MARKER, encode_snapshot_marker(marker)))
        previous: Entry | None = None
        for entry in entries:
            if not isinstance(entry, Entry):
                raise StorageArgumentError(f"entries must be Entry values, got {entry!r:.80}")
            if previous is None:
                problem = shape.entry_problem(entry.index, entry.term)
                if problem is not None:
                    raise StorageArgumentError(problem)
            elif entry.index != previous.index + 1:
                raise StorageArgumentError(
                    f"entry {entry.index} leaves a gap after {previous.index} in the batch"
                )
            elif entry.term < previous.term:
                raise StorageArgumentError(
                    f"entry {entry.index} has term {entry.term} below the preceding "
                    f"term {previous.term}"
                )
            previous = entry
            frames.append(self._frame(RecordType.ENTRY, encode_entry(entry)))
        if hard_state is not None:
            if not isinstance(hard_state, HardState):
                raise StorageArgumentError(
                    f"hard_state must be a HardState, got {type(hard_state).__name__}"
                )
            current = self._hard_state
            if hard_state.term < current.term:
                raise StorageArgumentError(
                    f"hard state term {hard_state.term} is below the stored term {current.term}"
                )
            if hard_state.term == current.term and current.vote not in (0, hard_state.vote):
                # Raft §5.2: each server votes for at most one candidate per term.
                raise StorageArgumentError(
                    f"hard state changes the vote of term {current.term} "
                    f"from {current.vote} to {hard_state.vote}"
                )
            frames.append(self._frame(RecordType.HARD_STATE, encode_hard_state(hard_state)))
        return frames

    def _frame(self, record_type: RecordType, payload: bytes) -> bytes:
        if len(payload) > self._options.record_size_bytes_max:
            raise StorageArgumentError(
                f"{record_type.name} record of {len(payload)} bytes exceeds "
                f"record_size_bytes_max {self._options.record_size_bytes_max}"
            )
        return frame_record(record_type, payload)

    def _add_frame(self, frame: bytes) -> None:
        # WalOptions guarantees a segment head plus one maximal frame fits in a
        # segment, so a fresh segment always takes the frame: no cut loop.
        if self._segment_size_bytes + len(frame) > self._options.segment_size_bytes_max:
            self._cut()
        self._buffer += frame
        self._segment_size_bytes += len(frame)
        if len(self._buffer) > self._options.write_buffer_size_bytes_max:
            self.flush()

    def _cut(self) -> None:
        """Close the current segment durably and continue in a new one (etcd: ``cut``)."""
        self.sync()
        previous = self._segments[-1]
        segment = _Segment(previous.seq + 1, self._shape.last_index + 1, "")
        path, size = self._guarded(
            _create_segment,
            self._disk,
            self._dir_path,
            segment,
            self._hard_state,
            self._shape.marker,
        )
        fd = self._guarded(self._disk.open_write, path, create=False)
        assert self._fd is not None
        self._disk.close(self._fd)
        self._fd = fd
        self._segments.append(_Segment(segment.seq, segment.first_index, path))
        self._segment_size_bytes = size
        self._synced_size_bytes = size

    def _fsync(self, fd: int) -> None:
        self._fsync_count += 1
        self._disk.fsync(fd)

    def _guarded(self, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        # After a failed write or fsync the file's state is unknown (a failed
        # fsync may even have dropped dirty pages), so the WAL refuses all
        # further use rather than risk acknowledging lost data (etcd panics).
        try:
            return fn(*args, **kwargs)
        except OSError as exc:
            self._failure = exc
            raise WalError(f"WAL I/O failed in {self._dir_path}: {exc}") from exc

    def _check_usable(self) -> None:
        if self._lock_fd is None:
            raise WalClosedError(f"WAL {self._dir_path} is closed")
        if self._failure is not None:
            raise WalError(f"WAL {self._dir_path} failed earlier: {self._failure}")

    def _release_fds(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                self._disk.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                self._disk.close(self._lock_fd)
            self._lock_fd = None


def _create_segment(
    disk: Disk,
    dir_path: str,
    segment: _Segment,
    hard_state: HardState,
    marker: SnapshotMarker | None,
) -> tuple[str, int]:
    """Write a segment's head to a temp file and rename it into place, durably."""
    head = bytearray(encode_segment_header(SegmentHeader(segment.seq, segment.first_index)))
    head += frame_record(RecordType.HARD_STATE, encode_hard_state(hard_state))
    if marker is not None:
        head += frame_record(RecordType.SNAPSHOT_MARKER, encode_snapshot_marker(marker))
    assert len(head) <= _SEGMENT_HEAD_SIZE_BYTES_MAX, len(head)
    path = os.path.join(dir_path, segment_file_name(segment.seq, segment.first_index))
    write_atomically(path, head, temp_suffix=TEMP_SUFFIX, disk=disk)
    return path, len(head)
