"""Watch hub: etcd's watch semantics, bounded buffers, catch-up and cancellation."""

from __future__ import annotations

import pytest

from syndic.check.watch_guarantees import WatchSpec, WriteEvent, check_watch
from syndic.kv.errors import EmptyKeyError, InvalidArgumentError, WatchError
from syndic.kv.messages import (
    CompactionRequest,
    DeleteRangeRequest,
    Event,
    EventType,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
    WatchFilter,
    prefix_end,
)
from syndic.kv.mvcc import Change, Store
from syndic.kv.watch import WatchConfig, WatchCreateRequest, WatchHub, WatchResponse


class Recorder:
    """Records every committed change as WriteEvents (the checker's input)."""

    def __init__(self, store: Store) -> None:
        self.writes: list[WriteEvent] = []
        store.add_observer(self)

    def on_revision(self, revision: int, changes: list[Change]) -> None:
        for key, rec, _ in changes:
            kind = EventType.DELETE if rec[4] is None else EventType.PUT
            self.writes.append(WriteEvent(revision, key, kind, rec[4] or b"", rec[3]))

    def on_compact(self, compact_revision: int) -> None:
        pass


def drain(stream: object, batch: int = 1000) -> list[WatchResponse]:
    out: list[WatchResponse] = []
    while stream.pending():  # type: ignore[attr-defined]
        out.extend(stream.pull(batch))  # type: ignore[attr-defined]
    return out


def test_created_then_events_with_prev_kv_and_delete_kv() -> None:
    store = Store()
    hub = WatchHub(store)
    stream = hub.open_stream()
    wid = stream.create(WatchCreateRequest(b"a", prev_kv=True))
    store.put(PutRequest(b"a", b"1"))
    store.put(PutRequest(b"b", b"x"))
    store.put(PutRequest(b"a", b"2"))
    store.delete_range(DeleteRangeRequest(b"a"))
    resps = drain(stream)
    assert resps[0].created and resps[0].watch_id == wid and resps[0].revision == 1
    events = [ev for r in resps for ev in r.events]
    assert [(e.type, e.kv.mod_revision) for e in events] == [
        (EventType.PUT, 2),
        (EventType.PUT, 4),
        (EventType.DELETE, 5),
    ]
    assert events[0].prev_kv is None and events[1].prev_kv.value == b"1"  # type: ignore[union-attr]
    assert events[2].kv.value == b"" and events[2].kv.version == 0
    assert events[2].prev_kv.value == b"2"  # type: ignore[union-attr]
    hub.check_invariants()


def test_streams_watching_alike_get_equal_responses_and_options_still_apply() -> None:
    # Watchers with the same id and options on many streams share their
    # responses; one with other options (prev_kv) or another id gets its own.
    store = Store()
    hub = WatchHub(store)
    store.put(PutRequest(b"k", b"0"))
    plain = [hub.open_stream() for _ in range(3)]
    for stream in plain:
        stream.create(WatchCreateRequest(b"k"))
    with_prev = hub.open_stream()
    with_prev.create(WatchCreateRequest(b"k", prev_kv=True))
    other_id = hub.open_stream()
    other_id.create(WatchCreateRequest(b"k", watch_id=7))
    for stream in [*plain, with_prev, other_id]:
        drain(stream)  # the created responses
    store.put(PutRequest(b"k", b"1"))
    got = [drain(stream) for stream in plain]
    assert (
        got[0]
        == got[1]
        == got[2]
        == [
            WatchResponse(
                0, 3, events=(Event(EventType.PUT, store.range(RangeRequest(b"k")).kvs[0]),)
            )
        ]
    )
    [prev_resp] = drain(with_prev)
    assert prev_resp.watch_id == 0 and prev_resp.events[0].prev_kv.value == b"0"  # type: ignore[union-attr]
    [other_resp] = drain(other_id)
    assert other_resp.watch_id == 7 and other_resp.events == got[0][0].events
    hub.check_invariants()


def test_filters_and_txn_events_atomic_in_one_response() -> None:
    store = Store()
    rec = Recorder(store)
    hub = WatchHub(store)
    stream = hub.open_stream()
    stream.create(WatchCreateRequest(b"p/", prefix_end(b"p/"), filters=(WatchFilter.NOPUT,)))
    stream.create(WatchCreateRequest(b"p/", prefix_end(b"p/")))
    store.txn(TxnRequest(success=tuple(PutRequest(b"p/%d" % i, b"v") for i in range(5))))
    store.delete_range(DeleteRangeRequest(b"p/", prefix_end(b"p/")))
    resps = [r for r in drain(stream) if not r.created]
    noput = [r for r in resps if r.watch_id == 0]
    everything = [r for r in resps if r.watch_id == 1]
    assert [len(r.events) for r in noput] == [5]
    assert all(e.type is EventType.DELETE for e in noput[0].events)
    assert [len(r.events) for r in everything] == [5, 5]
    spec = WatchSpec(b"p/", start_revision=2, range_end=prefix_end(b"p/"))
    assert check_watch(rec.writes, spec, everything, complete_through=store.revision).ok


