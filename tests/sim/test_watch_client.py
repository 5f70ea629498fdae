"""The simulator's watch client: what it holds a watch to at the end of a run."""

from __future__ import annotations

import random

from syndic.kv.messages import PutRequest
from syndic.kv.mvcc import Store
from syndic.kv.watch import WatchHub, WatchResponse
from syndic.sim.clock import VirtualClock
from syndic.sim.watchers import RevisionLog, WatchClient, WatchHandle, open_watch


class _OneMember:
    """A member whose hub can be replaced (as a restart or a snapshot does)."""

    def __init__(self) -> None:
        self.log = RevisionLog()
        self.generation = 0
        self.replace_store()

    def replace_store(self) -> None:
        self.store = Store()
        self.store.add_observer(self.log)
        self.hub = WatchHub(self.store)
        self.generation += 1

    def put(self, value: bytes) -> None:
        self.store.put(PutRequest(key=b"k0", value=value))

    def watch_open(self, node_id: int, start_revision: int) -> WatchHandle | None:
        stream = self.hub.open_stream()
        open_watch(stream, start_revision)
        return WatchHandle(node_id, self.generation, stream, self.store.compact_revision)

    def watch_pull(self, handle: WatchHandle) -> list[WatchResponse] | None:
        if handle.hub_generation != self.generation:
            return None
        return handle.stream.pull(64)

    def revision_of(self, node_id: int) -> int | None:
        return self.store.revision


def _client(member: _OneMember) -> WatchClient:
    return WatchClient(1, random.Random(1), VirtualClock(), member, [1], 10, lambda _: None)


def test_a_watch_on_a_replaced_hub_is_checked_through_what_it_received() -> None:
    # The member's state is replaced after the watcher's last pull, and the
    # new state holds revisions the old hub never saw: the stale stream has
    # nothing pending, but must not be held to those revisions.
    member = _OneMember()
    watcher = _client(member)
    member.put(b"a")
    watcher.pull()
    assert watcher.last_revision == 2
    member.replace_store()
    for value in (b"a", b"b", b"c"):
        member.put(value)  # the new store reaches revision 4
    watcher.drain()
    assert watcher.handle is None
    assert watcher.check(member.log) is None


def test_a_live_watch_is_held_to_every_revision_its_member_applied() -> None:
    member = _OneMember()
    watcher = _client(member)
    member.put(b"a")
    watcher.pull()
    member.put(b"b")
    watcher.drain()
    assert watcher.last_revision == 3
    assert watcher.check(member.log) is None
    # A response lost on the way is a gap the check reports.
    watcher.responses.pop()
    assert "revision 3 never delivered" in (watcher.check(member.log) or "")
