"""The MVCC key-value state machine: etcd v3's data model in pure Python.

Every mutating method is meant to be called with a committed log entry, in
log order, on every member; the results (and ``hash_kv``) are then equal on
all members. Nothing here reads a clock: lease methods take ``now_ms``.

Layout (why it is compact). ``_index`` is a ``SortedDict`` from key to its
history. A key with one revision maps to a bare record tuple; a key with more
maps to a list of record tuples in revision order. A record is
``(mod_revision, create_revision, version, lease, value)``; a tombstone (the
key was deleted at ``mod_revision``) has ``value is None``. No per-revision
dict or object: one 5-tuple per revision, ints shared where equal
(``create_revision is mod_revision`` for a first write).

``_log`` lists, per revision since the last compaction, the key (or tuple of
keys, in write order) it changed; it gives watchers an ordered, gap-free
replay of history and lets compaction visit only keys that changed.

Invariants (``check_invariants``):
  * ``compact_revision <= revision``, and ``_log`` covers exactly
    ``[max(compact_revision, 1), revision]``;
  * every key's records are strictly increasing in mod_revision and the
    first retained record is either live or a tombstone at compact_revision;
  * a key's latest live record names lease L iff the key is in L's key set;
  * ``size_bytes`` is the sum of record costs.

Example::

    store = Store()
    store.put(PutRequest(key=b"a", value=b"1"))          # revision 2
    store.range(RangeRequest(key=b"a")).kvs[0].version   # 1
"""

from __future__ import annotations

import struct
import zlib
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final, Protocol, TypeAlias

from sortedcontainers import SortedDict

from syndic.kv.errors import (
    CompactedError,
    DuplicateKeyError,
    EmptyKeyError,
    FutureRevisionError,
    InvalidArgumentError,
    KeyNotFoundError,
    LeaseNotFoundError,
    LeaseProvidedError,
    NoSpaceError,
    RequestTooLargeError,
    TooManyOpsError,
    ValueProvidedError,
)
from syndic.kv.lease import LEASE_TTL_S_MAX, LEASE_TTL_S_MIN_DEFAULT, Lessor
from syndic.kv.messages import (
    AlarmType,
    CompactionRequest,
    CompactionResponse,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    HashKVResponse,
    KeyValue,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseLeasesResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    LeaseStatus,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RequestOp,
    ResponseOp,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)

Record: TypeAlias = tuple[int, int, int, int, bytes | None]
Entry: TypeAlias = "Record | list[Record]"
# One change of a revision as handed to observers: (key, record, previous live record).
Change: TypeAlias = tuple[bytes, Record, Record | None]

MOD: Final = 0
CREATE: Final = 1
VERSION: Final = 2
LEASE: Final = 3
VALUE: Final = 4

# etcd: embed.DefaultMaxRequestBytes (1.5 MiB); a larger request never reaches
# etcd's applier, so it is the natural bound on a key + value here too.
REQUEST_BYTES_MAX_DEFAULT: Final = 1_572_864
# etcd: DefaultQuotaBytes (2 GiB backend).
QUOTA_BYTES_DEFAULT: Final = 2 * 1024 * 1024 * 1024
# etcd: embed.DefaultMaxTxnOps.
TXN_OPS_MAX_DEFAULT: Final = 128
# Nested txns recurse; bound the depth so hostile input cannot exhaust the
# Python stack (etcd is bounded only by the request size).
TXN_DEPTH_MAX_DEFAULT: Final = 32
# Per-revision cost added to key and value bytes in the size estimate: the
# 16-byte revision key, the protobuf framing and the index entry.
RECORD_OVERHEAD_BYTES: Final = 64
# Cost of one lease in the size estimate (etcd: leaseOverhead-like constant).
LEASE_OVERHEAD_BYTES: Final = 64
# Revoking expired leases is rate-limited in etcd (leaseRevokeRate = 1000/s);
# callers ask for at most this many ids at once.
EXPIRED_LEASES_MAX: Final = 1000

