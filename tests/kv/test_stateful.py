"""Hypothesis state machine: the store and its watch hub against a plain model.

The model is a dict of key -> list of (revision, value or None, lease): the
whole history, never compacted. Every read, txn, lease expiry and watch is
checked against it; watches are checked at the end with the watch guarantee
checker against the model's own write log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from syndic.check.watch_guarantees import WatchSpec, WriteEvent, check_watch
from syndic.kv.errors import CompactedError, DuplicateKeyError, LeaseNotFoundError
from syndic.kv.messages import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    EventType,
    KeyValue,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    TxnRequest,
    WatchFilter,
)
from syndic.kv.mvcc import Store
from syndic.kv.watch import WatchConfig, WatchCreateRequest, WatchHub, WatchResponse, WatchStream

KEYS = [b"a", b"b", b"ba", b"c", b"d"]
keys_st = st.sampled_from(KEYS)
values_st = st.sampled_from([b"", b"x", b"yy", b"zzz"])
ranges_st = st.sampled_from([(b"a", b""), (b"b", b"c"), (b"a", b"\0"), (b"c", b"\0"), (b"b", b"")])


def matches(key: bytes, start: bytes, end: bytes) -> bool:
    if not end:
        return key == start
    if end == b"\0":
        return key >= start
    return start <= key < end


@dataclass
class WatchRecord:
    stream: WatchStream
    spec: WatchSpec
    responses: list[WatchResponse] = field(default_factory=list)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = Store()
        self.hub = WatchHub(self.store, WatchConfig(buffer_events_max=3, catch_up_revisions_max=4))
        self.history: dict[bytes, list[tuple[int, bytes | None, int]]] = {k: [] for k in KEYS}
        self.writes: list[WriteEvent] = []
        self.rev = 1
        self.compact_rev = -1
        self.leases: dict[int, int] = {}  # id -> expiry_ms
        self.now_ms = 0
        self.watches: list[WatchRecord] = []

    # ------------------------------------------------------------ model

    def model_kv(self, key: bytes, rev: int) -> KeyValue | None:
        kv: KeyValue | None = None
        for r, value, lease in self.history[key]:
            if r > rev:
                break
            if value is None:
                kv = None
            elif kv is None:
                kv = KeyValue(key, r, r, 1, value, lease)
            else:
                kv = KeyValue(key, kv.create_revision, r, kv.version + 1, value, lease)
        return kv

    def model_range(self, start: bytes, end: bytes, rev: int) -> list[KeyValue]:
        out = [self.model_kv(k, rev) for k in sorted(KEYS) if matches(k, start, end)]
        return [kv for kv in out if kv is not None]

    def model_write(self, changes: list[tuple[bytes, bytes | None, int]]) -> None:
        """Apply changes (key, value or None, lease) as one new revision."""
        if not changes:
            return
        self.rev += 1
        for key, value, lease in changes:
            self.history[key].append((self.rev, value, lease))
            kind = EventType.PUT if value is not None else EventType.DELETE
            self.writes.append(WriteEvent(self.rev, key, kind, value or b"", lease))

    def live_lease(self, key: bytes) -> int:
        kv = self.model_kv(key, self.rev)
        return kv.lease if kv else 0

    # ------------------------------------------------------------ rules

    @rule(key=keys_st, value=values_st, use_lease=st.booleans(), prev=st.booleans())
    def put(self, key: bytes, value: bytes, use_lease: bool, prev: bool) -> None:
        lease = min(self.leases) if use_lease and self.leases else 0
        before = self.model_kv(key, self.rev)
        resp = self.store.put(PutRequest(key, value, lease=lease, prev_kv=prev))
        self.model_write([(key, value, lease)])
        assert resp.revision == self.rev
        assert resp.prev_kv == (before if prev else None)

    @rule(rng=ranges_st, prev=st.booleans())
    def delete(self, rng: tuple[bytes, bytes], prev: bool) -> None:
        victims = self.model_range(rng[0], rng[1], self.rev)
        resp = self.store.delete_range(DeleteRangeRequest(rng[0], rng[1], prev_kv=prev))
        self.model_write([(kv.key, None, 0) for kv in victims])
        assert resp.deleted == len(victims) and resp.revision == self.rev
        assert list(resp.prev_kvs) == (victims if prev else [])

    @rule(
        ckey=keys_st,
        version=st.integers(0, 3),
        op=st.sampled_from(list(CompareResult)),
        k1=keys_st,
        k2=keys_st,
        value=values_st,
    )
    def txn(
        self, ckey: bytes, version: int, op: CompareResult, k1: bytes, k2: bytes, value: bytes
    ) -> None:
        compare = Compare(ckey, CompareTarget.VERSION, op, version=version)
        req = TxnRequest(
            compare=(compare,),
            success=(PutRequest(k1, value), DeleteRangeRequest(k2), RangeRequest(k1)),
            failure=(PutRequest(k2, value), RangeRequest(b"a", b"\0")),
        )
        kv = self.model_kv(ckey, self.rev)
        have = kv.version if kv else 0
        ok = {
            CompareResult.EQUAL: have == version,
            CompareResult.NOT_EQUAL: have != version,
            CompareResult.GREATER: have > version,
            CompareResult.LESS: have < version,
        }[op]
        if k1 == k2:
            try:
                self.store.txn(req)
            except DuplicateKeyError:
                return
            raise AssertionError("duplicate key accepted")
        resp = self.store.txn(req)
        assert resp.succeeded is ok
        if ok:
            changes: list[tuple[bytes, bytes | None, int]] = [(k1, value, 0)]
            if self.model_kv(k2, self.rev) is not None:
                changes.append((k2, None, 0))
        else:
            changes = [(k2, value, 0)]
        self.model_write(changes)
        assert resp.revision == self.rev
        final_read = resp.responses[-1]
        assert isinstance(final_read, type(self.store.range(RangeRequest(b"a"))))

    @rule(
        rng=ranges_st,
        back=st.integers(0, 12),
        limit=st.integers(-1, 4),
        order=st.sampled_from(list(SortOrder)),
        sort_by=st.sampled_from(list(SortTarget)),
        keys_only=st.booleans(),
        count_only=st.booleans(),
        min_mod=st.integers(0, 8),
    )
    def range_read(
        self,
        rng: tuple[bytes, bytes],
        back: int,
        limit: int,
        order: SortOrder,
        sort_by: SortTarget,
        keys_only: bool,
        count_only: bool,
        min_mod: int,
    ) -> None:
        rev = max(self.rev - back, 1)
        req = RangeRequest(
            rng[0],
            rng[1],
            limit=limit,
            revision=rev,
            sort_order=order,
            sort_target=sort_by,
            keys_only=keys_only,
            count_only=count_only,
            min_mod_revision=min_mod,
        )
        if rev < self.compact_rev:
            try:
                self.store.range(req)
            except CompactedError:
                return
            raise AssertionError("compacted revision served")
        resp = self.store.range(req)
        expect = self.model_range(rng[0], rng[1], rev)
        assert resp.count == len(expect) and resp.revision == self.rev
        if count_only:
            assert resp.kvs == ()
            return
        expect = [kv for kv in expect if kv.mod_revision >= min_mod]
        attr = {
            SortTarget.KEY: "key",
            SortTarget.VERSION: "version",
            SortTarget.CREATE: "create_revision",
            SortTarget.MOD: "mod_revision",
            SortTarget.VALUE: "value",
        }[sort_by]
        if order is not SortOrder.NONE or sort_by is not SortTarget.KEY:
            expect.sort(key=lambda kv: getattr(kv, attr), reverse=order is SortOrder.DESCEND)
        more = 0 < limit < len(expect)
        if more:
            expect = expect[:limit]
        got = list(resp.kvs)
        assert resp.more is more
        # Ties in the sort target may come in any order (etcd's sort is unstable).
        want = {kv.key: kv for kv in expect}
        assert [getattr(want[kv.key], attr) for kv in got] == [getattr(kv, attr) for kv in expect]
        for kv in got:
            w = want[kv.key]
            assert kv == (
                KeyValue(w.key, w.create_revision, w.mod_revision, w.version, b"", w.lease)
                if keys_only
                else w
            )

    @precondition(lambda self: self.rev > max(self.compact_rev, 0))
    @rule(data=st.data())
    def compact(self, data: st.DataObject) -> None:
        target = data.draw(st.integers(max(self.compact_rev + 1, 1), self.rev))
        self.store.compact(CompactionRequest(target))
        self.compact_rev = target

    @rule(ttl=st.integers(1, 5), explicit=st.booleans())
    def grant(self, ttl: int, explicit: bool) -> None:
        lease_id = (max(self.leases) + 1 if self.leases else 1) if explicit else 0
        resp = self.store.lease_grant(LeaseGrantRequest(ttl, id=lease_id), now_ms=self.now_ms)
        assert resp.id not in self.leases and resp.id > 0
        self.leases[resp.id] = self.now_ms + max(ttl, 2) * 1000

    def revoke_model(self, lease_id: int) -> None:
        keys = [
            k for k in sorted(KEYS) if self.model_kv(k, self.rev) and self.live_lease(k) == lease_id
        ]
        self.store.lease_revoke(LeaseRevokeRequest(lease_id))
        self.model_write([(k, None, 0) for k in keys])
        del self.leases[lease_id]
        assert self.store.revision == self.rev

    @precondition(lambda self: bool(self.leases))
    @rule(data=st.data())
    def revoke(self, data: st.DataObject) -> None:
        self.revoke_model(data.draw(st.sampled_from(sorted(self.leases))))

    @rule(step_ms=st.integers(0, 3000))
    def expire(self, step_ms: int) -> None:
        self.now_ms += step_ms
        due = sorted((exp, i) for i, exp in self.leases.items() if exp <= self.now_ms)
        got = self.store.expired_leases(self.now_ms)
        assert got == tuple(i for _, i in due)
        for lease_id in got:
            self.revoke_model(lease_id)

    @rule()
    def revoke_missing(self) -> None:
        try:
            self.store.lease_revoke(LeaseRevokeRequest(10**12))
        except LeaseNotFoundError:
            return
        raise AssertionError("revoked a missing lease")

    @rule(rng=ranges_st, back=st.integers(-1, 10), prev=st.booleans(), nodelete=st.booleans())
    def watch(self, rng: tuple[bytes, bytes], back: int, prev: bool, nodelete: bool) -> None:
        start = 0 if back < 0 else max(self.rev - back, 1)
        filters = (WatchFilter.NODELETE,) if nodelete else ()
        stream = self.hub.open_stream()
        stream.create(
            WatchCreateRequest(rng[0], rng[1], start_revision=start, prev_kv=prev, filters=filters)
        )
        spec = WatchSpec(rng[0], start if start else self.rev + 1, rng[1], filters, prev)
        self.watches.append(WatchRecord(stream, spec))

    @precondition(lambda self: bool(self.watches))
    @rule(data=st.data(), batch=st.integers(1, 3))
    def pull(self, data: st.DataObject, batch: int) -> None:
        rec = data.draw(st.sampled_from(self.watches))
        rec.responses.extend(rec.stream.pull(batch))

    @rule()
    def snapshot_roundtrip(self) -> None:
        copy = Store.restore(self.store.serialize())
        assert copy.hash_kv() == self.store.hash_kv()
        assert copy.revision == self.rev

    # ------------------------------------------------------------ checks

    @invariant()
    def consistent(self) -> None:
        assert self.store.revision == self.rev
        self.store.check_invariants()
        self.hub.check_invariants()

    def teardown(self) -> None:
        for rec in self.watches:
            while rec.stream.pending():
                rec.responses.extend(rec.stream.pull(100))
            result = check_watch(
                self.writes,
                rec.spec,
                rec.responses,
                compact_revision=self.compact_rev,
                complete_through=self.rev,
            )
            assert result.ok, (rec.spec, result.violations)


TestStoreMachine = StoreMachine.TestCase
