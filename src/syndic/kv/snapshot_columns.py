"""Snapshot format 2 of the store: the index in columns, built in bulk.

A restart of a large store spends its time turning snapshot bytes into
Python objects. Format 1 (``syndic.kv.snapshot``) holds one small msgpack
array per record, so loading it builds three lists per key and checks each
record in a Python call. Here each chunk of keys is a handful of msgpack
objects (the keys, the values, and one little-endian binary column per
integer field), so a load turns a column into ints in one C call, makes the
record tuples with ``zip`` and checks every rule over whole columns: a
million keys of 256 B take under 2 CPU seconds here, against about 6 for
format 1 and 7 to replay the log that wrote them (bench/scale.py).

Payload (a msgpack map, short keys), after format 1's header (version byte
2, CRC-32 of the payload):
  ``r``, ``c``, ``g``, ``s``, ``a``, ``u`` as in format 1;
  ``i`` the index, a list of chunks of at most :data:`CHUNK_KEYS` keys in key
  order, each ``[keys, counts, mods, creates, versions, leases, values]``:
  ``keys`` an array of bin, ``counts`` the number of records of each key
  (u32), then one entry per record, in key order and oldest first: the four
  integer columns (i64) and ``values`` (an array of bin, nil for a tombstone);
  ``l`` the log as ``[counts, refs, extra]``: per revision the number of keys
  it changed (u32; 0 only for revision 1, which changed none), then each of
  those keys as its place in the index (u32) or, at the log base only (a key
  since compacted away), ``len(index) + i`` for ``extra[i]``.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable
from itertools import accumulate, chain, islice, repeat
from operator import eq, le, lt, mul
from typing import TYPE_CHECKING, Any, Final

import msgpack

from syndic.kv.errors import SnapshotCorruptError

if TYPE_CHECKING:
    from syndic.kv.mvcc import Record, Store
    from syndic.kv.snapshot import FrozenStore

# Keys per chunk: small enough that a worker thread packing a chunk gives the
# GIL back to the event loop every millisecond or so, large enough that the
# per-chunk cost does not show in a load.
CHUNK_KEYS: Final = 1024
# Log keys looked up per C call while packing: a few milliseconds each.
LOG_SLICE_KEYS: Final = 65536
_INT_COLUMNS: Final = ("mod revision", "create revision", "version", "lease")
_LITTLE: Final = sys.byteorder == "little"
_U32: Final = "I"
_I64: Final = "q"
assert array(_U32).itemsize == 4 and array(_I64).itemsize == 8


def _fail(reason: str) -> SnapshotCorruptError:
    return SnapshotCorruptError(reason)


def _column_bytes(typecode: str, values: Iterable[int]) -> bytes:
    column = array(typecode, values)
    if not _LITTLE:
        column.byteswap()
    return column.tobytes()


def _column(raw: Any, typecode: str, length: int, what: str) -> array[int]:
    if type(raw) is not bytes:
        raise _fail(f"{what} column is not bytes")
    column = array(typecode)
    if len(raw) != column.itemsize * length:
        raise _fail(f"{what} column holds {len(raw)} bytes, expected {column.itemsize * length}")
    column.frombytes(raw)
    if not _LITTLE:
        column.byteswap()
    return column


# ----------------------------------------------------------------------- dump


def pack_index(frozen: FrozenStore, packer: msgpack.Packer) -> tuple[list[bytes], list[bytes]]:
    """The packed values of ``i`` and ``l``, as pieces to join.

    Runs in a worker thread: each chunk's work is short, so the loop that
    applies entries meanwhile keeps the GIL most of the time."""
    revision = frozen.revision
    keys, entries = frozen.keys, frozen.entries
    index_parts = [packer.pack_array_header(-(-len(keys) // CHUNK_KEYS))]
    places: dict[bytes, int] = {}
    for start in range(0, len(keys), CHUNK_KEYS):
        chunk_keys = keys[start : start + CHUNK_KEYS]
        places.update(zip(chunk_keys, range(start, start + len(chunk_keys)), strict=True))
        chunk = entries[start : start + CHUNK_KEYS]
        counts, records = _flatten(chunk, revision)
        fields = list(zip(*records, strict=True))
        index_parts.append(
            packer.pack(
                [
                    chunk_keys,
                    _column_bytes(_U32, counts),
                    *(_column_bytes(_I64, column) for column in fields[:4]),
                    list(fields[4]),
                ]
            )
        )
    return index_parts, [packer.pack(_pack_log(frozen.log, places))]


def _flatten(chunk: list[Any], revision: int) -> tuple[list[int], list[Record]]:
    """Each key's record count, and the records in key order, oldest first."""
    if set(map(type, chunk)) == {tuple}:  # one record per key (checked in C)
        return [1] * len(chunk), chunk
    counts: list[int] = []
    records: list[Record] = []
    for entry in chunk:
        if type(entry) is tuple:
            counts.append(1)
            records.append(entry)
        else:
            # Records appended after the freeze are newer than it.
            held = [r for r in entry if r[0] <= revision]
            counts.append(len(held))
            records += held
    return counts, records


