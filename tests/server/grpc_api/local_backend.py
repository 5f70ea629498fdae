"""An in-process Backend for testing the gRPC layer alone.

It stands in for the replicated member: writes are applied directly to a
real ``syndic.kv.mvcc.Store`` and its ``WatchHub``, with no Raft log, no
disk and no peers, so the wire layer's behaviour (conversions, errors,
streams) can be tested without the consensus machinery. Time for leases
comes from an injected millisecond clock, never the wall clock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from syndic.kv.errors import LeaseNotFoundError
from syndic.kv.messages import (
    AlarmType,
    HashKVResponse,
    LeaseKeepAliveRequest,
    LeaseLeasesResponse,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    RangeRequest,
    RangeResponse,
    TxnRequest,
    TxnResponse,
)
from syndic.kv.mvcc import Change, Store, StoreConfig
from syndic.kv.watch import WatchConfig, WatchHub, WatchStream
from syndic.server.auth import WRITE_OP, AuthStore, apply_auth_entry
from syndic.server.backend import (
    Header,
    Member,
    MemberStatus,
    ServerError,
    member_not_found,
    member_not_learner,
    peer_url_exists,
)
from syndic.server.entry_codec import (
    EntryKind,
    WireRequest,
    decode_entry,
    encode_entry,
    store_request,
)
from syndic.server.state_machine import MemberAttrs, StateMachine

CLUSTER_ID = 0x1C1C
MEMBER_ID = 0x8E9E05C52164694D
RAFT_TERM = 2


@dataclass
class FakeClock:
    """Milliseconds, advanced only by the test."""

    now_ms: int = 1_000_000

    def __call__(self) -> int:
        return self.now_ms


@dataclass
class LocalBackend:
    """A single member, applied in place: the Backend protocol without replication."""

    store_config: StoreConfig = field(default_factory=StoreConfig)
    watch_config: WatchConfig = field(default_factory=WatchConfig)
    clock: FakeClock = field(default_factory=FakeClock)
    version: str = "0.1.0"

    def __post_init__(self) -> None:
        self.store = Store(self.store_config)
        self.auth = AuthStore()
        # Every auth operation applied, in order, as the log would carry it.
        self.auth_ops: list[list[Any]] = []
        self.hub = WatchHub(self.store, self.watch_config)
        self._listeners: set[Callable[[], None]] = set()
        self.store.add_observer(self)
        self.writes: list[object] = []
        # The client writes that arrived with their protobuf bytes (their log entry).
        self.wire_writes: list[WireRequest] = []
        self.read_txns: list[TxnRequest] = []
        self._members: dict[int, Member] = {
            MEMBER_ID: Member(
                MEMBER_ID,
                "default",
                ("http://localhost:2380",),
                ("http://127.0.0.1:2379",),
            )
        }
        self._next_member_id = MEMBER_ID + 1

    # StoreObserver: wake every waiting watch sender on any change.
    def on_revision(self, revision: int, changes: list[Change]) -> None:
        self._wake_all()

    def on_compact(self, compact_revision: int) -> None:
        self._wake_all()

    def _wake_all(self) -> None:
        for wake in tuple(self._listeners):
            wake()

    def header(self) -> Header:
        return Header(CLUSTER_ID, MEMBER_ID, self.store.revision, RAFT_TERM)

    async def write(self, request: object) -> object:
        if isinstance(request, WireRequest):
            self.wire_writes.append(request)
        request = store_request(request)
        self.writes.append(request)
        return self.store.apply(request, self.clock())

    async def range(self, request: RangeRequest) -> RangeResponse:
        return self.store.range(request)

    async def read_txn(self, request: TxnRequest) -> TxnResponse:
        self.read_txns.append(request)
        return self.store.txn(request)

    async def lease_keep_alive(self, lease_id: int) -> int:
        resp = self.store.lease_keep_alive(LeaseKeepAliveRequest(lease_id), self.clock())
        return resp.ttl_s

    def lease_time_to_live(self, request: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        return self.store.lease_time_to_live(request, self.clock())

    async def lease_ttl(self, request: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        return self.lease_time_to_live(request)

    def lease_leases(self) -> LeaseLeasesResponse:
        return self.store.lease_leases()

    def open_watch_stream(self) -> WatchStream:
        return self.hub.open_stream()

    def watch_listen(self, wake: Callable[[], None]) -> Callable[[], None]:
        self._listeners.add(wake)
        return lambda: self._listeners.discard(wake)

    def hash_kv(self, revision: int) -> HashKVResponse:
        return self.store.hash_kv(revision)

    def status(self) -> MemberStatus:
        size = self.store.size_bytes
        return MemberStatus(
            version=self.version,
            db_size_bytes=size,
            db_size_in_use_bytes=size,
            leader_id=MEMBER_ID,
            raft_index=len(self.writes) + 1,
            raft_term=RAFT_TERM,
            raft_applied_index=len(self.writes) + 1,
            errors=tuple(f"memberID:{MEMBER_ID} alarm:{a.name}" for a in self.store.alarms),
            is_learner=False,
        )

    def members(self) -> list[Member]:
        return list(self._members.values())

    async def member_add(self, peer_urls: tuple[str, ...], is_learner: bool) -> Member:
        for m in self._members.values():
            if set(m.peer_urls) & set(peer_urls):
                raise peer_url_exists()
        member = Member(self._next_member_id, "", peer_urls, (), is_learner)
        self._next_member_id += 1
        self._members[member.id] = member
        return member

    async def member_remove(self, member_id: int) -> None:
        if self._members.pop(member_id, None) is None:
            raise member_not_found()

    async def member_update(self, member_id: int, peer_urls: tuple[str, ...]) -> None:
        m = self._members.get(member_id)
        if m is None:
            raise member_not_found()
        self._members[member_id] = Member(m.id, m.name, peer_urls, m.client_urls, m.is_learner)

    async def member_promote(self, member_id: int) -> None:
        m = self._members.get(member_id)
        if m is None:
            raise member_not_found()
        if not m.is_learner:
            raise member_not_learner()
        self._members[member_id] = Member(m.id, m.name, m.peer_urls, m.client_urls, False)

    async def move_leader(self, target_id: int) -> None:
        if target_id not in self._members:
            raise ServerError("FAILED_PRECONDITION", "etcdserver: bad leader transferee")

    async def auth_apply(self, op: list[Any]) -> Any:
        # Through the entry codec, as a member's log carries it.
        entry = decode_entry(encode_entry(EntryKind.AUTH, MEMBER_ID, 1, op))
        self.auth_ops.append(op)
        if op and op[0] == WRITE_OP:
            self.writes.append(op[3])
        try:
            return apply_auth_entry(self.auth, self.store, entry.payload, self.clock())
        finally:
            self.auth.check_invariants()

    def auth_store(self) -> AuthStore:
        return self.auth

    def snapshot_bytes(self) -> bytes:
        # A member's state: this store and auth store, and the member table.
        state = StateMachine(self.store_config, {})
        state.store, state.auth = self.store, self.auth
        state.members = {
            m.id: MemberAttrs(m.name, m.peer_urls, m.client_urls) for m in self._members.values()
        }
        return state.serialize()

    def alarms(self) -> list[tuple[int, str]]:
        return [(MEMBER_ID, a.name) for a in sorted(self.store.alarms)]

    async def alarm_activate(self, member_id: int, alarm: str) -> None:
        self.store.alarm_activate(AlarmType[alarm])

    async def alarm_disarm(self, alarm: str) -> None:
        self.store.alarm_deactivate(AlarmType[alarm])


__all__ = ["CLUSTER_ID", "MEMBER_ID", "FakeClock", "LeaseNotFoundError", "LocalBackend"]