def test_history_start_revision_and_resume_from_last_plus_one() -> None:
    store = Store()
    rec = Recorder(store)
    for i in range(20):
        store.put(PutRequest(b"k%d" % (i % 3), b"%d" % i))
    hub = WatchHub(store)
    stream = hub.open_stream()
    stream.create(WatchCreateRequest(b"k", b"l", start_revision=5))
    first = drain(stream)
    last = max(ev.kv.mod_revision for r in first for ev in r.events)
    assert last == store.revision
    stream.cancel(0)
    drain(stream)
    for i in range(5):
        store.put(PutRequest(b"k1", b"again%d" % i))
    stream.create(WatchCreateRequest(b"k", b"l", start_revision=last + 1))
    second = drain(stream)
    spec = WatchSpec(b"k", start_revision=5, range_end=b"l")
    result = check_watch(rec.writes, spec, first + second, complete_through=store.revision)
    assert result.ok, result.violations


def test_slow_watcher_goes_unsynced_and_catches_up_without_gaps() -> None:
    store = Store()
    rec = Recorder(store)
    config = WatchConfig(buffer_events_max=4, catch_up_revisions_max=3)
    hub = WatchHub(store, config)
    slow = hub.open_stream()
    fast = hub.open_stream()
    slow.create(WatchCreateRequest(b"k", b"\0", prev_kv=True))
    fast.create(WatchCreateRequest(b"k", b"\0"))
    got_fast: list[WatchResponse] = []
    for i in range(40):
        store.put(PutRequest(b"k%d" % (i % 5), b"%d" % i))
        got_fast.extend(fast.pull(100))  # the fast one keeps up
        hub.check_invariants()
    assert not slow.watcher(0).synced
    assert slow.watcher(0).buffer_events <= 4  # bounded while the writer kept going
    got_slow: list[WatchResponse] = []
    while slow.pending():
        batch = slow.pull(2)
        got_slow.extend(batch)
        assert sum(len(r.events) for r in batch) <= 2 * 4
        hub.check_invariants()
    assert slow.watcher(0).synced
    spec = WatchSpec(b"k", start_revision=2, range_end=b"\0")
    assert check_watch(rec.writes, spec, got_fast, complete_through=store.revision).ok
    spec_prev = WatchSpec(b"k", start_revision=2, range_end=b"\0", prev_kv=True)
    result = check_watch(rec.writes, spec_prev, got_slow, complete_through=store.revision)
    assert result.ok, result.violations


def test_unsynced_watcher_cancelled_when_its_history_is_compacted() -> None:
    store = Store()
    hub = WatchHub(store, WatchConfig(buffer_events_max=1))
    stream = hub.open_stream()
    stream.create(WatchCreateRequest(b"k"))
    for i in range(5):
        store.put(PutRequest(b"k", b"%d" % i))
    store.compact(CompactionRequest(store.revision))
    resps = drain(stream)
    assert resps[-1].canceled and resps[-1].compact_revision == store.revision
    # Events queued before the compaction are still delivered, in order, first.
    assert [ev.kv.mod_revision for r in resps for ev in r.events] == [2]
    with pytest.raises(WatchError):
        stream.watcher(0)


def test_watch_from_compacted_revision_is_created_then_cancelled() -> None:
    store = Store()
    for i in range(4):
        store.put(PutRequest(b"k", b"%d" % i))
    store.delete_range(DeleteRangeRequest(b"k"))  # 6
    store.compact(CompactionRequest(6))
    stream = WatchHub(store).open_stream()
    stream.create(WatchCreateRequest(b"k", start_revision=3))
    resps = drain(stream)
    assert resps[0].created and resps[1].canceled and resps[1].compact_revision == 6
    # Starting exactly at the compaction revision is allowed and sees its delete.
    stream.create(WatchCreateRequest(b"k", start_revision=6))
    events = [ev for r in drain(stream) for ev in r.events]
    assert [(e.type, e.kv.mod_revision) for e in events] == [(EventType.DELETE, 6)]


