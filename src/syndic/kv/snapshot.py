"""Snapshot encoding of the whole state machine.

Layout: one version byte, a 4-byte big-endian CRC-32 of the payload, then
the payload as msgpack. ``load`` checks the version and checksum first and
then the structure (types, revision order, lease references) before any of
it is trusted, raising :class:`~syndic.kv.errors.SnapshotCorruptError` with
the reason; a store is only returned if every check passed.

Two formats are read; the current one, 2, is written (``SNAPSHOT_VERSION``).
A version this code does not know is refused with a message naming the
versions it reads.

Payload (a msgpack map, short keys):
  ``r`` revision, ``c`` compact revision, ``g`` log base revision,
  ``s`` [lease-id counter, [[id, ttl_s, 0], ...]], ``a`` alarms, and only
  when there are any, ``u`` compaction survivors' places in a revision that
  wrote several keys, ``[[key, revision, place], ...]`` in key order; then
  format 2 holds ``i`` and ``l`` in columns (``syndic.kv.snapshot_columns``),
  and format 1 holds ``l`` the log (per revision: nil, key, or list of keys)
  and ``i`` the index as a list of
  ``[key, [[mod, create, version, lease, value|nil], ...]]`` in key order.
"""

from __future__ import annotations

import contextlib
import gc
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgpack

from syndic.kv.errors import KvError, SnapshotCorruptError
from syndic.kv.lease import Lease
from syndic.kv.messages import INT64_MAX, INT64_MIN, AlarmType

if TYPE_CHECKING:
    from syndic.kv.mvcc import Record, Store, StoreConfig

SNAPSHOT_VERSION: Final = 2
# Versions load() reads: 1 (one array per record) and 2 (columns).
SNAPSHOT_VERSIONS_READ: Final = (1, 2)
_HEADER = struct.Struct(">BI")
# Position of the value in a record tuple (syndic.kv.mvcc.VALUE).
VALUE_FIELD: Final = 4


@dataclass(frozen=True, slots=True)
class FrozenStore:
    """A store's state at one revision, captured in O(n) pointer copies.

    Safe to serialise in another thread while the store moves on, because the
    store never changes what these containers point to in place, except by
    appending: records are tuples; a key's record list only grows (by records
    newer than ``revision``, which :func:`dump_frozen` leaves out), and
    compaction and a key's first overwrite put a new object in the index
    rather than changing the old one; the log copy is a new list."""

    revision: int
    compact_revision: int
    log_base: int
    log: list[bytes | tuple[bytes, ...] | None]
    keys: list[bytes]  # in key order
    entries: list[Any]  # the entry of each key, in the same order
    lease_seq: int
    leases: list[tuple[int, int, int]]
    alarms: list[int]
    survivor_subs: list[tuple[bytes, int, int]]


def freeze(store: Store) -> FrozenStore:
    """Capture ``store`` for :func:`dump_frozen`; run it where the store is
    changed (the event loop): it copies containers, not records."""
    lessor = store._lessor
    return FrozenStore(
        revision=store._rev,
        compact_revision=store._compact_rev,
        log_base=store._log_base,
        log=list(store._log),
        # Iterating a SortedDict chains its sorted key lists in C, and its
        # lookups are the dict's own; its items() walk it in Python, 10-20x slower.
        keys=(keys := list(store._index)),
        entries=list(map(store._index.__getitem__, keys)),
        lease_seq=lessor.id_seq,
        # The third field once held a deadline; deadlines are the leader's
        # alone (syndic.kv.lease) and never leave it, so it is always 0.
        leases=[(ls.id, ls.ttl_s, 0) for ls in lessor.leases.values()],
        alarms=sorted(int(a) for a in store._alarms),
        survivor_subs=sorted((k, mod, place) for k, (mod, place) in store._survivor_subs.items()),
    )


def dump_frozen(frozen: FrozenStore) -> bytes:
    """Snapshot bytes of a frozen store; may run in a worker thread."""
    return b"".join(dump_frozen_parts(frozen))