_mod_of = itemgetter(0)
_HASH_REC = struct.Struct("<qqqqB")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """Limits of one store. Every member of a cluster must use the same values."""

    quota_bytes: int = QUOTA_BYTES_DEFAULT
    request_bytes_max: int = REQUEST_BYTES_MAX_DEFAULT
    txn_ops_max: int = TXN_OPS_MAX_DEFAULT
    txn_depth_max: int = TXN_DEPTH_MAX_DEFAULT
    lease_ttl_s_min: int = LEASE_TTL_S_MIN_DEFAULT
    lease_ttl_s_max: int = LEASE_TTL_S_MAX

    def __post_init__(self) -> None:
        for name in ("quota_bytes", "request_bytes_max", "txn_ops_max", "txn_depth_max"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise InvalidArgumentError(f"StoreConfig.{name} must be a positive int")
        if not 0 < self.lease_ttl_s_min <= self.lease_ttl_s_max:
            raise InvalidArgumentError("StoreConfig needs 0 < lease_ttl_s_min <= lease_ttl_s_max")


class StoreObserver(Protocol):
    """Told about every new revision and compaction, in apply order (the watch hub)."""

    def on_revision(self, revision: int, changes: list[Change]) -> None: ...

    def on_compact(self, compact_revision: int) -> None: ...


def record_cost(key: bytes, record: Record) -> int:
    value = record[VALUE]
    return len(key) + (len(value) if value is not None else 0) + RECORD_OVERHEAD_BYTES


def to_kv(key: bytes, record: Record, keys_only: bool = False) -> KeyValue:
    """The KeyValue etcd would return for ``record`` (a tombstone gives a DELETE event's kv)."""
    value = record[VALUE]
    if value is None:
        return KeyValue(key=key, mod_revision=record[MOD])
    return KeyValue(
        key,
        record[CREATE],
        record[MOD],
        record[VERSION],
        b"" if keys_only else value,
        record[LEASE],
    )


def record_at(entry: Entry, revision: int) -> Record | None:
    """The newest record of ``entry`` with mod_revision <= ``revision`` (None if none)."""
    if type(entry) is tuple:
        return entry if entry[MOD] <= revision else None
    assert isinstance(entry, list)
    i = bisect_right(entry, revision, key=_mod_of)
    return entry[i - 1] if i else None


def _latest(entry: Entry) -> Record:
    if isinstance(entry, list):
        return entry[-1]
    return entry


def _sort_key(target: SortTarget) -> Callable[[tuple[bytes, Record]], Any]:
    if target is SortTarget.VERSION:
        return lambda kr: kr[1][VERSION]
    if target is SortTarget.CREATE:
        return lambda kr: kr[1][CREATE]
    if target is SortTarget.MOD:
        return lambda kr: kr[1][MOD]
    if target is SortTarget.VALUE:
        return lambda kr: kr[1][VALUE]
    return itemgetter(0)


def _cmp(a: Any, b: Any) -> int:
    return int(a > b) - int(a < b)


class Store:
    """etcd v3's MVCC store: revisions, ranges, puts, deletes, txns, compaction, leases, quota."""

    def __init__(self, config: StoreConfig | None = None) -> None:
        self.config = config if config is not None else StoreConfig()
        self._index: SortedDict = SortedDict()
        # etcd: store starts at revision 1 with compactMainRev -1 (never compacted).
        self._rev = 1
        self._compact_rev = -1
        self._log_base = 1
        self._log: list[bytes | tuple[bytes, ...] | None] = [None]
        # Compaction survivors written by a revision that changed several
        # keys: key -> (that revision, the key's place in its writes). The log
        # that held the order is gone below the log base; etcd keeps it in the
        # record's revision key (revision.sub), which snapshot images carry.
        # Invariant: each names the key's oldest record, below the log base.
        self._survivor_subs: dict[bytes, tuple[int, int]] = {}
        self._size_bytes = 0
        self._lessor = Lessor(self.config.lease_ttl_s_min, self.config.lease_ttl_s_max)
        self._alarms: set[AlarmType] = set()
        self._observers: list[StoreObserver] = []

    # ------------------------------------------------------------------ state

    @property
    def revision(self) -> int:
        return self._rev

    @property
    def compact_revision(self) -> int:
        """Revision of the last compaction; -1 if never compacted (as etcd)."""
        return self._compact_rev

    @property
    def size_bytes(self) -> int:
        """Deterministic estimate of the stored bytes, checked against ``quota_bytes``."""
        return self._size_bytes

    @property
    def alarms(self) -> frozenset[AlarmType]:
        return frozenset(self._alarms)

    def __len__(self) -> int:
        """Number of keys with any retained history (live or tombstoned)."""
        return len(self._index)

    def add_observer(self, observer: StoreObserver) -> None:
        self._observers.append(observer)

    def remove_observer(self, observer: StoreObserver) -> None:
        self._observers.remove(observer)

    def record_of(self, key: bytes, revision: int) -> Record | None:
        """Raw record of ``key`` visible at ``revision`` (tombstones included)."""
        entry = self._index.get(key)
        return None if entry is None else record_at(entry, revision)

    def log_keys(self, revision: int) -> tuple[bytes, ...]:
        """Keys changed at ``revision``, in write order; needs compact_revision <= revision."""
        if not self._log_base <= revision <= self._rev:
            raise CompactedError(f"revision {revision} outside log [{self._log_base}, {self._rev}]")
        item = self._log[revision - self._log_base]
        if item is None:
            return ()
        return (item,) if type(item) is bytes else item  # type: ignore[return-value]

    def history(self) -> list[tuple[int, int, bytes, Record]]:
        """Every retained record as ``(main, sub, key, record)``, in revision order.

        ``sub`` orders the keys one revision changed (etcd's revision.sub):
        the log's write order where the log covers the revision; below the
        log base only compaction survivors remain, at the place in their
        revision's writes that compaction kept.
        """
        rows: list[tuple[int, int, bytes, Record]] = []
        write_order: dict[int, dict[bytes, int]] = {}
        survivors: dict[int, int] = {}
        for key, entry in self._index.items():
            for rec in [entry] if type(entry) is tuple else entry:
                mod = rec[MOD]
                if mod < self._log_base:
                    known = self._survivor_subs.get(key)
                    if known is not None and known[0] == mod:
                        sub = known[1]
                    else:
                        # A single-key revision, or a snapshot from before
                        # survivors' places were kept: key order.
                        sub = survivors.get(mod, 0)
                        survivors[mod] = sub + 1
                elif type(self._log[mod - self._log_base]) is bytes:
                    sub = 0
                else:
                    order = write_order.get(mod)
                    if order is None:
                        keys = self.log_keys(mod)
                        order = write_order[mod] = {k: i for i, k in enumerate(keys)}
                    sub = order[key]
                rows.append((mod, sub, key, rec))
        rows.sort(key=itemgetter(0, 1))
        return rows

    def leases(self) -> list[tuple[int, int]]:
        """Every granted lease as ``(id, granted TTL in seconds)``, by id."""
        return sorted((lease.id, lease.ttl_s) for lease in self._lessor.leases.values())

    # --------------------------------------------------------------- checks

    def _check_key(self, key: bytes, extra_bytes: int = 0) -> None:
        if not key:
            raise EmptyKeyError()
        if len(key) + extra_bytes > self.config.request_bytes_max:
            raise RequestTooLargeError(f"{len(key) + extra_bytes} bytes")

    def _check_read_revision(self, revision: int, current: int) -> None:
        if revision > current:
            raise FutureRevisionError(f"revision {revision} > current {current}")
        if 0 < revision < self._compact_rev:
            raise CompactedError(f"revision {revision} < compacted {self._compact_rev}")

    def _check_space(self, cost_bytes: int) -> None:
        if AlarmType.NOSPACE in self._alarms:
            raise NoSpaceError("NOSPACE alarm is active")
        if self._size_bytes + cost_bytes > self.config.quota_bytes:
            raise NoSpaceError(
                f"{self._size_bytes} + {cost_bytes} bytes > quota {self.config.quota_bytes}"
            )

    # ---------------------------------------------------------------- reads

    def _iter_entries(self, key: bytes, range_end: bytes) -> Iterator[tuple[bytes, Entry]]:
        index = self._index
        if not range_end:
            entry = index.get(key)
            if entry is not None:
                yield key, entry
            return
        if range_end == b"\0":
            keys = index.irange(minimum=key)
        elif range_end <= key:
            return
        else:
            keys = index.irange(minimum=key, maximum=range_end, inclusive=(True, False))
        for k in keys:
            yield k, index[k]

    def _visible(self, key: bytes, range_end: bytes, revision: int) -> list[tuple[bytes, Record]]:
        """Live (key, record) pairs in the range at ``revision``, in key order."""
        out: list[tuple[bytes, Record]] = []
        if revision == self._rev:
            for k, entry in self._iter_entries(key, range_end):
                rec: Record = entry if type(entry) is tuple else entry[-1]  # type: ignore[assignment]
                if rec[VALUE] is not None:
                    out.append((k, rec))
        else:
            for k, entry in self._iter_entries(key, range_end):
                old = record_at(entry, revision)
                if old is not None and old[VALUE] is not None:
                    out.append((k, old))
        return out

    def range(self, req: RangeRequest) -> RangeResponse:
        """etcd Range, with etcd 3.4's apply semantics for limit, sort and filters."""
        self._check_key(req.key, len(req.range_end))
        return self._range(req, self._rev)

    def _range(self, req: RangeRequest, current: int) -> RangeResponse:
        self._check_read_revision(req.revision, current)
        revision = req.revision if req.revision > 0 else current
        pairs = self._visible(req.key, req.range_end, revision)
        count = len(pairs)
        if req.count_only:
            return RangeResponse(revision=current, count=count)
        # etcd: mvcc counts every key in range before the filters and sort run.
        if req.max_mod_revision:
            pairs = [p for p in pairs if p[1][MOD] <= req.max_mod_revision]
        if req.min_mod_revision:
            pairs = [p for p in pairs if p[1][MOD] >= req.min_mod_revision]
        if req.max_create_revision:
            pairs = [p for p in pairs if p[1][CREATE] <= req.max_create_revision]
        if req.min_create_revision:
            pairs = [p for p in pairs if p[1][CREATE] >= req.min_create_revision]
        order = req.sort_order
        if req.sort_target is not SortTarget.KEY and order is SortOrder.NONE:
            # etcd: ascend by default only when the target is not the key.
            order = SortOrder.ASCEND
        if order is SortOrder.ASCEND and req.sort_target is not SortTarget.KEY:
            pairs.sort(key=_sort_key(req.sort_target))
        elif order is SortOrder.DESCEND:
            if req.sort_target is SortTarget.KEY:
                pairs.reverse()
            else:
                pairs.sort(key=_sort_key(req.sort_target), reverse=True)
        more = False
        if 0 < req.limit < len(pairs):
            pairs = pairs[: req.limit]
            more = True
        keys_only = req.keys_only
        kvs = tuple(
            KeyValue(k, r[CREATE], r[MOD], r[VERSION], b"" if keys_only else r[VALUE], r[LEASE])  # type: ignore[arg-type]
            for k, r in pairs
        )
        return RangeResponse(revision=current, kvs=kvs, more=more, count=count)

    # --------------------------------------------------------------- writes

    def _write_put(
        self, key: bytes, value: bytes, lease: int, revision: int, changes: list[Change] | None
    ) -> Record | None:
        """Append a put record at ``revision``; returns the previous live record."""
        index = self._index
        entry = index.get(key)
        prev: Record | None
        if entry is None:
            rec: Record = (revision, revision, 1, lease, value)
            index[key] = rec
            prev = None
        else:
            prev = entry if type(entry) is tuple else entry[-1]
            assert prev is not None and prev[MOD] < revision
            if prev[VALUE] is None:
                rec = (revision, revision, 1, lease, value)
                prev = None
            else:
                rec = (revision, prev[CREATE], prev[VERSION] + 1, lease, value)
            if type(entry) is tuple:
                index[key] = [entry, rec]
            else:
                entry.append(rec)
        old_lease = prev[LEASE] if prev is not None else 0
        if old_lease != lease:
            if old_lease:
                self._lessor.leases[old_lease].keys.discard(key)
            if lease:
                self._lessor.leases[lease].keys.add(key)
        self._size_bytes += len(key) + len(value) + RECORD_OVERHEAD_BYTES
        if changes is not None:
            changes.append((key, rec, prev))
        return prev

    def _write_delete(
        self, key: bytes, prev: Record, revision: int, changes: list[Change] | None
    ) -> None:
        entry = self._index[key]
        tomb: Record = (revision, 0, 0, 0, None)
        if type(entry) is tuple:
            self._index[key] = [entry, tomb]
        else:
            entry.append(tomb)
        if prev[LEASE]:
            self._lessor.leases[prev[LEASE]].keys.discard(key)
        self._size_bytes += len(key) + RECORD_OVERHEAD_BYTES
        if changes is not None:
            changes.append((key, tomb, prev))

    def _commit(self, revision: int, keys: list[bytes], changes: list[Change] | None) -> None:
        """Close a write at ``revision`` (which changed ``keys``) and tell the observers."""
        self._rev = revision
        self._log.append(keys[0] if len(keys) == 1 else tuple(keys))
        if changes is not None:
            for observer in self._observers:
                observer.on_revision(revision, changes)

    def _check_put(self, req: PutRequest) -> None:
        # etcd: v3rpc checkPutRequest.
        self._check_key(req.key, len(req.value))
        if req.ignore_value and req.value:
            raise ValueProvidedError(f"key={req.key!r:.64}")
        if req.ignore_lease and req.lease:
            raise LeaseProvidedError(f"key={req.key!r:.64}")

    def _resolve_put(self, req: PutRequest, revision: int) -> tuple[bytes, int, Record | None]:
        """Value and lease a put will write, after etcd's apply-time checks at ``revision``."""
        if req.lease and req.lease not in self._lessor.leases:
            raise LeaseNotFoundError(f"id={req.lease}")
        prev: Record | None = None
        if req.ignore_value or req.ignore_lease or req.prev_kv:
            prev = self.record_of(req.key, revision)
            if prev is not None and prev[VALUE] is None:
                prev = None
        value, lease = req.value, req.lease
        if req.ignore_value or req.ignore_lease:
            if prev is None:
                raise KeyNotFoundError(f"key={req.key!r:.64}")
            if req.ignore_value:
                value = prev[VALUE]  # type: ignore[assignment]
            if req.ignore_lease:
                lease = prev[LEASE]
        return value, lease, prev

    def put(self, req: PutRequest) -> PutResponse:
        """etcd Put: one new revision; ``prev_kv`` returns the overwritten pair."""
        key = req.key
        if not key or len(key) + len(req.value) > self.config.request_bytes_max:
            self._check_key(key, len(req.value))
        if req.ignore_value or req.ignore_lease or req.lease:
            self._check_put(req)
            value, lease, _ = self._resolve_put(req, self._rev)
        else:
            value, lease = req.value, 0
        self._check_space(len(key) + len(value) + RECORD_OVERHEAD_BYTES)
        revision = self._rev + 1
        changes: list[Change] | None = [] if self._observers else None
        prev = self._write_put(key, value, lease, revision, changes)
        self._rev = revision
        self._log.append(key)
        if changes is not None:
            for observer in self._observers:
                observer.on_revision(revision, changes)
        if req.prev_kv and prev is not None:
            return PutResponse(revision, to_kv(key, prev))
        return PutResponse(revision)

    def delete_range(self, req: DeleteRangeRequest) -> DeleteRangeResponse:
        """etcd DeleteRange: a revision only if something was deleted."""
        self._check_key(req.key, len(req.range_end))
        pairs = self._visible(req.key, req.range_end, self._rev)
        if not pairs:
            return DeleteRangeResponse(revision=self._rev)
        revision = self._rev + 1
        changes: list[Change] | None = [] if self._observers else None
        for k, rec in pairs:
            self._write_delete(k, rec, revision, changes)
        self._commit(revision, [k for k, _ in pairs], changes)
        prev_kvs = tuple(to_kv(k, r) for k, r in pairs) if req.prev_kv else ()
        return DeleteRangeResponse(revision=revision, deleted=len(pairs), prev_kvs=prev_kvs)

    # ----------------------------------------------------------------- txn

    def _check_txn_shape(self, req: TxnRequest, ops_max: int, depth: int) -> int:
        """etcd: v3rpc checkTxnRequest (recursive); returns the request's key/value bytes."""
        if depth > self.config.txn_depth_max:
            raise InvalidArgumentError(f"txn nested deeper than {self.config.txn_depth_max}")
        opc = max(len(req.compare), len(req.success), len(req.failure))
        if opc > ops_max:
            raise TooManyOpsError(f"{opc} > {ops_max}")
        size = 0
        for cmp in req.compare:
            if not cmp.key:
                raise EmptyKeyError("in txn compare")
            size += len(cmp.key) + len(cmp.range_end) + len(cmp.value)
        for op in req.success + req.failure:
            if type(op) is PutRequest:
                self._check_put(op)
                size += len(op.key) + len(op.value)
            elif type(op) is TxnRequest:
                size += self._check_txn_shape(op, ops_max - opc, depth + 1)
            else:
                assert isinstance(op, RangeRequest | DeleteRangeRequest)
                if not op.key:
                    raise EmptyKeyError("in txn op")
                size += len(op.key) + len(op.range_end)
        return size

    def _txn_path(self, req: TxnRequest, revision: int, path: dict[int, bool]) -> None:
        # etcd: compareToPath evaluates every compare on the branch taken,
        # nested ones included, against the state before the txn writes.
        ok = all(self._compare(c, revision) for c in req.compare)
        path[id(req)] = ok
        for op in req.success if ok else req.failure:
            if type(op) is TxnRequest:
                self._txn_path(op, revision, path)

    def _compare(self, c: Compare, revision: int) -> bool:
        pairs = self._visible(c.key, c.range_end, revision)
        if not pairs:
            if c.target is CompareTarget.VALUE:
                # etcd: comparing the value of a missing key always fails.
                return False
            return self._compare_record(c, (0, 0, 0, 0, b""))
        return all(self._compare_record(c, rec) for _, rec in pairs)

    @staticmethod
    def _compare_record(c: Compare, rec: Record) -> bool:
        target = c.target
        if target is CompareTarget.VALUE:
            result = _cmp(rec[VALUE], c.value)
        elif target is CompareTarget.VERSION:
            result = _cmp(rec[VERSION], c.version)
        elif target is CompareTarget.CREATE:
            result = _cmp(rec[CREATE], c.create_revision)
        elif target is CompareTarget.MOD:
            result = _cmp(rec[MOD], c.mod_revision)
        else:
            result = _cmp(rec[LEASE], c.lease)
        if c.result is CompareResult.EQUAL:
            return result == 0
        if c.result is CompareResult.NOT_EQUAL:
            return result != 0
        if c.result is CompareResult.GREATER:
            return result > 0
        return result < 0

    def _check_path(self, req: TxnRequest, path: dict[int, bool], revision: int) -> int:
        """etcd: checkRequests on the taken branch; returns the bytes its puts would add."""
        cost = 0
        for op in req.success if path[id(req)] else req.failure:
            if type(op) is PutRequest:
                value, _, _ = self._resolve_put(op, revision)
                cost += len(op.key) + len(value) + RECORD_OVERHEAD_BYTES
            elif type(op) is RangeRequest:
                self._check_read_revision(op.revision, revision)
            elif type(op) is TxnRequest:
                cost += self._check_path(op, path, revision)
        return cost

    def txn(self, req: TxnRequest) -> TxnResponse:
        """etcd Txn: compares, then one branch, all at one revision (none if nothing changed)."""
        if not req.compare and not req.failure and req.success:
            done = self._txn_of_puts(req.success)
            if done is not None:
                return done
        size = self._check_txn_shape(req, self.config.txn_ops_max, 0)
        if size > self.config.request_bytes_max:
            raise RequestTooLargeError(f"txn of {size} bytes")
        _check_intervals(req.success)
        _check_intervals(req.failure)
        begin = self._rev
        path: dict[int, bool] = {}
        self._txn_path(req, begin, path)
        cost = self._check_path(req, path, begin)
        if _has_put(req):
            if AlarmType.NOSPACE in self._alarms:
                # etcd: applierV3Capped refuses any txn that could write.
                raise NoSpaceError("NOSPACE alarm is active")
            self._check_space(cost)
        # Every check passed: from here on nothing raises, so the txn is atomic.
        keys: list[bytes] = []
        changes: list[Change] | None = [] if self._observers else None
        resp = self._apply_txn(req, path, begin, keys, changes)
        if keys:
            self._commit(begin + 1, keys, changes)
        return TxnResponse(revision=self._rev, succeeded=resp.succeeded, responses=resp.responses)

    def _txn_of_puts(self, ops: tuple[RequestOp, ...]) -> TxnResponse | None:
        """A txn that only puts new values without leases, in one pass; None
        (change nothing) for any other txn, or one the general path refuses.

        Bulk loads and log replays are mostly such txns; the general path
        visits each op five times (shape, intervals, path, cost, apply). The
        result is the one ``txn`` gives: with no compares the success branch
        runs, and a txn that passes these checks passes etcd's."""
        if len(ops) > self.config.txn_ops_max:
            return None
        limit = self.config.request_bytes_max
        keys: list[bytes] = []
        size = 0
        for op in ops:
            if type(op) is not PutRequest or op.lease or op.ignore_value or op.ignore_lease:
                return None
            key = op.key
            n = len(key) + len(op.value)
            if not key or n > limit:
                return None
            size += n
            keys.append(key)
        if size > limit or len(set(keys)) != len(keys):
            return None
        self._check_space(size + RECORD_OVERHEAD_BYTES * len(keys))
        revision = self._rev + 1
        changes: list[Change] | None = [] if self._observers else None
        write = self._write_put
        responses: list[ResponseOp] = []
        # Responses are frozen values: every put that asks for no prev_kv
        # shares one (a replayed txn of 128 puts builds one, not 128).
        plain = PutResponse(revision)
        for op in ops:
            assert type(op) is PutRequest
            prev = write(op.key, op.value, 0, revision, changes)
            if op.prev_kv and prev is not None:
                responses.append(PutResponse(revision, to_kv(op.key, prev)))
            else:
                responses.append(plain)
        self._commit(revision, keys, changes)
        return TxnResponse(revision=revision, succeeded=True, responses=tuple(responses))

    def _apply_txn(
        self,
        req: TxnRequest,
        path: dict[int, bool],
        begin: int,
        keys: list[bytes],
        changes: list[Change] | None,
    ) -> TxnResponse:
        ok = path[id(req)]
        responses: list[ResponseOp] = []
        write_rev = begin + 1
        for op in req.success if ok else req.failure:
            # etcd: reads inside a write txn see the txn's earlier writes.
            visible = write_rev if keys else begin
            if type(op) is RangeRequest:
                responses.append(self._range(op, visible))
            elif type(op) is PutRequest:
                value, lease, prev = self._resolve_put(op, visible)
                self._write_put(op.key, value, lease, write_rev, changes)
                keys.append(op.key)
                prev_kv = to_kv(op.key, prev) if op.prev_kv and prev is not None else None
                responses.append(PutResponse(write_rev, prev_kv))
            elif type(op) is DeleteRangeRequest:
                pairs = self._visible(op.key, op.range_end, visible)
                for k, rec in pairs:
                    self._write_delete(k, rec, write_rev, changes)
                    keys.append(k)
                prev_kvs = tuple(to_kv(k, r) for k, r in pairs) if op.prev_kv else ()
                responses.append(
                    DeleteRangeResponse(write_rev if keys else begin, len(pairs), prev_kvs)
                )
            else:
                assert type(op) is TxnRequest
                responses.append(self._apply_txn(op, path, begin, keys, changes))
        return TxnResponse(
            revision=write_rev if keys else begin, succeeded=ok, responses=tuple(responses)
        )

    # ----------------------------------------------------------- compaction

    def compact(self, req: CompactionRequest) -> CompactionResponse:
        """Drop history older than ``req.revision`` (the newest record <= it survives)."""
        rev = req.revision
        if rev <= self._compact_rev:
            raise CompactedError(f"revision {rev} <= compacted {self._compact_rev}")
        if rev > self._rev:
            raise FutureRevisionError(f"revision {rev} > current {self._rev}")
        touched: set[bytes] = set()
        for item in self._log[: max(rev, 1) - self._log_base + 1]:
            if item is None:
                continue
            if type(item) is bytes:
                touched.add(item)
            else:
                touched.update(item)  # type: ignore[arg-type]
        for key in touched:
            self._compact_key(key, rev)
        new_base = max(rev, 1)
        self._keep_survivor_subs(touched, new_base)
        del self._log[: new_base - self._log_base]
        self._log_base = new_base
        self._compact_rev = rev
        for observer in self._observers:
            observer.on_compact(rev)
        return CompactionResponse(revision=self._rev)

    def _keep_survivor_subs(self, touched: set[bytes], new_base: int) -> None:
        """Before the log below ``new_base`` goes: note where each touched key's
        surviving record stood in a revision that wrote several keys."""
        subs = self._survivor_subs
        for key in touched:
            entry = self._index.get(key)
            mod = 0 if entry is None else (entry if type(entry) is tuple else entry[0])[MOD]
            item = self._log[mod - self._log_base] if self._log_base <= mod < new_base else None
            if type(item) is tuple:
                subs[key] = (mod, item.index(key))
            else:
                subs.pop(key, None)

    def _compact_key(self, key: bytes, rev: int) -> None:
        entry = self._index.get(key)
        if entry is None:
            return
        records = [entry] if type(entry) is tuple else entry
        i = bisect_right(records, rev, key=_mod_of)
        keep_from = max(i - 1, 0)
        if i:
            newest_old = records[i - 1]
            # A tombstone older than the compaction point ends the key's old
            # generation and goes with it; one exactly at the compaction point
            # stays, so a watcher that starts there (allowed) still sees it.
            if newest_old[VALUE] is None and newest_old[MOD] < rev:
                keep_from = i
        if keep_from == 0:
            return
        for dropped in records[:keep_from]:
            self._size_bytes -= record_cost(key, dropped)
        kept = records[keep_from:]
        if not kept:
            del self._index[key]
        elif len(kept) == 1:
            self._index[key] = kept[0]
        else:
            self._index[key] = list(kept)

    # --------------------------------------------------------------- leases

    def lease_grant(self, req: LeaseGrantRequest, now_ms: int) -> LeaseGrantResponse:
        """etcd LeaseGrant; ``now_ms`` is the applying member's own clock, used
        only while its lessor is primary (see ``syndic.kv.lease``)."""
        lessor = self._lessor
        lessor.check_grant(req.id, req.ttl_s)
        self._check_space(LEASE_OVERHEAD_BYTES)
        lease_id = req.id if req.id != 0 else lessor.next_id()
        lease = lessor.grant(lease_id, req.ttl_s, now_ms)
        self._size_bytes += LEASE_OVERHEAD_BYTES
        return LeaseGrantResponse(revision=self._rev, id=lease.id, ttl_s=lease.ttl_s)

    def lease_revoke(self, req: LeaseRevokeRequest) -> LeaseRevokeResponse:
        """Delete every attached key in ONE revision (sorted, as etcd), then the lease."""
        lease = self._lessor.get(req.id)
        keys = sorted(lease.keys)
        if keys:
            revision = self._rev + 1
            changes: list[Change] | None = [] if self._observers else None
            for k in keys:
                prev = _latest(self._index[k])
                self._write_delete(k, prev, revision, changes)
            self._commit(revision, keys, changes)
        self._lessor.remove(req.id)
        self._size_bytes -= LEASE_OVERHEAD_BYTES
        return LeaseRevokeResponse(revision=self._rev)

    def lease_keep_alive(self, req: LeaseKeepAliveRequest, now_ms: int) -> LeaseKeepAliveResponse:
        ttl_s = self._lessor.keep_alive(req.id, now_ms)
        return LeaseKeepAliveResponse(revision=self._rev, id=req.id, ttl_s=ttl_s)

    def lease_time_to_live(
        self, req: LeaseTimeToLiveRequest, now_ms: int
    ) -> LeaseTimeToLiveResponse:
        lease = self._lessor.leases.get(req.id)
        if lease is None:
            # etcd: v3rpc answers TTL -1 instead of an error for an unknown lease.
            return LeaseTimeToLiveResponse(revision=self._rev, id=req.id, ttl_s=-1)
        keys = tuple(sorted(lease.keys)) if req.keys else ()
        return LeaseTimeToLiveResponse(
            revision=self._rev,
            id=lease.id,
            ttl_s=lease.remaining_s(now_ms),
            granted_ttl_s=lease.ttl_s,
            keys=keys,
        )

    def lease_leases(self) -> LeaseLeasesResponse:
        ids = sorted(self._lessor.leases)
        return LeaseLeasesResponse(revision=self._rev, leases=tuple(LeaseStatus(i) for i in ids))

    def expired_leases(self, now_ms: int, limit: int = EXPIRED_LEASES_MAX) -> tuple[int, ...]:
        """Leases due at ``now_ms`` (leader only): propose a LeaseRevokeRequest for each."""
        return self._lessor.expired(now_ms, min(limit, EXPIRED_LEASES_MAX))

    def lease_promote(self, now_ms: int) -> None:
        """Restart every lease's TTL from ``now_ms`` when this member becomes leader."""
        self._lessor.promote(now_ms)

    def lease_demote(self) -> None:
        """Forget every lease deadline: this member no longer decides expiry."""
        self._lessor.demote()

    @property
    def lease_primary(self) -> bool:
        return self._lessor.primary

    # --------------------------------------------------------------- alarms

    def alarm_activate(self, alarm: AlarmType) -> None:
        """Applied from an Alarm entry (etcd raises NOSPACE through raft)."""
        if alarm is not AlarmType.NONE:
            self._alarms.add(AlarmType(alarm))

    def alarm_deactivate(self, alarm: AlarmType) -> None:
        self._alarms.discard(AlarmType(alarm))

    # ------------------------------------------------------------- hashing

    def hash_kv(self, revision: int = 0) -> HashKVResponse:
        """etcd HashKV: hash of every retained key revision <= ``revision`` (0 = current)."""
        if revision > self._rev:
            raise FutureRevisionError(f"revision {revision} > current {self._rev}")
        if 0 < revision < self._compact_rev:
            raise CompactedError(f"revision {revision} < compacted {self._compact_rev}")
        upto = revision if revision > 0 else self._rev
        h = zlib.crc32(b"key")
        pack = _HASH_REC.pack
        for key, entry in self._index.items():
            records = [entry] if type(entry) is tuple else entry
            for rec in records:
                if rec[MOD] > upto:
                    break
                h = zlib.crc32(key, h)
                value = rec[VALUE]
                h = zlib.crc32(
                    pack(rec[MOD], rec[CREATE], rec[VERSION], rec[LEASE], value is None), h
                )
                if value is not None:
                    h = zlib.crc32(value, h)
        return HashKVResponse(
            revision=self._rev, hash=h, compact_revision=self._compact_rev, hash_revision=upto
        )

    # ------------------------------------------------------------- dispatch

    def apply(self, request: object, now_ms: int = 0) -> object:
        """Apply one committed request of any kind (what the Raft apply loop calls)."""
        if type(request) is PutRequest:
            return self.put(request)
        if type(request) is TxnRequest:
            return self.txn(request)
        if type(request) is DeleteRangeRequest:
            return self.delete_range(request)
        if type(request) is RangeRequest:
            return self.range(request)
        if type(request) is CompactionRequest:
            return self.compact(request)
        if type(request) is LeaseGrantRequest:
            return self.lease_grant(request, now_ms)
        if type(request) is LeaseRevokeRequest:
            return self.lease_revoke(request)
        if type(request) is LeaseKeepAliveRequest:
            return self.lease_keep_alive(request, now_ms)
        raise InvalidArgumentError(f"cannot apply {type(request).__name__}")

    # ----------------------------------------------------------- snapshots

    def serialize(self) -> bytes:
        """The whole state machine as snapshot bytes (see ``syndic.kv.snapshot``)."""
        from syndic.kv.snapshot import dump

        return dump(self)

    @classmethod
    def restore(cls, data: bytes | memoryview, config: StoreConfig | None = None) -> Store:
        """Rebuild a store from ``serialize()`` output (or a view of it, so a
        large state is not copied); SnapshotCorruptError if invalid."""
        from syndic.kv.snapshot import load

        return load(data, config)

    # ----------------------------------------------------------- invariants

    def check_invariants(self) -> None:
        """Assert the documented invariants (O(state); for tests and the simulator)."""
        assert self._compact_rev <= self._rev
        assert self._log_base == max(self._compact_rev, 1)
        assert len(self._log) == self._rev - self._log_base + 1
        size = 0
        lease_keys: dict[int, set[bytes]] = {i: set() for i in self._lessor.leases}
        for key, entry in self._index.items():
            assert type(key) is bytes and key
            records = [entry] if type(entry) is tuple else entry
            assert records, key
            assert type(entry) is tuple or len(entry) > 1, key
            mods = [r[MOD] for r in records]
            assert mods == sorted(set(mods)), key
            first = records[0]
            if first[VALUE] is None:
                assert first[MOD] >= self._compact_rev, key
            for rec in records:
                size += record_cost(key, rec)
            last = records[-1]
            if last[VALUE] is not None and last[LEASE]:
                lease_keys[last[LEASE]].add(key)
        for lease_id, keys in lease_keys.items():
            assert self._lessor.leases[lease_id].keys == keys, lease_id
        size += LEASE_OVERHEAD_BYTES * len(self._lessor.leases)
        self._lessor.check_invariants()
        assert size == self._size_bytes, (size, self._size_bytes)
        for rev in range(self._log_base + 1, self._rev + 1):
            for k in self.log_keys(rev):
                rec = self.record_of(k, rev)
                assert rec is not None and rec[MOD] == rev, (k, rev)
        for key, (mod, place) in self._survivor_subs.items():
            entry = self._index.get(key)
            assert entry is not None, key
            oldest = entry if type(entry) is tuple else entry[0]
            assert oldest[MOD] == mod < self._log_base and place >= 0, (key, mod, place)


def _has_put(req: TxnRequest) -> bool:
    for op in req.success + req.failure:
        if type(op) is PutRequest or (type(op) is TxnRequest and _has_put(op)):
            return True
    return False


def _check_intervals(ops: tuple[RequestOp, ...]) -> tuple[set[bytes], list[tuple[bytes, bytes]]]:
    """etcd: v3rpc checkIntervals — no key may be put twice, or put and deleted, in one txn.

    Puts in the ``success`` and ``failure`` of one nested txn may repeat (only
    one runs). One deliberate difference: etcd's interval tree compares a
    ``b"\\0"`` (from-key) ``range_end`` as plain bytes, so it covers nothing
    and etcd lets such a delete and a put of a key in it share a txn (two
    changes of one key in one revision). Here ``b"\\0"`` means "no upper
    bound", as everywhere else, and that txn is refused as a duplicate key.
    """
    dels: list[tuple[bytes, bytes]] = []
    for op in ops:
        if type(op) is DeleteRangeRequest:
            dels.append((op.key, op.range_end))
    puts: set[bytes] = set()

    def deleted(k: bytes) -> bool:
        for start, end in dels:
            if not end:
                if k == start:
                    return True
            elif start <= k and (end == b"\0" or k < end):
                return True
        return False

    for op in ops:
        if type(op) is not TxnRequest:
            continue
        puts_then, dels_then = _check_intervals(op.success)
        puts_else, dels_else = _check_intervals(op.failure)
        for k in puts_then:
            if k in puts or deleted(k):
                raise DuplicateKeyError(f"key={k!r:.64}")
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or deleted(k):
                raise DuplicateKeyError(f"key={k!r:.64}")
            puts.add(k)
        dels.extend(dels_then)
        dels.extend(dels_else)
    for op in ops:
        if type(op) is PutRequest:
            if op.key in puts or deleted(op.key):
                raise DuplicateKeyError(f"key={op.key!r:.64}")
            puts.add(op.key)
    return puts, dels