def _pack_log(
    log: list[bytes | tuple[bytes, ...] | None], places: dict[bytes, int]
) -> list[bytes | list[bytes]]:
    per_revision = list(map(_keys_of, log))
    named = list(chain.from_iterable(per_revision))
    found: list[int | None] = []
    for start in range(0, len(named), LOG_SLICE_KEYS):  # the GIL is given back between slices
        found += map(places.get, named[start : start + LOG_SLICE_KEYS])
    extra: list[bytes] = []
    refs: list[int] = found  # type: ignore[assignment]  # once every None is replaced
    if None in found:  # only at the log base: keys compacted away since
        for i, place in enumerate(found):
            if place is None:
                refs[i] = len(places) + len(extra)
                extra.append(named[i])
    return [_column_bytes(_U32, map(len, per_revision)), _column_bytes(_U32, refs), extra]


def _keys_of(item: bytes | tuple[bytes, ...] | None) -> tuple[bytes, ...]:
    if item is None:
        return ()
    return (item,) if type(item) is bytes else item  # type: ignore[return-value]


# ----------------------------------------------------------------------- load


def build_index(
    store: Store, raw_index: Any, raw_log: Any, rev: int, compact: int, log_base: int
) -> tuple[list[tuple[int, bytes]], int]:
    """Fill ``store``'s index and log from ``i`` and ``l``, checking every rule
    format 1's loader checks; returns the keys whose latest record names a
    lease, as ``(lease, key)``, and the size in bytes of the records."""
    from syndic.kv.mvcc import RECORD_OVERHEAD_BYTES

    keys, counts, ints, values = _read_chunks(raw_index)
    mods, creates, versions, leases = ints
    _check_keys(keys)
    _check_records(counts, mods, creates, versions, leases, values, rev, compact)
    if creates == mods:  # every record a first write (compared in C): one list
        (mod_objs,) = _shared_ints(mods)
        create_objs = mod_objs
    else:
        mod_objs, create_objs = _shared_ints(mods, creates)
    records = list(
        zip(mod_objs, create_objs, versions.tolist(), leases.tolist(), values, strict=True)
    )
    single = len(keys) == len(records)
    entries: list[Any] = records if single else _group(records, counts)
    store._index.update(zip(keys, entries, strict=True))
    key_bytes = sum(map(len, keys)) if single else sum(map(mul, map(len, keys), counts))
    value_bytes = sum(map(len, filter(None, values)))
    size = value_bytes + key_bytes + RECORD_OVERHEAD_BYTES * len(records)
    store._log = _build_log(raw_log, keys, entries, mod_objs if single else None, rev, log_base)
    return _leased(keys, entries, leases), size


def _shared_ints(*columns: array[int]) -> list[list[int]]:
    """The columns as lists in which equal values are one int object, as in
    the store's own records (a first write's create revision is its mod
    revision; the puts of one txn share its revision).

    The shared objects are fresh copies (``v + 0`` makes a new int past the
    small-int cache), made before the per-element ints die: were they some
    of those, scattered one per few hundred, every memory pool of the dead
    ones would stay allocated (tens of MiB per million keys)."""
    as_lists = [column.tolist() for column in columns]
    shared = {value: value + 0 for value in dict.fromkeys(chain.from_iterable(as_lists))}
    return [list(map(shared.__getitem__, values)) for values in as_lists]


def _read_chunks(raw: Any) -> tuple[list[bytes], array[int], list[array[int]], list[Any]]:
    if type(raw) is not list:
        raise _fail("index is not a list of chunks")
    keys: list[bytes] = []
    counts = array(_U32)
    ints = [array(_I64) for _ in _INT_COLUMNS]
    values: list[Any] = []
    for chunk in raw:
        if type(chunk) is not list or len(chunk) != 7:
            raise _fail("index chunk is not [keys, counts, 4 columns, values]")
        chunk_keys, raw_counts, *raw_ints, chunk_values = chunk
        if type(chunk_keys) is not list or not 0 < len(chunk_keys) <= CHUNK_KEYS:
            raise _fail(f"index chunk holds no keys or more than {CHUNK_KEYS}")
        chunk_counts = _column(raw_counts, _U32, len(chunk_keys), "record count")
        records = sum(chunk_counts)
        if type(chunk_values) is not list or len(chunk_values) != records:
            raise _fail(f"index chunk's values are not a list of {records}")
        for held, raw_column, what in zip(ints, raw_ints, _INT_COLUMNS, strict=True):
            held.extend(_column(raw_column, _I64, records, what))
        keys += chunk_keys
        counts += chunk_counts
        values += chunk_values
    return keys, counts, ints, values