def dump_frozen_parts(frozen: FrozenStore) -> list[bytes]:
    """:func:`dump_frozen`'s bytes as pieces, for a caller that joins them
    with more: every join of a large snapshot is a copy that holds the GIL.

    Packs the payload map piece by piece, in the same bytes as packing it
    whole (msgpack packs tuples as arrays, maps in insertion order)."""
    from syndic.kv.snapshot_columns import pack_index

    packer = msgpack.Packer(use_bin_type=True)
    parts = [packer.pack_map_header(8 if frozen.survivor_subs else 7)]
    for name, value in (
        ("r", frozen.revision),
        ("c", frozen.compact_revision),
        ("g", frozen.log_base),
    ):
        parts += (packer.pack(name), packer.pack(value))
    index_parts, log_parts = pack_index(frozen, packer)
    parts += (packer.pack("i"), *index_parts, packer.pack("l"), *log_parts)
    parts += (packer.pack("s"), packer.pack([frozen.lease_seq, frozen.leases]))
    parts += (packer.pack("a"), packer.pack(frozen.alarms))
    if frozen.survivor_subs:
        parts += (packer.pack("u"), packer.pack(frozen.survivor_subs))
    crc = 0
    for part in parts:
        crc = zlib.crc32(part, crc)
    return [_HEADER.pack(SNAPSHOT_VERSION, crc), *parts]


def dump(store: Store) -> bytes:
    return dump_frozen(freeze(store))


def _fail(reason: str) -> SnapshotCorruptError:
    return SnapshotCorruptError(reason)


def _int(value: Any, what: str, low: int = -(2**63), high: int = INT64_MAX) -> int:
    if type(value) is not int or not low <= value <= high:
        raise _fail(f"{what} is not an int in [{low}, {high}]")
    return value


def load(data: bytes | memoryview, config: StoreConfig | None = None) -> Store:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail(f"snapshot must be bytes, got {type(data).__name__}")
    if len(data) < _HEADER.size:
        raise _fail(f"snapshot of {len(data)} bytes is shorter than its header")
    version, crc = _HEADER.unpack_from(data)
    if version not in SNAPSHOT_VERSIONS_READ:
        raise _fail(
            f"snapshot version {version} is not one this syndic reads "
            f"({', '.join(map(str, SNAPSHOT_VERSIONS_READ))}): written by a newer syndic?"
        )
    # A view, not a slice: a slice of a large snapshot is a copy of all of it.
    body = memoryview(data)[_HEADER.size :]
    if zlib.crc32(body) != crc:
        raise _fail(f"checksum mismatch over {len(body)} payload bytes")
    with _no_gc():
        try:
            payload = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
        except Exception as err:  # msgpack raises several unrelated types
            raise _fail(f"payload is not msgpack: {type(err).__name__}") from None
        try:
            return _build(payload, config, version)
        except KvError as err:
            if isinstance(err, SnapshotCorruptError):
                raise
            raise _fail(f"invalid content: {err}") from None
        except (TypeError, ValueError, KeyError, IndexError, AssertionError) as err:
            raise _fail(f"invalid structure: {type(err).__name__}: {err}") from None


@contextlib.contextmanager
def _no_gc() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a snapshot is built.

    Building millions of containers triggers a full collection every time
    the live set grows by a quarter, and each walks every object built so
    far: two thirds of a large load's time. Nothing built here forms a
    cycle, so deferring collection frees nothing later than it would have."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _record(raw: Any, rev: int, low_mod: int) -> Record:
    """One checked record of the snapshot; ``low_mod`` is the least allowed mod revision.

    The common case (ints in range, bytes value) is checked inline; anything
    else goes through :func:`_int` for a precise reason."""
    mod, create, version, lease, value = raw
    if type(mod) is not int or not low_mod <= mod <= rev:
        if type(mod) is int and 1 <= mod <= rev:
            raise _fail("revisions not ascending")
        _int(mod, "mod revision", 1, rev)
    if value is None:
        if (create, version, lease) != (0, 0, 0):
            raise _fail("tombstone with metadata")
        return (mod, 0, 0, 0, None)
    if type(value) is not bytes:
        raise _fail("value is not bytes")
    if (
        type(create) is int
        and type(version) is int
        and type(lease) is int
        and 1 <= create <= mod
        and 1 <= version <= INT64_MAX
        and INT64_MIN <= lease <= INT64_MAX
    ):
        # A first write shares one int for its mod and create revisions, as
        # the store itself does (Store._write_put): 32 bytes less per key.
        return (mod, mod if create == mod else create, version, lease, value)
    return (
        mod,
        _int(create, "create revision", 1, mod),
        _int(version, "version", 1),
        _int(lease, "lease"),
        value,
    )


