"""Checker of etcd's watch guarantees for one watcher.

Given every write the store committed (revision, key, type, value) and the
responses one watcher received, it verifies (etcd API guarantees, "Watch APIs"):

* **ordered** — events arrive in revision order (and, inside a revision, in
  the order they were written);
* **unique** — no revision is delivered twice, nothing after a cancel;
* **atomic** — the events of one revision are never split across responses;
* **reliable** — no event of the watched range is skipped between the start
  revision and the last revision delivered or bookmarked; a cancellation for
  compaction is only allowed when the next needed revision was compacted;
* **bookmarkable** — a progress response at revision R means every event
  <= R was already delivered;
* **correct** — every delivered event is a real write in the watched range
  that passes the filters, with the right value, create_revision, version,
  and (when asked for) the right prev_kv.

A resumed watch (a new watch from last revision + 1) is checked by passing
the concatenated responses with the original spec: the result must be the
same as one uninterrupted watch.

Example::

    result = check_watch(writes, WatchSpec(key=b"a", start_revision=2), responses)
    assert result.ok, result.violations
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from syndic.frozen import fast_frozen_init
from syndic.kv.messages import EventType, KeyValue, WatchFilter
from syndic.kv.watch import WatchResponse

# A history longer than this is refused: the checker keeps per-revision state.
WRITES_MAX = 5_000_000


class WatchHistoryError(ValueError):
    """The write history is malformed (revisions going backwards, delete of a missing key)."""


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class WriteEvent:
    """One committed change: a PUT (with its value) or a DELETE of ``key`` at ``revision``."""

    revision: int
    key: bytes
    type: EventType
    value: bytes = b""
    lease: int = 0


@dataclass(frozen=True, slots=True)
class WatchSpec:
    """What the watcher asked for. ``start_revision`` is the first revision it may see
    (for a watch created with 0, pass the store's revision at creation + 1)."""

    key: bytes
    start_revision: int
    range_end: bytes = b""
    filters: tuple[WatchFilter, ...] = ()
    prev_kv: bool = False

    def matches(self, key: bytes) -> bool:
        if not self.range_end:
            return key == self.key
        if self.range_end == b"\0":
            return key >= self.key
        return self.key <= key < self.range_end


@dataclass(frozen=True, slots=True)
class Violation:
    guarantee: str
    revision: int
    detail: str


@dataclass(frozen=True, slots=True)
class WatchCheckResult:
    violations: tuple[Violation, ...]
    delivered_through: int

    @property
    def ok(self) -> bool:
        return not self.violations


def _expected(
    writes: Sequence[WriteEvent], spec: WatchSpec
) -> dict[int, list[tuple[EventType, KeyValue, KeyValue | None]]]:
    """Per revision, the events the watcher must receive, with their kv and prev kv."""
    if len(writes) > WRITES_MAX:
        raise WatchHistoryError(f"{len(writes)} writes > {WRITES_MAX}")
    live: dict[bytes, KeyValue] = {}
    expected: dict[int, list[tuple[EventType, KeyValue, KeyValue | None]]] = {}
    last_rev = 0
    noput = WatchFilter.NOPUT in spec.filters
    nodelete = WatchFilter.NODELETE in spec.filters
    for w in writes:
        if w.revision < last_rev:
            raise WatchHistoryError(f"write revision {w.revision} after {last_rev}")
        last_rev = w.revision
        prev = live.get(w.key)
        if w.type is EventType.PUT:
            kv = KeyValue(
                w.key,
                prev.create_revision if prev else w.revision,
                w.revision,
                prev.version + 1 if prev else 1,
                w.value,
                w.lease,
            )
            live[w.key] = kv
            wanted = not noput
        else:
            if prev is None:
                raise WatchHistoryError(f"delete of missing key {w.key!r:.40} at {w.revision}")
            kv = KeyValue(w.key, mod_revision=w.revision)
            del live[w.key]
            wanted = not nodelete
        if wanted and spec.matches(w.key) and w.revision >= spec.start_revision:
            expected.setdefault(w.revision, []).append((w.type, kv, prev))
    return expected


def check_watch(
    writes: Sequence[WriteEvent],
    spec: WatchSpec,
    responses: Iterable[WatchResponse],
    *,
    compact_revision: int = -1,
    complete_through: int | None = None,
) -> WatchCheckResult:
    """Check one watcher's ``responses`` against the committed ``writes``.

    ``compact_revision``: the highest compaction done while the watcher ran;
    a missing prev_kv is allowed only when the previous revision was compacted.
    ``complete_through``: if given (the caller drained everything), every
    expected event up to that revision must have been delivered unless the
    watch was cancelled.
    """
    expected = _expected(writes, spec)
    pending = sorted(expected)  # revisions the watcher still owes, ascending
    cursor = 0  # index into pending of the next revision to deliver
    violations: list[Violation] = []
    last_delivered = spec.start_revision - 1
    canceled = False

    def add(guarantee: str, revision: int, detail: str) -> None:
        violations.append(Violation(guarantee, revision, detail))

    for resp in responses:
        if canceled:
            add("unique", resp.revision, "response after the watch was cancelled")
            continue
        if resp.created:
            continue
        if resp.canceled:
            canceled = True
            if resp.compact_revision and last_delivered + 1 >= resp.compact_revision:
                add(
                    "reliable",
                    resp.compact_revision,
                    f"cancelled for compaction at {resp.compact_revision} but next needed "
                    f"revision {last_delivered + 1} was not compacted",
                )
            continue
        if not resp.events:
            # Progress notification: a bookmark at resp.revision.
            while cursor < len(pending) and pending[cursor] <= resp.revision:
                add(
                    "bookmarkable",
                    pending[cursor],
                    f"progress at {resp.revision} before revision {pending[cursor]} was delivered",
                )
                cursor += 1
            last_delivered = max(last_delivered, resp.revision)
            continue
        by_rev: dict[int, list[tuple[EventType, KeyValue, KeyValue | None]]] = {}
        prev_rev = 0
        for ev in resp.events:
            rev = ev.kv.mod_revision
            if rev < prev_rev:
                add("ordered", rev, f"revision {rev} after {prev_rev} in one response")
            prev_rev = max(prev_rev, rev)
            by_rev.setdefault(rev, []).append((ev.type, ev.kv, ev.prev_kv))
        for rev in sorted(by_rev):
            got = by_rev[rev]
            if rev <= last_delivered:
                add("unique", rev, f"revision {rev} delivered again (last was {last_delivered})")
                continue
            want = expected.get(rev)
            if want is None:
                add("correct", rev, f"revision {rev} has no event this watcher should see")
                last_delivered = rev
                continue
            # Everything owed before rev was skipped.
            while cursor < len(pending) and pending[cursor] < rev:
                add("reliable", pending[cursor], f"revision {pending[cursor]} never delivered")
                cursor += 1
            if cursor < len(pending) and pending[cursor] == rev:
                cursor += 1
            _compare_revision(rev, got, want, spec, compact_revision, add)
            last_delivered = rev
    if complete_through is not None and not canceled:
        while cursor < len(pending) and pending[cursor] <= complete_through:
            add("reliable", pending[cursor], f"revision {pending[cursor]} never delivered")
            cursor += 1
    return WatchCheckResult(tuple(violations), last_delivered)


def _compare_revision(
    rev: int,
    got: list[tuple[EventType, KeyValue, KeyValue | None]],
    want: list[tuple[EventType, KeyValue, KeyValue | None]],
    spec: WatchSpec,
    compact_revision: int,
    add: Callable[[str, int, str], None],
) -> None:
    got_keys = [(t, kv.key) for t, kv, _ in got]
    want_keys = [(t, kv.key) for t, kv, _ in want]
    if got_keys != want_keys:
        if sorted(got_keys) == sorted(want_keys):
            add("ordered", rev, f"events of revision {rev} out of write order")
        elif set(got_keys) < set(want_keys):
            add("atomic", rev, f"revision {rev} delivered partially: {len(got)}/{len(want)}")
        else:
            add("correct", rev, f"revision {rev} events {got_keys!r:.120} != {want_keys!r:.120}")
        return
    for (_, kv, prev), (_, want_kv, want_prev) in zip(got, want, strict=True):
        if kv != want_kv:
            add("correct", rev, f"kv {kv!r:.120} != expected {want_kv!r:.120}")
        if not spec.prev_kv:
            if prev is not None:
                add("correct", rev, f"prev_kv sent for {kv.key!r:.40} without prev_kv option")
            continue
        if prev is None:
            if want_prev is not None and rev - 1 >= compact_revision:
                add("correct", rev, f"prev_kv missing for {kv.key!r:.40}")
        elif prev != want_prev:
            add("correct", rev, f"prev_kv {prev!r:.120} != expected {want_prev!r:.120}")


def writes_from_responses(responses: Iterable[WatchResponse]) -> list[WriteEvent]:
    """The writes seen by a whole-keyspace watcher (to build a history from a real etcd)."""
    out: list[WriteEvent] = []
    for resp in responses:
        for ev in resp.events:
            out.append(WriteEvent(ev.kv.mod_revision, ev.kv.key, ev.type, ev.kv.value, ev.kv.lease))
    return out
