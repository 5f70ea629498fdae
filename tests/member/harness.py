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
    """Messages and forwarded proposals waiting to be delivered."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.forwarded: list[tuple[int, list[bytes]]] = []
        self.forwarding_works = True

    def send(self, messages: tuple[Message, ...] | list[Message]) -> None:
        self.messages.extend(messages)

    def forward_proposals(self, to_id: int, proposals: list[bytes]) -> bool:
        if not self.forwarding_works:
            return False
        self.forwarded.append((to_id, list(proposals)))
        return True


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
                self.net,
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
            if not busy:
                return
        raise AssertionError("the cluster never went quiet")

    def elect(self, member_id: int) -> MemberRuntime:
        self.members[member_id].raft.campaign()
        self.cycle()
        leader = self.members[member_id]
        assert leader.is_leader
        return leader