def _build(payload: Any, config: StoreConfig | None, version: int) -> Store:
    """A store from a decoded payload, every structural rule checked on the way.

    It checks what ``Store.check_invariants`` would on the result (ascending
    keys and revisions, tombstones, lease references, the log naming only
    records written at its revisions) and builds the index in one bulk
    insert of already sorted keys: a restart of a large store spends its
    time here."""
    from syndic.kv.mvcc import LEASE_OVERHEAD_BYTES, Store
    from syndic.kv.snapshot_columns import build_index

    if type(payload) is not dict or set(payload) - {"u"} != {"r", "c", "g", "l", "i", "s", "a"}:
        raise _fail("payload is not the expected map")
    store = Store(config)
    rev = _int(payload["r"], "revision", 1)
    compact = _int(payload["c"], "compact revision", -1, rev)
    log_base = _int(payload["g"], "log base", 1, rev)
    if log_base != max(compact, 1):
        raise _fail("log base does not match the compact revision")
    # Keys named by a live latest record's lease, checked once leases are in.
    leased: list[tuple[int, bytes]]
    if version == 1:
        leased, size = _build_index_v1(store, payload["i"], payload["l"], rev, compact, log_base)
    else:
        leased, size = build_index(store, payload["i"], payload["l"], rev, compact, log_base)
    lease_seq, leases_in = payload["s"]
    store._lessor.id_seq = _int(lease_seq, "lease id counter", 0)
    # A restored store knows no deadlines; its owner promotes it if it leads.
    store._lessor.demote()
    for raw in leases_in:
        lease_id, ttl_s, expiry_ms = raw
        _int(expiry_ms, "expiry")  # ignored: a deadline read on another member's clock
        lease = Lease(_int(lease_id, "lease id"), _int(ttl_s, "lease ttl", 1))
        if lease.id == 0 or lease.id in store._lessor.leases:
            raise _fail(f"lease id {lease.id} is zero or repeated")
        store._lessor.leases[lease.id] = lease
        size += LEASE_OVERHEAD_BYTES
    for lease_id, key in leased:
        holder = store._lessor.leases.get(lease_id)
        if holder is None:
            raise _fail(f"key {key!r:.40} names missing lease {lease_id}")
        holder.keys.add(key)
    store._survivor_subs = _survivor_subs(payload.get("u", []), log_base, store._index)
    store._rev = rev
    store._compact_rev = compact
    store._log_base = log_base
    store._size_bytes = size
    for alarm in payload["a"]:
        store._alarms.add(AlarmType(_int(alarm, "alarm", 1, 2)))
    store._lessor.check_invariants()
    return store