def _check_keys(keys: list[bytes]) -> None:
    if keys and not set(map(type, keys)) == {bytes}:
        raise _fail("index key is not bytes")
    if keys and not keys[0]:
        raise _fail("index key is not non-empty bytes")
    # Strictly ascending, so non-empty after the first, and unique.
    if not all(map(lt, keys, islice(keys, 1, None))):
        raise _fail("index keys are not strictly ascending")


def _check_records(
    counts: array[int],
    mods: array[int],
    creates: array[int],
    versions: array[int],
    leases: array[int],
    values: list[Any],
    rev: int,
    compact: int,
) -> None:
    """Format 1's record rules (``syndic.kv.snapshot._record``), over whole columns."""
    if counts and min(counts) == 0:
        raise _fail("a key has no records")
    if not mods:
        return
    if not 1 <= min(mods) <= max(mods) <= rev:
        raise _fail(f"mod revision is not an int in [1, {rev}]")
    if not set(map(type, values)) <= {bytes, type(None)}:
        raise _fail("value is not bytes")
    tombstones = [i for i, value in enumerate(values) if value is None] if None in values else []
    # A live record has 1 <= create <= mod and version >= 1; a tombstone all
    # zeros. Counting zeros tells the two apart without a loop over records.
    first_writes = creates == mods  # the common case, compared in C
    if min(versions) < 0 or not (
        first_writes or (min(creates) >= 0 and all(map(le, creates, mods)))
    ):
        raise _fail("create revision or version out of range")
    for i in tombstones:
        if creates[i] or versions[i] or leases[i]:
            raise _fail("tombstone with metadata")
    if creates.count(0) != len(tombstones) or versions.count(0) != len(tombstones):
        raise _fail("a live record has create revision or version 0")
    if len(counts) == len(mods):  # one record per key: each is its key's first
        if any(mods[i] < compact for i in tombstones):
            raise _fail("keeps a compacted tombstone")
        return
    firsts = list(accumulate(chain((0,), counts[:-1])))
    first_set = set(firsts)
    if any(mods[i] < compact and i in first_set for i in tombstones):
        raise _fail("keeps a compacted tombstone")
    for first, count in zip(firsts, counts, strict=True):
        if count > 1 and not all(
            map(lt, mods[first : first + count - 1], mods[first + 1 : first + count])
        ):
            raise _fail("revisions not ascending")


def _group(records: list[Record], counts: array[int]) -> list[Any]:
    """One entry per key: a bare record, or a list of two or more."""
    entries: list[Any] = []
    at = 0
    for count in counts:
        entries.append(records[at] if count == 1 else records[at : at + count])
        at += count
    return entries


def _leased(keys: list[bytes], entries: list[Any], leases: array[int]) -> list[tuple[int, bytes]]:
    if leases.count(0) == len(leases):
        return []
    latest = [e if type(e) is tuple else e[-1] for e in entries]
    return [(r[3], k) for k, r in zip(keys, latest, strict=True) if r[3] and r[4] is not None]


def _build_log(
    raw: Any,
    keys: list[bytes],
    entries: list[Any],
    single_mods: list[int] | None,
    rev: int,
    log_base: int,
) -> list[bytes | tuple[bytes, ...] | None]:
    """The store's log, naming the index's own key objects; every key named
    past the base has a record written at that revision."""
    from syndic.kv.mvcc import record_at

    if type(raw) is not list or len(raw) != 3:
        raise _fail("log is not [counts, refs, extra]")
    raw_counts, raw_refs, extra = raw
    revisions = rev - log_base + 1
    counts = _column(raw_counts, _U32, revisions, "log count")
    total = sum(counts)
    refs = _column(raw_refs, _U32, total, "log key")
    if type(extra) is not list or (extra and set(map(type, extra)) != {bytes}):
        raise _fail("log's extra keys are not a list of bytes")
    base_count = counts[0]
    past = refs[base_count:]
    if past and max(past) >= len(keys):
        raise _fail("log names a key outside the index past the log base")
    if base_count and max(refs[:base_count]) >= len(keys) + len(extra):
        raise _fail("log names a key it does not hold")
    named = list(map((keys + extra).__getitem__, refs))
    if 0 in counts[1:] or (counts[0] == 0 and log_base != 1):
        raise _fail("a revision past 1 has no keys in the log")
    log: list[bytes | tuple[bytes, ...] | None] = []
    at = 0
    for count in counts:
        log.append(
            None if not count else named[at] if count == 1 else tuple(named[at : at + count])
        )
        at += count
    # Past the base, each named key has a record at that revision: compared
    # over the whole log at once when every key has one record.
    expected = list(chain.from_iterable(map(repeat, range(log_base + 1, rev + 1), counts[1:])))
    if single_mods is not None:
        if not all(map(eq, map(single_mods.__getitem__, past), expected)):
            raise _fail("log names a key at a revision it has no record of")
        return log
    for place, revision in zip(past, expected, strict=True):
        record = record_at(entries[place], revision)
        if record is None or record[0] != revision:
            raise _fail(
                f"log names key {keys[place]!r:.40} at revision {revision} it has no record of"
            )
    return log
