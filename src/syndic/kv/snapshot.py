"""Snapshot encoding of the whole state machine.

Layout: one version byte, a 4-byte big-endian CRC-32 of the payload, then
the payload as msgpack. ``load`` checks the version and checksum first and
then the structure (types, revision order, lease references) before any of
it is trusted, raising :class:`~syndic.kv.errors.SnapshotCorruptError` with
the reason; a store is only returned if every check passed.

Payload (a msgpack map, short keys):
  ``r`` revision, ``c`` compact revision, ``g`` log base revision,
  ``l`` log (per revision: nil, key, or list of keys), ``i`` index as a list
  of ``[key, [[mod, create, version, lease, value|nil], ...]]`` in key order,
  ``s`` [lease-id counter, [[id, ttl_s, 0], ...]], ``a`` alarms.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgpack

from syndic.kv.errors import KvError, SnapshotCorruptError
from syndic.kv.lease import Lease
from syndic.kv.messages import INT64_MAX, AlarmType

if TYPE_CHECKING:
    from syndic.kv.mvcc import Record, Store, StoreConfig

SNAPSHOT_VERSION: Final = 1
_HEADER = struct.Struct(">BI")


# Index entries packed per msgpack call by dump_frozen: small enough that a
# worker thread packing them gives the GIL back to the event loop every
# millisecond or so, large enough that the per-call cost does not show.
DUMP_CHUNK_KEYS: Final = 1024


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
    items: list[tuple[bytes, Any]]  # in no particular order
    lease_seq: int
    leases: list[tuple[int, int, int]]
    alarms: list[int]


def freeze(store: Store) -> FrozenStore:
    """Capture ``store`` for :func:`dump_frozen`; run it where the store is
    changed (the event loop): it copies containers, not records."""
    lessor = store._lessor
    return FrozenStore(
        revision=store._rev,
        compact_revision=store._compact_rev,
        log_base=store._log_base,
        log=list(store._log),
        # The index's underlying dict, copied in C; SortedDict's own items()
        # walk it in Python, 10-20x slower. dump_frozen_parts restores the order.
        items=list(dict.items(store._index)),
        lease_seq=lessor.id_seq,
        # The third field once held a deadline; deadlines are the leader's
        # alone (syndic.kv.lease) and never leave it, so it is always 0.
        leases=[(ls.id, ls.ttl_s, 0) for ls in lessor.leases.values()],
        alarms=sorted(int(a) for a in store._alarms),
    )


def dump_frozen(frozen: FrozenStore) -> bytes:
    """Snapshot bytes of a frozen store; may run in a worker thread."""
    return b"".join(dump_frozen_parts(frozen))


def dump_frozen_parts(frozen: FrozenStore) -> list[bytes]:
    """:func:`dump_frozen`'s bytes as pieces, for a caller that joins them
    with more: every join of a large snapshot is a copy that holds the GIL.

    Packs the payload map piece by piece, in the same bytes as packing it
    whole (msgpack packs tuples as arrays, maps in insertion order)."""
    packer = msgpack.Packer(use_bin_type=True)
    revision = frozen.revision
    parts = [packer.pack_map_header(7)]
    for name, value in (
        ("r", frozen.revision),
        ("c", frozen.compact_revision),
        ("g", frozen.log_base),
        ("l", frozen.log),
    ):
        parts += (packer.pack(name), packer.pack(value))
    parts += (packer.pack("i"), packer.pack_array_header(len(frozen.items)))
    # Keys are unique, so sorting the pairs compares keys only.
    items = sorted(frozen.items)
    for start in range(0, len(items), DUMP_CHUNK_KEYS):
        chunk: list[tuple[bytes, Any]] = []
        for key, entry in items[start : start + DUMP_CHUNK_KEYS]:
            if type(entry) is tuple:
                chunk.append((key, (entry,)))
            else:
                # Records appended after the freeze are newer than it.
                chunk.append((key, [r for r in entry if r[0] <= revision]))
        parts.append(b"".join(map(packer.pack, chunk)))
    parts += (packer.pack("s"), packer.pack([frozen.lease_seq, frozen.leases]))
    parts += (packer.pack("a"), packer.pack(frozen.alarms))
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


def load(data: bytes, config: StoreConfig | None = None) -> Store:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail(f"snapshot must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise _fail(f"snapshot of {len(data)} bytes is shorter than its header")
    version, crc = _HEADER.unpack_from(data)
    if version != SNAPSHOT_VERSION:
        raise _fail(f"snapshot version {version}, expected {SNAPSHOT_VERSION}")
    body = data[_HEADER.size :]
    if zlib.crc32(body) != crc:
        raise _fail(f"checksum mismatch over {len(body)} payload bytes")
    try:
        payload = msgpack.unpackb(body, raw=False, use_list=True, strict_map_key=True)
    except Exception as err:  # msgpack raises several unrelated types
        raise _fail(f"payload is not msgpack: {type(err).__name__}") from None
    try:
        return _build(payload, config)
    except KvError as err:
        if isinstance(err, SnapshotCorruptError):
            raise
        raise _fail(f"invalid content: {err}") from None
    except (TypeError, ValueError, KeyError, IndexError, AssertionError) as err:
        raise _fail(f"invalid structure: {type(err).__name__}: {err}") from None


def _build(payload: Any, config: StoreConfig | None) -> Store:
    from syndic.kv.mvcc import LEASE_OVERHEAD_BYTES, VALUE, Store, record_cost

    if type(payload) is not dict or set(payload) != {"r", "c", "g", "l", "i", "s", "a"}:
        raise _fail("payload is not the expected map")
    store = Store(config)
    rev = _int(payload["r"], "revision", 1)
    compact = _int(payload["c"], "compact revision", -1, rev)
    log_base = _int(payload["g"], "log base", 1, rev)
    if log_base != max(compact, 1):
        raise _fail("log base does not match the compact revision")
    log = payload["l"]
    if type(log) is not list or len(log) != rev - log_base + 1:
        raise _fail("log does not cover [log base, revision]")
    canonical: dict[bytes, bytes] = {}
    size = 0
    index = payload["i"]
    if type(index) is not list:
        raise _fail("index is not a list")
    previous_key: bytes | None = None
    for item in index:
        key, records_in = item
        if type(key) is not bytes or not key:
            raise _fail("index key is not non-empty bytes")
        if previous_key is not None and key <= previous_key:
            raise _fail("index keys are not strictly ascending")
        previous_key = key
        if type(records_in) is not list or not records_in:
            raise _fail(f"key {key!r:.40} has no records")
        records: list[Record] = []
        last_mod = compact - 1 if compact > 0 else 0
        for raw in records_in:
            mod, create, version, lease, value = raw
            mod = _int(mod, "mod revision", 1, rev)
            if mod <= last_mod and records:
                raise _fail(f"key {key!r:.40} revisions not ascending")
            last_mod = mod
            if value is None:
                rec: Record = (mod, 0, 0, 0, None)
                if (create, version, lease) != (0, 0, 0):
                    raise _fail("tombstone with metadata")
            else:
                if type(value) is not bytes:
                    raise _fail("value is not bytes")
                rec = (
                    mod,
                    _int(create, "create revision", 1, mod),
                    _int(version, "version", 1),
                    _int(lease, "lease"),
                    value,
                )
            records.append(rec)
            size += record_cost(key, rec)
        if records[0][VALUE] is None and records[0][0] < compact:
            raise _fail(f"key {key!r:.40} keeps a compacted tombstone")
        canonical[key] = key
        store._index[key] = records[0] if len(records) == 1 else records
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
    for key, entry in store._index.items():
        last = entry if type(entry) is tuple else entry[-1]
        if last[VALUE] is not None and last[3]:
            holder = store._lessor.leases.get(last[3])
            if holder is None:
                raise _fail(f"key {key!r:.40} names missing lease {last[3]}")
            holder.keys.add(key)
    log_out: list[bytes | tuple[bytes, ...] | None] = []
    for i, item in enumerate(log):
        if item is None:
            if log_base + i != 1:
                raise _fail(f"revision {log_base + i} has no keys in the log")
            log_out.append(None)
        elif type(item) is bytes:
            log_out.append(canonical.get(item, item))
        elif type(item) is list and len(item) > 1 and all(type(k) is bytes for k in item):
            log_out.append(tuple(canonical.get(k, k) for k in item if type(k) is bytes))
        else:
            raise _fail(f"log entry for revision {log_base + i} is malformed")
    store._rev = rev
    store._compact_rev = compact
    store._log_base = log_base
    store._log = log_out
    store._size_bytes = size
    for alarm in payload["a"]:
        store._alarms.add(AlarmType(_int(alarm, "alarm", 1, 2)))
    store.check_invariants()
    return store
