"""The Backend a member serves: the calls its gRPC and HTTP servicers make.

Reads and writes, leases, watches, status, membership, maintenance and auth,
as :class:`syndic.server.backend.Backend` names them, each turned into the
member runtime's entry points (a proposal, a ReadIndex round, a keep-alive)
through the driver's futures and wake-up (``syndic.server.node``), or handed
to the leader over the peer port (``syndic.server.peer_requests``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from syndic import __version__
from syndic.kv.errors import LeaseNotFoundError
from syndic.kv.messages import (
    AlarmType,
    HashKVResponse,
    LeaseLeasesResponse,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    RangeRequest,
    RangeResponse,
    TxnRequest,
    TxnResponse,
)
from syndic.member.proposals import TooManyRequestsError
from syndic.raft import ConfChange, ConfChangeType, RaftError
from syndic.server import backend as errors
from syndic.server import reconfig
from syndic.server.auth import AuthStore
from syndic.server.backend import (
    Header,
    Member,
    MemberStatus,
    ServerError,
    txn_is_read_only,
    txn_is_serializable,
)
from syndic.server.config import member_id
from syndic.server.entry_codec import EntryKind
from syndic.server.peer_codec import decode_member
from syndic.server.peer_requests import shaped
from syndic.server.state_machine import MemberAttrs

if TYPE_CHECKING:
    from syndic.kv.watch import WatchHub, WatchStream
    from syndic.member.runtime import MemberRuntime
    from syndic.raft import RaftNode
    from syndic.server.config import ServerConfig
    from syndic.server.metrics import ServerMetrics
    from syndic.server.state_machine import StateMachine
    from syndic.server.transport import PeerTransport

# The API version syndic implements, reported where etcd reports its own
# version (Status, /version): clients gate features on it.
ETCD_API_VERSION = "3.4.0"


class MemberApi:
    """The :class:`~syndic.server.backend.Backend` calls; mixed into
    :class:`syndic.server.node.MemberNode`, whose driver state it uses."""

    if TYPE_CHECKING:
        # Provided by the member (syndic.server.node and syndic.server.peer_requests).
        id: int
        cluster_id: int
        config: ServerConfig
        metrics: ServerMetrics
        state: StateMachine
        hub: WatchHub
        _rt: MemberRuntime
        _transport: PeerTransport
        _wake: asyncio.Event
        _watch_listeners: set[Callable[[], None]]
        _now_ms: Callable[[], int]

        @property
        def raft(self) -> RaftNode: ...

        @property
        def request_timeout_s(self) -> float: ...

        @property
        def _snapshot_index(self) -> int: ...

        def _is_leader(self) -> bool: ...

        async def _await_leader(self) -> int: ...

        async def _propose(self, kind: EntryKind, payload: Any) -> Any:
            """What applying the entry returned; raises it if it is an error."""

        async def _read_barrier(self) -> None: ...

        async def _wait_applied(self, index: int) -> None: ...

        def _refresh_peers(self) -> None: ...

        async def _call_leader(self, op: str, args: list[Any]) -> Any: ...

        async def _ask_leader(self, op: str, args: list[Any]) -> Any: ...

    # ------------------------------------------------------------ reads and writes

    def header(self) -> Header:
        return Header(self.cluster_id, self.id, self.state.store.revision, self.raft.term)

    def write(self, request: object) -> Coroutine[Any, Any, object]:
        # The proposal's own coroutine, not one wrapping it: every write's
        # resumption then passes one frame less.
        return self._propose(EntryKind.STORE, request)

    async def range(self, request: RangeRequest) -> RangeResponse:
        if not request.serializable:
            await self._read_barrier()
        return self.state.store.range(request)

    async def read_txn(self, request: TxnRequest) -> TxnResponse:
        # A write slipped in here would change one member's store alone.
        if not txn_is_read_only(request):
            raise ValueError("read_txn takes a Txn of Range ops alone")
        if not txn_is_serializable(request):
            await self._read_barrier()
        # Nothing to write: the store evaluates it at its current revision
        # and leaves the revision where it was.
        return self.state.store.txn(request)

    # ------------------------------------------------------------ leases
    # Deadlines live in the leader's memory alone (syndic.kv.lease): a
    # keep-alive costs no log entry and no fsync. The runtime renews on the
    # leader and queues a follower's keep-alives for the leader (etcd does
    # the same over HTTP; here the peer port's request path carries them);
    # a follower hands TimeToLive questions to the leader too.

    async def lease_keep_alive(self, lease_id: int) -> int:
        await self._await_leader()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        try:
            self._rt.keep_alive(lease_id, future)
        except TooManyRequestsError as exc:
            self.metrics.too_many_requests.labels(exc.queue).inc()
            raise
        self._wake.set()
        # _sweep_timeouts fails it with "request timed out" past its deadline.
        ttl_s = await future
        if ttl_s < 0:
            raise LeaseNotFoundError(f"id={lease_id}")
        return ttl_s

    async def lease_ttl(self, request: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        if self._is_leader():
            return self.lease_time_to_live(request)
        answer = await self._call_leader("lease_time_to_live", [request.id, request.keys])
        if not shaped(answer, int, int, list) or not all(isinstance(k, bytes) for k in answer[2]):
            raise errors.request_timed_out()
        ttl_s, granted_ttl_s, keys = answer
        return LeaseTimeToLiveResponse(
            revision=self.state.store.revision,
            id=request.id,
            ttl_s=ttl_s,
            granted_ttl_s=granted_ttl_s,
            keys=tuple(keys),
        )

    def lease_time_to_live(self, request: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        return self.state.store.lease_time_to_live(request, self._now_ms())

    def lease_leases(self) -> LeaseLeasesResponse:
        return self.state.store.lease_leases()

    # ------------------------------------------------------------ watches and status

    def open_watch_stream(self) -> WatchStream:
        return self.hub.open_stream()

    def watch_listen(self, wake: Callable[[], None]) -> Callable[[], None]:
        self._watch_listeners.add(wake)
        return lambda: self._watch_listeners.discard(wake)

    def hash_kv(self, revision: int) -> HashKVResponse:
        return self.state.store.hash_kv(revision)

    def status(self) -> MemberStatus:
        store = self.state.store
        return MemberStatus(
            version=ETCD_API_VERSION,
            db_size_bytes=store.size_bytes,
            db_size_in_use_bytes=store.size_bytes,
            leader_id=self._rt.leader_id,
            raft_index=self.raft.commit_index,
            raft_term=self.raft.term,
            raft_applied_index=self.raft.applied_index,
            errors=tuple(f"memberID:{self.id} alarm:{a.name}" for a in store.alarms),
            is_learner=self.id in self.raft.conf_state.learners,
        )

    # ------------------------------------------------------------ membership
    # Membership changes are proposed by the leader, which alone knows which
    # peers it has heard from; a follower hands them over (etcd does too).

    def _member(self, mid: int) -> Member:
        attrs = self.state.members.get(mid, MemberAttrs("", (), ()))
        return Member(
            mid,
            attrs.name,
            attrs.peer_urls,
            attrs.client_urls,
            mid in self.raft.conf_state.learners,
        )

    def members(self) -> list[Member]:
        return [self._member(mid) for mid in sorted(self.raft.conf_state.all_ids())]

    async def _change_membership(self, change: ConfChange) -> None:
        index = self._rt.membership.propose(self.raft, change)
        self._wake.set()
        await self._wait_applied(index)

    def _voters_for_reconfig(self) -> dict[int, reconfig.Voter]:
        """Each voter as the strict reconfiguration check sees it from here."""
        now = time.monotonic()
        connected_for_s = {
            mid: now - peer.connected_since_s
            for mid, peer in self._transport.stats().items()
            if peer.connected
        }
        return self._rt.membership.voters_for_reconfig(
            self.raft.conf_state, self.state.members, connected_for_s
        )

    # Membership changes are proposed by the leader, which alone knows which
    # peers it has heard from; a follower hands them over (etcd does too).

    async def member_add(self, peer_urls: tuple[str, ...], is_learner: bool) -> Member:
        if not self._is_leader():
            return decode_member(
                await self._ask_leader("member_add", [list(peer_urls), is_learner])
            )
        return await self._member_add_here(peer_urls, is_learner)

    async def member_remove(self, member_id_: int) -> None:
        self._require_member(member_id_)
        if self._is_leader():
            await self._member_remove_here(member_id_)
        else:
            await self._ask_leader("member_remove", [member_id_])

    async def member_promote(self, member_id_: int) -> None:
        self._require_member(member_id_)
        if self._is_leader():
            await self._member_promote_here(member_id_)
        else:
            await self._ask_leader("member_promote", [member_id_])

    def _require_member(self, member_id_: int) -> None:
        self._rt.membership.require_member(self.raft.conf_state, member_id_)

    async def member_update(self, member_id_: int, peer_urls: tuple[str, ...]) -> None:
        self._require_member(member_id_)
        attrs = self.state.members.get(member_id_, MemberAttrs("", (), ()))
        await self._propose(
            EntryKind.MEMBER_ATTRS,
            [member_id_, attrs.name, list(peer_urls), list(attrs.client_urls)],
        )

    async def _member_add_here(self, peer_urls: tuple[str, ...], is_learner: bool) -> Member:
        if not self._is_leader():
            raise errors.not_leader()
        reconfig.check_add(self._voters_for_reconfig(), is_learner)
        for mid, attrs in self.state.members.items():
            if set(attrs.peer_urls) & set(peer_urls) and mid in self.raft.conf_state.all_ids():
                raise errors.peer_url_exists()
        new_id = member_id(peer_urls, f"{self.config.initial_cluster_token}:{time.time_ns()}")
        await self._propose(EntryKind.MEMBER_ATTRS, [new_id, "", list(peer_urls), []])
        kind = ConfChangeType.ADD_LEARNER if is_learner else ConfChangeType.ADD_VOTER
        await self._change_membership(ConfChange(kind, new_id))
        self._refresh_peers()
        return self._member(new_id)

    async def _member_remove_here(self, member_id_: int) -> None:
        self._require_member(member_id_)
        if not self._is_leader():
            raise errors.not_leader()
        reconfig.check_remove(self._voters_for_reconfig(), member_id_)
        await self._change_membership(ConfChange(ConfChangeType.REMOVE_NODE, member_id_))

    async def _member_promote_here(self, member_id_: int) -> None:
        self._rt.membership.check_promotable(self.raft, member_id_)
        reconfig.check_promote(self._voters_for_reconfig())
        await self._change_membership(ConfChange(ConfChangeType.ADD_VOTER, member_id_))

    async def move_leader(self, target_id: int) -> None:
        if target_id not in self.raft.conf_state.voters:
            raise errors.member_not_found()
        if not self._is_leader():
            raise errors.not_leader()
        try:
            self.raft.transfer_leadership(target_id)
        except RaftError as exc:
            raise ServerError("FAILED_PRECONDITION", f"etcdserver: {exc}") from exc
        self._wake.set()
        deadline = time.monotonic() + self.request_timeout_s
        while self._rt.leader_id != target_id:
            if time.monotonic() > deadline:
                raise errors.request_timed_out()
            await asyncio.sleep(self.config.heartbeat_interval_ms / 1000)

    # ------------------------------------------------------------ maintenance and auth

    def snapshot_bytes(self) -> bytes:
        return self.state.serialize()

    def alarms(self) -> list[tuple[int, str]]:
        return [(self.id, alarm.name) for alarm in sorted(self.state.store.alarms)]

    async def alarm_disarm(self, alarm: str) -> None:
        await self._propose(EntryKind.ALARM, (False, int(AlarmType[alarm])))

    async def alarm_activate(self, member_id: int, alarm: str) -> None:
        # The store's alarms are cluster-wide, so the member named does not
        # narrow them (etcd raises NOSPACE on every member alike).
        await self._propose(EntryKind.ALARM, (True, int(AlarmType[alarm])))

    def auth_apply(self, op: list[Any]) -> Coroutine[Any, Any, Any]:
        return self._propose(EntryKind.AUTH, op)

    def auth_store(self) -> AuthStore:
        return self.state.auth

    def debug_status(self) -> dict[str, object]:
        """Raft status, members and transport statistics, for ``/debug``."""
        transport = self._transport.stats()
        return {
            "version": __version__,
            "member_id": f"{self.id:x}",
            "name": self.config.name,
            "raft": self.raft.status(),
            "members": [
                {
                    "id": f"{m.id:x}",
                    "name": m.name,
                    "peer_urls": list(m.peer_urls),
                    "client_urls": list(m.client_urls),
                    "is_learner": m.is_learner,
                }
                for m in self.members()
            ],
            "peers": {f"{k:x}": dataclasses.asdict(v) for k, v in transport.items()},
            "pending_proposals": len(self._rt.proposals),
            "pending_reads": len(self._rt.reads),
            "snapshot_index": self._snapshot_index,
        }
