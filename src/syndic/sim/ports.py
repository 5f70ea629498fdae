"""The simulator's side of the member runtime's ports (``syndic.member.ports``).

A member runtime sends through a :class:`SimPeers` (the simulated network)
and finishes a client's request through a :class:`ClientCompletion`, which
turns what the runtime returns into the client model's reply, as the
server's gRPC layer turns a future's result into a response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from syndic.kv.messages import TxnResponse
from syndic.raft import Message
from syndic.server.backend import ServerError
from syndic.sim.workload import Request, RequestKind

if TYPE_CHECKING:
    from syndic.member.runtime import MemberRuntime
    from syndic.sim.cluster import Member


class ClusterPort(Protocol):
    """What the adapters need from the simulated cluster."""

    def send(self, messages: tuple[Message, ...] | list[Message]) -> None: ...

    def forward(self, from_id: int, to_id: int, proposals: list[bytes]) -> bool: ...

    def forward_renewals(
        self, from_id: int, to_id: int, batch_id: int, lease_ids: list[int]
    ) -> bool: ...

    def answer_renewals(
        self,
        from_id: int,
        to_id: int,
        batch_id: int,
        ttls: tuple[int, ...],
        error: tuple[str, str] | None,
    ) -> None: ...

    def answer_read(self, member: Member, request: Request) -> None: ...

    def reply_ok(
        self,
        member: Member,
        request: Request,
        *,
        value: str | None = None,
        succeeded: bool | None = None,
    ) -> None: ...

    def refuse(self, request: Request, leader_hint: int) -> None: ...

    def hint(self, member: Member) -> int: ...


def refused(error: BaseException) -> bool:
    """Whether a server error means the request was definitely not executed
    (the client is told REFUSED): not proposed for want of a leader, dropped,
    or refused at admission. A timeout leaves the outcome unknown; the client
    finds out by its own timeout."""
    if not isinstance(error, ServerError):
        return False
    return (
        error.code in ("RESOURCE_EXHAUSTED", "INVALID_ARGUMENT")
        or error.message == "etcdserver: no leader"
        or error.message.startswith("etcdserver: proposal dropped")
    )


class SimPeers:
    """A member's PeerPort: the simulated network."""

    __slots__ = ("_cluster", "_node_id")

    def __init__(self, cluster: ClusterPort, node_id: int) -> None:
        self._cluster = cluster
        self._node_id = node_id

    def send(self, messages: tuple[Message, ...] | list[Message]) -> None:
        if messages:  # many Readys send nothing
            self._cluster.send(messages)

    def forward_proposals(self, to_id: int, proposals: list[bytes]) -> bool:
        return self._cluster.forward(self._node_id, to_id, proposals)

    def forward_renewals(self, to_id: int, batch_id: int, lease_ids: list[int]) -> bool:
        return self._cluster.forward_renewals(self._node_id, to_id, batch_id, lease_ids)


class ClientCompletion:
    """A client's request waiting on a member: the reply it earns."""

    __slots__ = ("_cluster", "_finished", "_member", "_request")

    def __init__(self, cluster: ClusterPort, member: Member, request: Request) -> None:
        self._cluster = cluster
        self._member = member
        self._request = request
        self._finished = False

    def done(self) -> bool:
        return self._finished

    def set_result(self, result: object, /) -> None:
        self._finished = True
        request = self._request
        if request.kind is RequestKind.READ:
            self._cluster.answer_read(self._member, request)
            return
        succeeded = None
        if request.kind is RequestKind.CAS:
            succeeded = isinstance(result, TxnResponse) and result.succeeded
        elif request.kind is RequestKind.KEEP_ALIVE:
            # The lease's TTL from the leader; -1: it does not know the lease.
            succeeded = isinstance(result, int) and result >= 0
        self._cluster.reply_ok(self._member, request, succeeded=succeeded)

    def set_exception(self, exception: BaseException, /) -> None:
        self._finished = True
        if refused(exception):
            self._cluster.refuse(self._request, self._cluster.hint(self._member))


class RenewalsReply:
    """A leader's answer to a follower's forwarded keep-alives, sent back
    over the network as the server answers its peer request."""

    __slots__ = ("_batch_id", "_cluster", "_finished", "_follower_id", "_leader_id")

    def __init__(self, cluster: ClusterPort, leader_id: int, follower_id: int, batch_id: int):
        self._cluster = cluster
        self._leader_id = leader_id
        self._follower_id = follower_id
        self._batch_id = batch_id
        self._finished = False

    def done(self) -> bool:
        return self._finished

    def set_result(self, result: object, /) -> None:
        self._finished = True
        ttls = tuple(result) if isinstance(result, list) else ()
        self._cluster.answer_renewals(
            self._leader_id, self._follower_id, self._batch_id, ttls, None
        )

    def set_exception(self, exception: BaseException, /) -> None:
        self._finished = True
        if isinstance(exception, ServerError):
            error = (exception.code, exception.message)
        else:
            error = ("UNKNOWN", str(exception))
        self._cluster.answer_renewals(self._leader_id, self._follower_id, self._batch_id, (), error)


class RevokeCompletion:
    """A leader's revoke of an expired lease: done once applied or failed."""

    __slots__ = ("_finished", "_lease_id", "_runtime")

    def __init__(self, runtime: MemberRuntime, lease_id: int) -> None:
        self._runtime = runtime
        self._lease_id = lease_id
        self._finished = False

    def done(self) -> bool:
        return self._finished

    def set_result(self, result: object, /) -> None:
        self._finished = True
        self._runtime.leases.revoke_done(self._lease_id)

    def set_exception(self, exception: BaseException, /) -> None:
        self.set_result(None)
