"""Watches in the simulator: the committed write history, and clients that
watch a key range from a revision through the members' real watch hubs.

:class:`RevisionLog` observes every member's MVCC store and keeps, per
revision, the changes the first member to apply it made; a member that
applies the same revision differently is a state-machine divergence.

A :class:`WatchClient` opens a watch (``syndic.kv.watch``) on some member
from revision 1, pulls its responses now and then, and when the member
crashes, restarts or installs a snapshot (its hub is gone) resumes on another
member from the last revision it received plus one, as an etcd client
does. The concatenated responses must read as one uninterrupted watch
(:func:`syndic.check.watch_guarantees.check_watch`): ordered, unique, atomic,
reliable (a compaction may only cancel it when the revision it needs next
was compacted), correct.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from syndic.check.raft_invariants import SafetyViolationError
from syndic.check.watch_guarantees import WatchSpec, WriteEvent, check_watch
from syndic.kv.messages import EventType
from syndic.kv.mvcc import LEASE, VALUE, Change
from syndic.kv.watch import WatchCreateRequest, WatchResponse, WatchStream

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from syndic.sim.clock import VirtualClock

# The register keys are k0, k1, ...: the watch covers [k, l).
WATCH_KEY = b"k"
WATCH_RANGE_END = b"l"
# Responses taken per pull; a lagging watcher catches up over several pulls.
PULL_RESPONSES_MAX = 64
# A final drain stops after this many pulls: a watcher that has not caught up
# by then is checked only through what it received.
DRAIN_PULLS_MAX = 1_000


class RevisionLog:
    """The committed history, one entry per revision, as the store observer sees it."""

    __slots__ = ("_by_revision", "compact_revision")

    def __init__(self) -> None:
        self._by_revision: dict[int, tuple[WriteEvent, ...]] = {}
        self.compact_revision = 0

    def on_revision(self, revision: int, changes: list[Change]) -> None:
        events = tuple(
            WriteEvent(revision, key, EventType.DELETE)
            if record[VALUE] is None
            else WriteEvent(revision, key, EventType.PUT, record[VALUE], record[LEASE])
            for key, record, _ in changes
        )
        seen = self._by_revision.setdefault(revision, events)
        if seen != events:
            raise SafetyViolationError(
                "state-machine-divergence",
                f"revision {revision} applied as {events} here, {seen} elsewhere",
            )

    def on_compact(self, compact_revision: int) -> None:
        self.compact_revision = max(self.compact_revision, compact_revision)

    def writes(self) -> list[WriteEvent]:
        return [ev for rev in sorted(self._by_revision) for ev in self._by_revision[rev]]


@dataclass(slots=True)
class WatchHandle:
    """An open watch on one member's hub; dead once the hub it belongs to is."""

    node_id: int
    hub_generation: int
    stream: WatchStream
    compact_seen: int


class WatchPort(Protocol):
    """What a watch client needs from the cluster (``SimCluster`` provides it)."""

    def watch_open(self, node_id: int, start_revision: int) -> WatchHandle | None:
        """A watch on ``node_id`` from ``start_revision``; None if the member is down."""
        ...

    def watch_pull(self, handle: WatchHandle) -> list[WatchResponse] | None:
        """Pending responses; None once the watch's member or hub is gone."""
        ...

    def revision_of(self, node_id: int) -> int | None: ...


class WatchClient:
    """One logical watch from revision 1, resumed across members."""

    def __init__(
        self,
        client_id: int,
        rng: random.Random,
        clock: VirtualClock,
        port: WatchPort,
        member_ids: list[int],
        pull_interval_ms: int,
        trace: Callable[[str], None],
    ) -> None:
        self.client_id = client_id
        self._rng = rng
        self._clock = clock
        self._port = port
        self._members = member_ids
        self._interval_ms = pull_interval_ms
        self._trace = trace
        self.spec = WatchSpec(key=WATCH_KEY, start_revision=1, range_end=WATCH_RANGE_END)
        self.responses: list[WatchResponse] = []
        self.last_revision = 0
        self.handle: WatchHandle | None = None
        self.done = False
        self.resumes = 0
        self.active = False

    def start(self) -> None:
        self.active = True
        self._clock.schedule(self._rng.randint(0, self._interval_ms), self._poll, "watch")

    def stop(self) -> None:
        self.active = False

    def _poll(self) -> None:
        if not self.active or self.done:
            return
        self.pull()
        self._clock.schedule(self._interval_ms, self._poll, "watch")

    def pull(self) -> None:
        if self.handle is None:
            node = self._rng.choice(self._members)
            self.handle = self._port.watch_open(node, self.last_revision + 1)
            if self.handle is None:
                return
            self.resumes += 1
        got = self._port.watch_pull(self.handle)
        if got is None:
            self.handle = None  # the member or its hub is gone: resume elsewhere
            return
        for resp in got:
            self._take(resp)

    def _take(self, resp: WatchResponse) -> None:
        if resp.created:
            if not self.responses:
                self.responses.append(resp)
            return
        if resp.canceled:
            if resp.compact_revision:
                self.responses.append(resp)
                self.done = True
                self._trace(
                    f"w{self.client_id} cancelled: compacted at {resp.compact_revision} "
                    f"(next needed {self.last_revision + 1})"
                )
            self.handle = None  # any other cancel (a slow watcher): resume
            return
        self.responses.append(resp)
        if resp.events:
            self.last_revision = resp.events[-1].kv.mod_revision

    def drain(self) -> None:
        """End of run: take what the open watch still owes (bounded).

        Always pulls once: a watch with nothing pending may belong to a hub
        its member has since replaced (a restart, a snapshot installed), and
        only a pull finds that out (the handle is dropped). Its stream will
        never be given the member's later revisions, so :meth:`check` must
        not hold it to them.
        """
        for _ in range(DRAIN_PULLS_MAX):
            if self.handle is None or self.done:
                return
            self.pull()
            if self.handle is None or not self.handle.stream.pending():
                return

    def check(self, log: RevisionLog) -> str | None:
        """The first broken guarantee, described, or None."""
        complete_through = None
        if self.handle is not None and not self.done and not self.handle.stream.pending():
            complete_through = self._port.revision_of(self.handle.node_id)
        result = check_watch(
            log.writes(),
            self.spec,
            self.responses,
            compact_revision=log.compact_revision,
            complete_through=complete_through,
        )
        if result.ok:
            return None
        first = result.violations[0]
        return f"w{self.client_id} {first.guarantee} at revision {first.revision}: {first.detail}"


def open_watch(stream: WatchStream, start_revision: int) -> None:
    stream.create(
        WatchCreateRequest(key=WATCH_KEY, range_end=WATCH_RANGE_END, start_revision=start_revision)
    )
