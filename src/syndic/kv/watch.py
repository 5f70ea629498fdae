"""Watch hub: etcd's watch semantics over the store's applied revisions, sans-IO.

The store tells the hub about every new revision (``on_revision``) and every
compaction (``on_compact``); the runtime opens one :class:`WatchStream` per
gRPC Watch stream, forwards create/cancel/progress requests to it and takes
the responses with :meth:`WatchStream.pull` whenever the client can accept
more. Nothing here blocks: a slow stream only fills its own buffers.

Guarantees (etcd's, https://etcd.io/docs/v3.5/learning/api_guarantees/#watch-apis):
  * ordered by revision, unique (no revision twice), atomic (all events of
    one revision in one response), reliable (no gap in the watched range),
    resumable (a new watch from last revision + 1 continues exactly), and
    bookmarkable (a progress response at revision R promises that every
    event <= R was already delivered).

Flow control. Each watcher has a bounded buffer (``buffer_events_max``,
``buffer_bytes_max``). A *synced* watcher gets each new revision's events as
they are applied; if they do not fit it becomes *unsynced* and, on later
``pull`` calls, catches up from the store's history in batches of at most
``catch_up_revisions_max`` revisions until it reaches the head and is synced
again (etcd: watchableStore victims/unsynced). If the history it still needs
is compacted first it is cancelled with ``compact_revision``; if it falls
more than ``lag_revisions_max`` revisions behind it is cancelled with a
reason, so one stuck client cannot pin unbounded work.

Example::

    hub = WatchHub(store)
    stream = hub.open_stream()
    wid = stream.create(WatchCreateRequest(key=b"/svc/", range_end=prefix_end(b"/svc/")))
    store.put(PutRequest(key=b"/svc/a", value=b"1"))
    stream.pull(16)  # [created response, response with the PUT event]
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final

from syndic.kv.errors import EmptyKeyError, InvalidArgumentError, WatchError
from syndic.kv.messages import (
    INT64_MAX,
    Event,
    EventType,
    WatchFilter,
    _check_bool,
    _check_bytes,
    _check_int64,
)
from syndic.kv.mvcc import VALUE, Change, Record, Store, to_kv

# etcd: AutoWatchID; ids are assigned per stream from 0 upwards.
AUTO_WATCH_ID: Final = 0
# Per-watcher buffer: etcd keeps 128 responses per stream channel; bounding
# events and bytes per watcher keeps one noisy prefix from starving others.
BUFFER_EVENTS_MAX_DEFAULT: Final = 1024
BUFFER_BYTES_MAX_DEFAULT: Final = 4 * 1024 * 1024
# etcd: watchBatchMaxRevs — revisions replayed per catch-up batch.
CATCH_UP_REVISIONS_MAX_DEFAULT: Final = 1000
# A watcher further behind than this is cancelled rather than replayed.
LAG_REVISIONS_MAX_DEFAULT: Final = 1_000_000
# Catch-up batches one watcher may scan in one pull while they yield nothing
# (a narrow watcher far behind a busy keyspace), bounding the work per call.
CATCH_UP_BATCHES_PER_PULL_MAX: Final = 16
# Watchers one stream may hold (etcd has no limit; a hostile client could
# otherwise grow the hub without bound).
WATCHERS_PER_STREAM_MAX_DEFAULT: Final = 10_000
# Bytes charged per event on top of key and values (protobuf framing).
EVENT_OVERHEAD_BYTES: Final = 32


@dataclass(frozen=True, slots=True)
class WatchConfig:
    buffer_events_max: int = BUFFER_EVENTS_MAX_DEFAULT
    buffer_bytes_max: int = BUFFER_BYTES_MAX_DEFAULT
    catch_up_revisions_max: int = CATCH_UP_REVISIONS_MAX_DEFAULT
    lag_revisions_max: int = LAG_REVISIONS_MAX_DEFAULT
    watchers_per_stream_max: int = WATCHERS_PER_STREAM_MAX_DEFAULT

    def __post_init__(self) -> None:
        for name in (
            "buffer_events_max",
            "buffer_bytes_max",
            "catch_up_revisions_max",
            "lag_revisions_max",
            "watchers_per_stream_max",
        ):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise InvalidArgumentError(f"WatchConfig.{name} must be a positive int")


@dataclass(frozen=True, slots=True)
class WatchCreateRequest:
    """etcdserverpb.WatchCreateRequest. ``start_revision`` 0 = from the next revision."""

    key: bytes
    range_end: bytes = b""
    start_revision: int = 0
    progress_notify: bool = False
    filters: tuple[WatchFilter, ...] = ()
    prev_kv: bool = False
    watch_id: int = AUTO_WATCH_ID

    def __post_init__(self) -> None:
        _check_bytes("key", self.key)
        _check_bytes("range_end", self.range_end)
        _check_int64("start_revision", self.start_revision)
        _check_int64("watch_id", self.watch_id)
        _check_bool("progress_notify", self.progress_notify)
        _check_bool("prev_kv", self.prev_kv)
        if self.start_revision < 0:
            raise InvalidArgumentError(f"start_revision {self.start_revision} < 0")
        if self.watch_id < 0:
            raise InvalidArgumentError(f"watch_id {self.watch_id} < 0")
        if type(self.filters) not in (tuple, list) or len(self.filters) > 2:
            raise InvalidArgumentError("filters must be a tuple of at most 2 WatchFilter")
        try:
            object.__setattr__(self, "filters", tuple(WatchFilter(f) for f in self.filters))
        except (ValueError, TypeError):
            raise InvalidArgumentError(f"bad watch filter in {self.filters!r:.40}") from None


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """etcdserverpb.WatchResponse; ``revision`` goes to the header."""

    watch_id: int
    revision: int
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    events: tuple[Event, ...] = ()

    @property
    def is_progress_notify(self) -> bool:
        # clientv3: a response with no events that is neither created nor canceled.
        return not self.events and not self.created and not self.canceled


def _event_bytes(ev: Event) -> int:
    size = len(ev.kv.key) + len(ev.kv.value) + EVENT_OVERHEAD_BYTES
    if ev.prev_kv is not None:
        size += len(ev.prev_kv.key) + len(ev.prev_kv.value)
    return size


class Watcher:
    """One watch: its range, filters and position in the history."""

    __slots__ = (
        "buffer",
        "buffer_bytes",
        "buffer_events",
        "canceled",
        "key",
        "next_rev",
        "nodelete",
        "noput",
        "prev_kv",
        "progress_notify",
        "range_end",
        "seq",
        "sizes",
        "stream",
        "synced",
        "watch_id",
    )

    def __init__(
        self, stream: WatchStream, watch_id: int, req: WatchCreateRequest, seq: int
    ) -> None:
        self.stream = stream
        self.watch_id = watch_id
        self.seq = seq
        self.key = req.key
        self.range_end = req.range_end
        self.prev_kv = req.prev_kv
        self.progress_notify = req.progress_notify
        self.noput = WatchFilter.NOPUT in req.filters
        self.nodelete = WatchFilter.NODELETE in req.filters
        # First revision whose events have not been queued yet.
        self.next_rev = 0
        self.synced = False
        self.canceled = False
        self.buffer: deque[WatchResponse] = deque()
        # The size charged for each buffered response, in the same order, so
        # taking one does not add up its events again.
        self.sizes: deque[int] = deque()
        self.buffer_events = 0
        self.buffer_bytes = 0

    def matches(self, key: bytes) -> bool:
        end = self.range_end
        if not end:
            return key == self.key
        if end == b"\0":
            return key >= self.key
        return self.key <= key < end

    def has_room(self, events: int, size_bytes: int, config: WatchConfig) -> bool:
        # An empty buffer always takes one response: a single revision may be
        # larger than the bound and must not be split (atomicity).
        if not self.buffer_events:
            return True
        return (
            self.buffer_events + events <= config.buffer_events_max
            and self.buffer_bytes + size_bytes <= config.buffer_bytes_max
        )

    def push(self, resp: WatchResponse, size_bytes: int) -> None:
        self.buffer.append(resp)
        self.sizes.append(size_bytes)
        self.buffer_events += len(resp.events)
        self.buffer_bytes += size_bytes
        stream = self.stream
        if not stream.notified:
            stream.notified = True
            stream.hub._notified[stream.stream_id] = stream


class WatchHub:
    """Every watcher of one store; fed by the store, drained by streams."""

    def __init__(self, store: Store, config: WatchConfig | None = None) -> None:
        self.store = store
        self.config = config if config is not None else WatchConfig()
        self._streams: dict[int, WatchStream] = {}
        self._next_stream_id = 1
        self._next_seq = 0
        # Synced watchers: single-key ones by key, range ones in a dict (ordered by seq).
        self._synced_keys: dict[bytes, dict[int, Watcher]] = {}
        self._synced_ranges: dict[int, Watcher] = {}
        self._unsynced: dict[int, Watcher] = {}
        # Streams given responses since the last take_notified(), by id: the
        # runtime wakes those alone, not every open stream, after a write.
        self._notified: dict[int, WatchStream] = {}
        store.add_observer(self)

    def open_stream(self) -> WatchStream:
        stream = WatchStream(self, self._next_stream_id)
        self._streams[stream.stream_id] = stream
        self._next_stream_id += 1
        return stream

    def take_notified(self) -> list[WatchStream]:
        """Streams given responses (or closed) since the last call, each once.

        A stream's consumer still pulls until ``pending()`` is zero; this only
        says which streams changed, so a write watched by a few of many
        streams wakes those few.
        """
        streams = list(self._notified.values())
        self._notified.clear()
        for stream in streams:
            stream.notified = False
        return streams

    def close(self) -> None:
        """Detach from the store; every stream is closed."""
        for stream in list(self._streams.values()):
            stream.close()
        self.store.remove_observer(self)

    # ------------------------------------------------------------ indexes

    def _add_synced(self, w: Watcher) -> None:
        w.synced = True
        self._unsynced.pop(w.seq, None)
        if w.range_end:
            self._synced_ranges[w.seq] = w
        else:
            self._synced_keys.setdefault(w.key, {})[w.seq] = w

    def _remove_synced(self, w: Watcher) -> None:
        if not w.synced:
            return
        w.synced = False
        if w.range_end:
            self._synced_ranges.pop(w.seq, None)
        else:
            group = self._synced_keys.get(w.key)
            if group is not None:
                group.pop(w.seq, None)
                if not group:
                    del self._synced_keys[w.key]

    def _make_unsynced(self, w: Watcher, next_rev: int) -> None:
        self._remove_synced(w)
        w.next_rev = next_rev
        self._unsynced[w.seq] = w

    def _cancel(self, w: Watcher, reason: str, compact_revision: int = 0) -> None:
        self._remove_synced(w)
        self._unsynced.pop(w.seq, None)
        w.canceled = True
        w.push(
            WatchResponse(
                watch_id=w.watch_id,
                revision=self.store.revision,
                canceled=True,
                compact_revision=compact_revision,
                cancel_reason=reason,
            ),
            0,
        )

    # ---------------------------------------------------- store callbacks

    def on_revision(self, revision: int, changes: list[Change]) -> None:
        """Fan the changes of one applied revision out to synced watchers."""
        hits: dict[int, tuple[Watcher, list[Change]]] = {}
        ranges = self._synced_ranges.values()
        for change in changes:
            key = change[0]
            group = self._synced_keys.get(key)
            if group:
                for w in group.values():
                    hits.setdefault(w.seq, (w, []))[1].append(change)
            for w in ranges:
                if w.matches(key):
                    hits.setdefault(w.seq, (w, []))[1].append(change)
        config = self.config
        # Watchers of the same change share its Event (built once per key and
        # prev_kv choice): a thousand watchers of one key cost one KeyValue.
        shared: dict[tuple[bytes, bool], Event] = {}
        # Watchers of one key with the same options share their whole events
        # tuple and its size: a thousand watchers of a key cost one of each.
        alike: dict[tuple[int, bool, bool, bool], tuple[tuple[Event, ...], int]] = {}
        # And those with the same watch id (ids are per stream and small: most
        # streams hold watch 0) share one response, which is immutable.
        responses: dict[tuple[int, int], WatchResponse] = {}
        for seq in sorted(hits):
            w, matched = hits[seq]
            if revision < w.next_rev:
                continue  # a future start revision not reached yet
            like = (id(matched[0]), w.prev_kv, w.noput, w.nodelete) if len(matched) == 1 else None
            got = alike.get(like) if like is not None else None
            if got is None:
                events = tuple(
                    ev
                    for ev in (self._event(w, k, rec, prev, shared) for k, rec, prev in matched)
                    if ev
                )
                got = (events, sum(_event_bytes(ev) for ev in events))
                if like is not None:
                    alike[like] = got
            events, size = got
            if not events:
                continue
            if w.has_room(len(events), size, config):
                # id(events) stays unique meanwhile: the response holds the tuple.
                alike_response = (id(events), w.watch_id)
                resp = responses.get(alike_response)
                if resp is None:
                    resp = WatchResponse(w.watch_id, revision, events=events)
                    responses[alike_response] = resp
                w.push(resp, size)
                w.next_rev = revision + 1
            else:
                self._make_unsynced(w, revision)
        if self._unsynced:
            lag_max = config.lag_revisions_max
            for w in list(self._unsynced.values()):
                if revision - w.next_rev > lag_max:
                    self._cancel(w, f"watcher fell more than {lag_max} revisions behind")

    def on_compact(self, compact_revision: int) -> None:
        for w in list(self._unsynced.values()):
            if w.next_rev < compact_revision:
                self._cancel(
                    w, "required revision has been compacted", compact_revision=compact_revision
                )

    @staticmethod
    def _event(
        w: Watcher,
        key: bytes,
        rec: Record,
        prev: Record | None,
        shared: dict[tuple[bytes, bool], Event] | None = None,
    ) -> Event | None:
        if rec[VALUE] is None:
            if w.nodelete:
                return None
            kind = EventType.DELETE
        else:
            if w.noput:
                return None
            kind = EventType.PUT
        with_prev = w.prev_kv and prev is not None and prev[VALUE] is not None
        if shared is not None:
            event = shared.get((key, with_prev))
            if event is not None:
                return event
        prev_kv = to_kv(key, prev) if with_prev and prev is not None else None
        event = Event(kind, to_kv(key, rec), prev_kv)
        if shared is not None:
            shared[(key, with_prev)] = event
        return event

    # ----------------------------------------------------------- catch-up

    def _catch_up(self, w: Watcher) -> None:
        """Replay one bounded batch of history into an unsynced watcher's buffer."""
        store = self.store
        current = store.revision
        compact = store.compact_revision
        if w.next_rev < compact:
            self._cancel(w, "required revision has been compacted", compact_revision=compact)
            return
        config = self.config
        last = min(current, w.next_rev + config.catch_up_revisions_max - 1)
        events: list[Event] = []
        size = 0
        rev = w.next_rev
        while rev <= last:
            batch: list[Event] = []
            for key in store.log_keys(rev):
                if not w.matches(key):
                    continue
                rec = store.record_of(key, rev)
                assert rec is not None and rec[0] == rev
                prev = store.record_of(key, rev - 1)
                ev = self._event(w, key, rec, prev)
                if ev is not None:
                    batch.append(ev)
            if batch:
                batch_size = sum(_event_bytes(ev) for ev in batch)
                # Whole revisions only: stop before one that would overflow,
                # unless nothing is queued yet (progress over strict bounds).
                total_events = w.buffer_events + len(events) + len(batch)
                total_bytes = w.buffer_bytes + size + batch_size
                if (events or w.buffer_events) and (
                    total_events > config.buffer_events_max or total_bytes > config.buffer_bytes_max
                ):
                    break
                events.extend(batch)
                size += batch_size
            rev += 1
        if events:
            w.push(WatchResponse(w.watch_id, current, events=tuple(events)), size)
        w.next_rev = rev
        if rev > current:
            self._add_synced(w)

    # -------------------------------------------------------------- misc

    def progress_notify(self) -> None:
        """Periodic progress for synced watchers created with ``progress_notify``."""
        for stream in self._streams.values():
            for w in stream._watchers.values():
                if w.progress_notify and w.synced and not w.buffer:
                    stream._queue_progress(w)

    def oldest_buffered_revision(self, prefix: bytes) -> int | None:
        """The lowest revision of events still buffered for a watcher whose key
        starts with ``prefix`` (not yet taken by its stream); None if none."""
        oldest: int | None = None
        for stream in self._streams.values():
            for w in stream._watchers.values():
                if not w.key.startswith(prefix):
                    continue
                # A watcher's buffer is in revision order: its first response
                # with events is its oldest.
                first = next((resp.revision for resp in w.buffer if resp.events), None)
                if first is not None and (oldest is None or first < oldest):
                    oldest = first
        return oldest

    def check_invariants(self) -> None:
        current = self.store.revision
        for stream_id, stream in self._notified.items():
            assert stream.notified and self._streams.get(stream_id) is stream
        for stream in self._streams.values():
            assert stream.notified == (stream.stream_id in self._notified)
            for w in stream._watchers.values():
                assert w.buffer_events == sum(len(r.events) for r in w.buffer)
                assert len(w.sizes) == len(w.buffer) and w.buffer_bytes == sum(w.sizes)
                event_responses = sum(1 for r in w.buffer if r.events)
                # Only a lone (unsplittable) revision may exceed the bound.
                assert w.buffer_events <= self.config.buffer_events_max or event_responses == 1
                if w.canceled:
                    assert not w.synced and w.seq not in self._unsynced
                elif w.synced:
                    assert w.seq not in self._unsynced
                else:
                    assert self._unsynced.get(w.seq) is w
                    assert w.next_rev <= current + 1