def _build_index_v1(
    store: Store, index: Any, log: Any, rev: int, compact: int, log_base: int
) -> tuple[list[tuple[int, bytes]], int]:
    """Format 1's index and log, checked record by record; returns the
    leased keys as ``(lease, key)`` and the records' size in bytes."""
    from syndic.kv.mvcc import RECORD_OVERHEAD_BYTES, record_at

    if type(log) is not list or len(log) != rev - log_base + 1:
        raise _fail("log does not cover [log base, revision]")
    if type(index) is not list:
        raise _fail("index is not a list")
    entries: dict[bytes, Any] = {}
    leased: list[tuple[int, bytes]] = []
    size = 0
    previous_key = b""
    for item in index:
        key, records_in = item
        if type(key) is not bytes or not key:
            raise _fail("index key is not non-empty bytes")
        if key <= previous_key:
            raise _fail("index keys are not strictly ascending")
        previous_key = key
        if type(records_in) is not list or not records_in:
            raise _fail(f"key {key!r:.40} has no records")
        entry: Record | list[Record]
        try:
            if len(records_in) == 1:
                last = entry = _record(records_in[0], rev, 1)
                if last[VALUE_FIELD] is None and last[0] < compact:
                    raise _fail("keeps a compacted tombstone")
                size += len(last[VALUE_FIELD] or b"")
            else:
                records: list[Record] = []
                low = 1
                for raw in records_in:
                    rec = _record(raw, rev, low)
                    low = rec[0] + 1
                    records.append(rec)
                    size += len(rec[VALUE_FIELD] or b"")
                if records[0][VALUE_FIELD] is None and records[0][0] < compact:
                    raise _fail("keeps a compacted tombstone")
                entry = records
                last = records[-1]
        except SnapshotCorruptError as err:
            raise _fail(f"key {key!r:.40}: {err}") from None
        size += (len(key) + RECORD_OVERHEAD_BYTES) * len(records_in)
        if last[3] and last[VALUE_FIELD] is not None:
            leased.append((last[3], key))
        entries[key] = entry
    store._log = _build_log(log, log_base, entries, record_at)
    # Keys arrive sorted, so this is one linear pass (SortedDict sorts an
    # empty dict's keys in bulk, and timsort on sorted input is linear).
    store._index.update(entries)
    return leased, size


def _survivor_subs(
    raw: Any, log_base: int, entries: dict[bytes, Any]
) -> dict[bytes, tuple[int, int]]:
    """``u``: each names a key's oldest record, below the log base."""
    if type(raw) is not list:
        raise _fail("survivor places are not a list")
    subs: dict[bytes, tuple[int, int]] = {}
    for item in raw:
        if type(item) is not list or len(item) != 3 or type(item[0]) is not bytes:
            raise _fail("survivor place is not [key, revision, place]")
        key = item[0]
        mod = _int(item[1], "survivor revision", 1, log_base - 1)
        place = _int(item[2], "survivor place", 0)
        entry = entries.get(key)
        if entry is None or (entry if type(entry) is tuple else entry[0])[0] != mod:
            raise _fail(f"survivor place for {key!r:.40} names no oldest record at {mod}")
        if key in subs:
            raise _fail(f"survivor place for {key!r:.40} repeated")
        subs[key] = (mod, place)
    return subs


def _build_log(
    log: list[Any],
    log_base: int,
    entries: dict[bytes, Any],
    record_at: Callable[[Any, int], Record | None],
) -> list[bytes | tuple[bytes, ...] | None]:
    """The store's log from the snapshot's, checked against the index: every
    key it names past the base has a record written at that revision.

    Its keys are the index's own bytes objects (looked up through a map of
    key to itself), so a key named by the log costs a pointer, not a copy."""
    canonical = {key: key for key in entries}
    log_out: list[bytes | tuple[bytes, ...] | None] = []
    for i, item in enumerate(log):
        revision = log_base + i
        if item is None:
            if revision != 1:
                raise _fail(f"revision {revision} has no keys in the log")
            log_out.append(None)
            continue
        if type(item) is bytes:
            keys: tuple[bytes, ...] = (item,)
        elif type(item) is list and len(item) > 1 and all(type(k) is bytes for k in item):
            keys = tuple(item)
        else:
            raise _fail(f"log entry for revision {revision} is malformed")
        if i:
            for key in keys:
                entry = entries.get(key)
                rec = None if entry is None else record_at(entry, revision)
                if rec is None or rec[0] != revision:
                    raise _fail(
                        f"log names key {key!r:.40} at revision {revision} it has no record of"
                    )
        shared = tuple(canonical.get(k, k) for k in keys)
        log_out.append(shared[0] if len(shared) == 1 else shared)
    return log_out