def test_lag_bound_cancels_with_reason() -> None:
    store = Store()
    hub = WatchHub(store, WatchConfig(buffer_events_max=1, lag_revisions_max=10))
    stream = hub.open_stream()
    stream.create(WatchCreateRequest(b"k"))
    for i in range(20):
        store.put(PutRequest(b"k", b"%d" % i))
    resps = drain(stream)
    assert resps[-1].canceled and "revisions behind" in resps[-1].cancel_reason
    assert resps[-1].compact_revision == 0


def test_progress_is_a_bookmark_only_for_synced_watchers() -> None:
    store = Store()
    hub = WatchHub(store, WatchConfig(buffer_events_max=1))
    stream = hub.open_stream()
    stream.create(WatchCreateRequest(b"a", progress_notify=True))
    stream.create(WatchCreateRequest(b"b"))
    store.put(PutRequest(b"a", b"1"))
    store.put(PutRequest(b"a", b"2"))  # watcher 0 overflows -> unsynced
    stream.request_progress()
    stream.request_progress()  # collapses into one
    hub.progress_notify()
    resps = drain(stream)
    progress = [r for r in resps if r.is_progress_notify]
    assert [(r.watch_id, r.revision) for r in progress] == [(1, 3)]
    hub.progress_notify()
    assert [(r.watch_id, r.revision) for r in drain(stream)] == [(0, 3)]


def test_future_start_revision_waits() -> None:
    store = Store()
    stream = WatchHub(store).open_stream()
    stream.create(WatchCreateRequest(b"k", start_revision=4))
    for i in range(4):
        store.put(PutRequest(b"k", b"%d" % i))
    events = [ev for r in drain(stream) for ev in r.events]
    assert [e.kv.mod_revision for e in events] == [4, 5]


def test_lease_revoke_events_in_one_response() -> None:
    store = Store()
    stream = WatchHub(store).open_stream()
    lease = store.lease_grant(LeaseGrantRequest(ttl_s=5), now_ms=0).id
    for k in (b"x1", b"x2", b"x3"):
        store.put(PutRequest(k, b"v", lease=lease))
    stream.create(WatchCreateRequest(b"x", b"y"))
    store.lease_revoke(LeaseRevokeRequest(lease))
    resps = [r for r in drain(stream) if r.events]
    assert len(resps) == 1 and [e.kv.key for e in resps[0].events] == [b"x1", b"x2", b"x3"]


def test_bad_watch_requests() -> None:
    store = Store()
    stream = WatchHub(store, WatchConfig(watchers_per_stream_max=2)).open_stream()
    with pytest.raises(EmptyKeyError):
        stream.create(WatchCreateRequest(b""))
    with pytest.raises(InvalidArgumentError):
        WatchCreateRequest(b"k", start_revision=-1)
    with pytest.raises(InvalidArgumentError):
        WatchCreateRequest(b"k", filters=(7,))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        WatchCreateRequest("k")  # type: ignore[arg-type]
    stream.create(WatchCreateRequest(b"k", watch_id=5))
    with pytest.raises(WatchError):
        stream.create(WatchCreateRequest(b"k", watch_id=5))
    stream.create(WatchCreateRequest(b"k"))
    with pytest.raises(WatchError):
        stream.create(WatchCreateRequest(b"k"))
    with pytest.raises(WatchError):
        stream.cancel(99)
    with pytest.raises(InvalidArgumentError):
        stream.pull(0)


def test_take_notified_names_only_streams_given_responses() -> None:
    store = Store()
    hub = WatchHub(store)
    a, b, idle = hub.open_stream(), hub.open_stream(), hub.open_stream()
    a.create(WatchCreateRequest(key=b"a"))
    b.create(WatchCreateRequest(key=b"b", range_end=b"c"))
    idle.create(WatchCreateRequest(key=b"z"))
    # The created responses were pushed: every stream with a new watcher is named once.
    assert {s.stream_id for s in hub.take_notified()} == {a.stream_id, b.stream_id, idle.stream_id}
    assert hub.take_notified() == []
    for stream in (a, b, idle):
        drain(stream)
    store.put(PutRequest(key=b"a", value=b"1"))
    store.put(PutRequest(key=b"b1", value=b"1"))
    store.put(PutRequest(key=b"q", value=b"1"))  # watched by nobody
    hub.check_invariants()
    assert [s.stream_id for s in hub.take_notified()] == [a.stream_id, b.stream_id]
    hub.check_invariants()
    # Responses not yet pulled do not name a stream again until it is given more.
    store.put(PutRequest(key=b"q", value=b"2"))
    assert hub.take_notified() == []
    store.put(PutRequest(key=b"b2", value=b"1"))
    b.close()  # a closed stream is never named: nobody pulls it
    assert hub.take_notified() == []
    hub.check_invariants()
    assert [len(r.events) for r in drain(a)] == [1]
