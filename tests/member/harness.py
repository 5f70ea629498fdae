"""A synchronous driver for member runtimes in tests: no disk (every Ready is
taken as durable at once), a network that delivers when told, a clock the
test moves."""

from __future__ import annotations

import random
from typing import Any

from syndic.kv.mvcc import StoreConfig
from syndic.member.proposals import ProposalLimits
from syndic.member.runtime import MemberRuntime, RuntimeLimits
from syndic.raft import ConfState, Message, RaftConfig, RaftNode
from syndic.server.backend import ServerError
from syndic.server.state_machine import StateMachine


class Done:
    """A completion that records its outcome."""

    def __init__(self) -> None:
        self.finished = False
        self.result: Any = None
        self.error: BaseException | None = None

    def done(self) -> bool:
        return self.finished

    def set_result(self, result: Any, /) -> None:
        assert not self.finished, "a completion is finished once"
        self.finished, self.result = True, result

    def set_exception(self, exception: BaseException, /) -> None:
        assert not self.finished, "a completion is finished once"
        self.finished, self.error = True, exception


class Net:
    """Messages, forwarded proposals and forwarded keep-alives waiting to be
    delivered."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.forwarded: list[tuple[int, list[bytes]]] = []
        self.forwarding_works = True
        # (from, to, batch id, lease ids) of forwarded keep-alives.
        self.renewals: list[tuple[int, int, int, list[int]]] = []

    def send(self, messages: tuple[Message, ...] | list[Message]) -> None:
        self.messages.extend(messages)

    def forward_proposals(self, to_id: int, proposals: list[bytes]) -> bool:
        if not self.forwarding_works:
            return False
        self.forwarded.append((to_id, list(proposals)))
        return True


class Port:
    """One member's PeerPort on the shared :class:`Net`."""

    def __init__(self, net: Net, member_id: int) -> None:
        self.net = net
        self.member_id = member_id

    def send(self, messages: tuple[Message, ...] | list[Message]) -> None:
        self.net.send(messages)

    def forward_proposals(self, to_id: int, proposals: list[bytes]) -> bool:
        return self.net.forward_proposals(to_id, proposals)

    def forward_renewals(self, to_id: int, batch_id: int, lease_ids: list[int]) -> bool:
        if not self.net.forwarding_works:
            return False
        self.net.renewals.append((self.member_id, to_id, batch_id, list(lease_ids)))
        return True


class RenewalAnswer(Done):
    """The leader's answer to a forwarded batch, handed to the follower."""

    def __init__(self, follower: MemberRuntime, batch_id: int) -> None:
        super().__init__()
        self.follower = follower
        self.batch_id = batch_id

    def set_result(self, result: Any, /) -> None:
        super().set_result(result)
        self.follower.renewals_answered(self.batch_id, result)

    def set_exception(self, exception: BaseException, /) -> None:
        super().set_exception(exception)
        assert isinstance(exception, ServerError)
        self.follower.renewals_refused(self.batch_id, exception)


class Cluster:
    def __init__(self, size: int, limits: RuntimeLimits | None = None) -> None:
        self.now_ms = 0
        self.net = Net()
        ids = list(range(1, size + 1))
        self.members: dict[int, MemberRuntime] = {}
        for i in ids:
            raft = RaftNode(
                RaftConfig(node_id=i), ConfState(voters=frozenset(ids)), random.Random(i), None
            )
            state = StateMachine(StoreConfig(lease_ttl_s_min=1), {}, clock_ms=lambda: self.now_ms)
            state.store.lease_demote()
            self.members[i] = MemberRuntime(
                i,
                raft,
                state,
                Port(self.net, i),
                lambda: self.now_ms,
                limits or RuntimeLimits(proposals=ProposalLimits()),
                0,
            )

    def cycle(self) -> None:
        """Run every member's Ready loop and deliver what they sent, until quiet."""
        for _ in range(1000):
            busy = False
            for rt in self.members.values():
                rt.flush()
                while rt.raft.has_ready():
                    busy = True
                    ready = rt.raft.ready()
                    rt.begin(ready)
                    rt.finish(ready)
            messages, self.net.messages = self.net.messages, []
            for msg in messages:
                busy = True
                self.members[msg.to_id].step([msg])
            forwarded, self.net.forwarded = self.net.forwarded, []
            for to_id, datas in forwarded:
                busy = True
                self.members[to_id].propose_forwarded(datas)
            renewals, self.net.renewals = self.net.renewals, []
            for from_id, to_id, batch_id, lease_ids in renewals:
                busy = True
                self.deliver_renewals(from_id, to_id, batch_id, lease_ids)
            if not busy:
                return
        raise AssertionError("the cluster never went quiet")

    def deliver_renewals(
        self, from_id: int, to_id: int, batch_id: int, lease_ids: list[int]
    ) -> None:
        """The leader renews a forwarded batch; its answer goes straight back."""
        answer = RenewalAnswer(self.members[from_id], batch_id)
        try:
            self.members[to_id].renew_forwarded(lease_ids, answer)
        except ServerError as exc:
            answer.set_exception(exc)

    def elect(self, member_id: int) -> MemberRuntime:
        self.members[member_id].raft.campaign()
        self.cycle()
        leader = self.members[member_id]
        assert leader.is_leader
        return leader
