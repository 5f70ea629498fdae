"""A member's requests to and from its peers, beside the Raft stream.

Besides Raft frames, a member answers requests on its peer port (one
connection per request, ``syndic.server.peer_codec``): the member table for
a joining member, keep-alives and TimeToLive questions a follower hands to
its leader, and membership changes a follower hands over (etcd forwards
those to the leader too). :class:`PeerRequests` holds both sides: answering
a peer, and asking the leader with a retry while leadership moves.
:class:`RuntimePeers` is the member runtime's :class:`~syndic.member.ports.PeerPort`
on the server: Raft frames and forwarded proposals over the peer transport,
forwarded keep-alives as a peer request whose answer goes back to the runtime.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from syndic.kv.messages import LeaseTimeToLiveRequest, LeaseTimeToLiveResponse
from syndic.member.renewals import RENEWALS_PER_BATCH_MAX
from syndic.raft import Message
from syndic.server import backend as errors
from syndic.server.backend import Member, ServerError
from syndic.server.config import parse_url
from syndic.server.peer_codec import PeerCodecError, encode_cluster_info, encode_member
from syndic.server.transport import PeerRequester, PeerTransport

if TYPE_CHECKING:
    from syndic.member.runtime import MemberRuntime
    from syndic.server.config import ServerConfig
    from syndic.server.state_machine import StateMachine

log = logging.getLogger(__name__)


class RuntimePeers:
    """The runtime's peer port: the transport, and keep-alives for the leader
    handed to ``forward_renewals`` (which asks over a peer request)."""

    __slots__ = ("_forward_renewals", "_transport")

    def __init__(
        self, transport: PeerTransport, forward_renewals: Callable[[int, int, list[int]], bool]
    ) -> None:
        self._transport = transport
        self._forward_renewals = forward_renewals

    def send(self, messages: tuple[Message, ...] | list[Message]) -> None:
        self._transport.send(messages)

    def forward_proposals(self, to_id: int, proposals: list[bytes]) -> bool:
        return self._transport.forward_proposals(to_id, proposals)

    def forward_renewals(self, to_id: int, batch_id: int, lease_ids: list[int]) -> bool:
        return self._forward_renewals(to_id, batch_id, lease_ids)


class PeerRequests:
    """Requests between members over the peer port; mixed into
    :class:`syndic.server.node.MemberNode`, whose driver state it uses."""

    if TYPE_CHECKING:
        # Provided by the member (syndic.server.node and syndic.server.member_api).
        id: int
        cluster_id: int
        config: ServerConfig
        state: StateMachine
        _rt: MemberRuntime
        _leader_requests: PeerRequester
        _renewal_requests: set[asyncio.Task[None]]
        _wake: asyncio.Event

        @property
        def request_timeout_s(self) -> float: ...

        def _is_leader(self) -> bool: ...

        async def _await_leader(self) -> int: ...

        async def _wait_applied(self, index: int) -> None: ...

        def members(self) -> list[Member]: ...

        def _member(self, mid: int) -> Member: ...

        def lease_time_to_live(
            self, request: LeaseTimeToLiveRequest
        ) -> LeaseTimeToLiveResponse: ...

        async def _member_add_here(
            self, peer_urls: tuple[str, ...], is_learner: bool
        ) -> Member: ...

        async def _member_remove_here(self, member_id_: int) -> None: ...

        async def _member_promote_here(self, member_id_: int) -> None: ...

    # ------------------------------------------------------------ asking the leader

    def _forward_renewals(self, to_id: int, batch_id: int, lease_ids: list[int]) -> bool:
        """Hand a batch of keep-alives to the leader ``to_id`` as a peer
        request; its answer (or its failure) goes back to the runtime. False
        when this member knows no address for it."""
        attrs = self.state.members.get(to_id)
        if attrs is None or not attrs.peer_urls:
            return False
        host, port = parse_url(attrs.peer_urls[0], "peer_urls")
        task = asyncio.get_running_loop().create_task(
            self._ask_renewals(host, port, batch_id, lease_ids)
        )
        self._renewal_requests.add(task)
        task.add_done_callback(self._renewal_requests.discard)
        return True

    async def _ask_renewals(
        self, host: str, port: int, batch_id: int, lease_ids: list[int]
    ) -> None:
        rt = self._rt
        try:
            ok, payload = await self._leader_requests.call(
                host, port, "lease_keep_alive", [lease_ids], self.request_timeout_s + 1
            )
        except (OSError, TimeoutError, PeerCodecError) as exc:
            log.info("member %x: leader at %s:%d did not renew: %s", self.id, host, port, exc)
            rt.renewals_refused(batch_id, None)
        else:
            if ok:
                rt.renewals_answered(batch_id, payload if isinstance(payload, list) else [])
            else:
                rt.renewals_refused(batch_id, ServerError(*payload))
        self._wake.set()

    async def _ask_leader(self, op: str, args: list[Any]) -> Any:
        """Hand a membership change to the leader; its answer once this
        member applied the change too."""
        payload = await self._call_leader(op, args)
        if not shaped(payload, object, int):
            raise errors.request_timed_out()
        # Answer only once this member applied the change too, so what the
        # caller reads from it next (the member list) already shows it.
        result, applied = payload
        await self._wait_applied(applied)
        return result

    async def _call_leader(self, op: str, args: list[Any]) -> Any:
        """Hand a request to the leader over its peer port; its answer or its
        error. A leader that cannot be reached, or that is no longer leader,
        may be gone: ask the next one until the request timeout."""
        deadline = time.monotonic() + self.request_timeout_s
        while True:
            leader = self._member(await self._await_leader())
            if leader.id == self.id or not leader.peer_urls:
                raise errors.not_leader()
            host, port = parse_url(leader.peer_urls[0], "peer_urls")
            try:
                ok, payload = await self._leader_requests.call(
                    host, port, op, args, self.request_timeout_s + 1
                )
            except (OSError, TimeoutError, PeerCodecError) as exc:
                log.info("member %x: leader %x did not answer %s: %s", self.id, leader.id, op, exc)
                ok, payload = False, None
            if ok:
                return payload
            stale = payload is None or payload == [*_NOT_LEADER]
            if not stale:
                if not shaped(payload, str, str):
                    raise errors.request_timed_out()
                raise ServerError(*payload)
            if time.monotonic() > deadline:
                raise errors.request_timed_out()
            await asyncio.sleep(self.config.heartbeat_interval_ms / 1000)

    # ------------------------------------------------------------ answering a peer

    async def _on_peer_request(self, op: str, args: list[Any]) -> tuple[bool, Any]:
        """Answer a peer: the member table for a joining member, or a
        membership change a follower handed over (never handed on again),
        with the index this member had applied when it finished."""
        if op == "cluster":
            return True, encode_cluster_info(self.cluster_id, self.members())
        if op.startswith("lease_"):
            return await self._serve_lease_request(op, args)
        ok, result = await self._serve_member_change(op, args)
        return ok, [result, self._rt.raft.applied_index] if ok else result

    async def _serve_lease_request(self, op: str, args: list[Any]) -> tuple[bool, Any]:
        """A follower's keep-alives or TimeToLive, answered by this leader."""
        try:
            if not self._is_leader():
                raise errors.not_leader()
            if op == "lease_keep_alive" and shaped(args, list):
                ids = args[0]
                if len(ids) > RENEWALS_PER_BATCH_MAX or not all(
                    isinstance(i, int) and not isinstance(i, bool) for i in ids
                ):
                    raise ServerError("INVALID_ARGUMENT", "lease_keep_alive: bad lease ids")
                return True, await self._renew_forwarded(ids)
            if op == "lease_time_to_live" and shaped(args, int, bool):
                resp = self.lease_time_to_live(LeaseTimeToLiveRequest(args[0], keys=args[1]))
                return True, [resp.ttl_s, resp.granted_ttl_s, list(resp.keys)]
        except ServerError as exc:
            return False, [exc.code, exc.message]
        return False, ["INVALID_ARGUMENT", f"bad {op} request with {len(args)} args"]

    async def _renew_forwarded(self, lease_ids: list[int]) -> list[int]:
        future: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._rt.renew_forwarded(lease_ids, future)
        # A miss waits for a read barrier, which the node loop runs; the
        # request timeout sweep fails it if it never comes.
        self._wake.set()
        return await future

    async def _serve_member_change(self, op: str, args: list[Any]) -> tuple[bool, Any]:
        try:
            if op == "member_add" and shaped(args, list, bool):
                urls = args[0]
                if not urls or not all(isinstance(u, str) for u in urls):
                    raise ServerError("INVALID_ARGUMENT", "member_add: peer URLs must be strings")
                return True, encode_member(await self._member_add_here(tuple(urls), args[1]))
            if op == "member_remove" and shaped(args, int):
                await self._member_remove_here(args[0])
                return True, None
            if op == "member_promote" and shaped(args, int):
                await self._member_promote_here(args[0])
                return True, None
        except ServerError as exc:
            return False, [exc.code, exc.message]
        return False, ["INVALID_ARGUMENT", f"unknown peer request {op!r} with {len(args)} args"]


_NOT_LEADER = (errors.not_leader().code, errors.not_leader().message)


def shaped(args: list[Any], *types: type) -> bool:
    """``args`` holds exactly one value of each of ``types``, in order."""
    return len(args) == len(types) and all(
        isinstance(a, t) and not (t is int and isinstance(a, bool))
        for a, t in zip(args, types, strict=True)
    )