class WatchStream:
    """One client watch stream: its watchers and their pending responses."""

    def __init__(self, hub: WatchHub, stream_id: int) -> None:
        self.hub = hub
        self.stream_id = stream_id
        self._watchers: dict[int, Watcher] = {}
        self._next_id = AUTO_WATCH_ID
        self.closed = False
        # In the hub's notified set (see WatchHub.take_notified).
        self.notified = False

    def create(self, req: WatchCreateRequest) -> int:
        """Add a watcher; its ``created`` response is the first one pulled. Returns its id."""
        if self.closed:
            raise WatchError("stream is closed")
        if not req.key:
            raise EmptyKeyError("watch key")
        hub = self.hub
        if len(self._watchers) >= hub.config.watchers_per_stream_max:
            raise WatchError(f"stream holds {hub.config.watchers_per_stream_max} watchers")
        if req.watch_id == AUTO_WATCH_ID:
            while self._next_id in self._watchers:
                self._next_id += 1
            watch_id = self._next_id
            self._next_id += 1
        elif req.watch_id in self._watchers:
            raise WatchError(
                f"watch id {req.watch_id} already exists"
            )  # etcd: ErrWatcherDuplicateID
        else:
            watch_id = req.watch_id
        if watch_id > INT64_MAX:
            raise WatchError("watch ids exhausted")
        w = Watcher(self, watch_id, req, hub._next_seq)
        hub._next_seq += 1
        self._watchers[watch_id] = w
        store = hub.store
        current = store.revision
        w.push(WatchResponse(watch_id, current, created=True), 0)
        start = req.start_revision
        if start == 0 or start > current:
            w.next_rev = max(current + 1, start)
            hub._add_synced(w)
        else:
            hub._make_unsynced(w, start)
            if start < store.compact_revision:
                hub._cancel(
                    w,
                    "required revision has been compacted",
                    compact_revision=store.compact_revision,
                )
        return watch_id

    def cancel(self, watch_id: int) -> None:
        """Cancel a watcher; pending events are dropped and a canceled response is queued."""
        w = self._watchers.get(watch_id)
        if w is None or w.canceled:
            raise WatchError(f"no active watch id {watch_id}")
        w.buffer.clear()
        w.sizes.clear()
        w.buffer_events = 0
        w.buffer_bytes = 0
        self.hub._cancel(w, "")

    def request_progress(self) -> None:
        """etcd RequestProgress: a progress response to every synced watcher of the stream."""
        for w in self._watchers.values():
            if w.synced:
                self._queue_progress(w)

    def _queue_progress(self, w: Watcher) -> None:
        revision = self.hub.store.revision
        if w.buffer:
            last = w.buffer[-1]
            if last.is_progress_notify and last.revision == revision:
                return  # repeated requests collapse: the buffer stays bounded
        w.push(WatchResponse(w.watch_id, revision), 0)

    def pull(self, max_responses: int) -> list[WatchResponse]:
        """Take up to ``max_responses`` pending responses (per watcher in order; watchers by id).

        Unsynced watchers catch up from history here, one bounded batch each.
        """
        if type(max_responses) is not int or max_responses <= 0:
            raise InvalidArgumentError(
                f"max_responses must be a positive int, got {max_responses!r:.20}"
            )
        hub = self.hub
        out: list[WatchResponse] = []
        for w in list(self._watchers.values()):
            if len(out) >= max_responses:
                break
            self._take(w, out, max_responses)
            # Replay history while it yields nothing for this watcher, but scan
            # at most CATCH_UP_BATCHES_PER_PULL_MAX batches per call.
            for _ in range(CATCH_UP_BATCHES_PER_PULL_MAX):
                if w.canceled or w.synced or w.buffer or len(out) >= max_responses:
                    break
                hub._catch_up(w)
                self._take(w, out, max_responses)
        return out

    def _take(self, w: Watcher, out: list[WatchResponse], max_responses: int) -> None:
        while w.buffer and len(out) < max_responses:
            resp = w.buffer.popleft()
            w.buffer_events -= len(resp.events)
            w.buffer_bytes -= w.sizes.popleft()
            out.append(resp)
            if resp.canceled:
                del self._watchers[w.watch_id]

    def pending(self) -> int:
        """Responses queued, plus one per watcher still replaying history.

        Zero means ``pull`` has nothing to give until the store changes; a
        ``pull`` that returns nothing while this is non-zero made progress.
        """
        # A plain loop: this runs after every delivery to every stream.
        count = 0
        for w in self._watchers.values():
            count += len(w.buffer)
            if not w.synced and not w.canceled:
                count += 1
        return count

    def watcher(self, watch_id: int) -> Watcher:
        w = self._watchers.get(watch_id)
        if w is None:
            raise WatchError(f"no watch id {watch_id}")
        return w

    def close(self) -> None:
        hub = self.hub
        for w in self._watchers.values():
            hub._remove_synced(w)
            hub._unsynced.pop(w.seq, None)
        self._watchers.clear()
        self.closed = True
        hub._streams.pop(self.stream_id, None)
        hub._notified.pop(self.stream_id, None)
        self.notified = False
