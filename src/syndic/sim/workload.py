"""Simulated clients: concurrent reads, writes and cas against random members.

Each client has at most one operation outstanding, as in Jepsen: it picks a
member (the last leader it heard of, or any member), sends the request, and
waits for the reply or its timeout. A lost reply or a timeout leaves the
operation's outcome unknown; a definite refusal ("not leader", "dropped")
means it never took effect and it is left out of the history. Values written
are unique, so the linearizability checker can tell every write apart.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from syndic.check.linearizability import Operation, OpKind

if TYPE_CHECKING:
    import random

    from syndic.sim.clock import VirtualClock


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """Client behaviour; times in virtual ms.

    ``leader_affinity`` is the share of requests sent to the last leader a client
    heard of; the rest go to a random member, which exercises forwarding,
    refusals and (with the stale-read bug) deposed leaders.
    """

    clients: int = 5
    keys: int = 3
    read_ratio: float = 0.4
    cas_ratio: float = 0.2
    think_ms_max: int = 20
    timeout_ms: int = 400
    request_delay_ms_max: int = 3
    reply_loss_rate: float = 0.03
    leader_affinity: float = 0.7

    def __post_init__(self) -> None:
        if self.clients < 1 or self.keys < 1:
            raise ValueError("need at least one client and one key")
        for name in ("read_ratio", "cas_ratio", "reply_loss_rate", "leader_affinity"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate}")
        if self.read_ratio + self.cas_ratio > 1.0:
            raise ValueError("read_ratio + cas_ratio must be <= 1")
        if self.timeout_ms < 1 or self.think_ms_max < 0 or self.request_delay_ms_max < 0:
            raise ValueError("timeouts and delays must be non-negative (timeout >= 1)")


class ReplyStatus(enum.Enum):
    OK = "ok"  # done; for a cas, ``succeeded`` says which way
    REFUSED = "refused"  # definitely not executed (not leader, dropped)


@dataclass(frozen=True, slots=True)
class Request:
    request_id: str
    client_id: int
    kind: OpKind
    key: str
    value: str | None
    expected: str | None
    invoke_time: int
    invoke_ms: int


@dataclass(frozen=True, slots=True)
class Reply:
    request_id: str
    status: ReplyStatus
    value: str | None = None  # a read's result
    succeeded: bool | None = None  # a cas's result
    leader_hint: int = 0


@dataclass(slots=True)
class WorkloadStats:
    invoked: int = 0
    ok: int = 0
    refused: int = 0
    unknown: int = 0
    replies_lost: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class _Client:
    client_id: int
    seq: int = 0
    outstanding: Request | None = None
    leader_hint: int = 0
    seen: dict[str, str | None] = field(default_factory=dict)


class Workload:
    """Drives the clients; ``send(member_id, request)`` hands a request to the cluster."""

    def __init__(
        self,
        rng: random.Random,
        clock: VirtualClock,
        config: WorkloadConfig,
        member_ids: list[int],
        send: Callable[[int, Request], None],
        trace: Callable[[str], None],
    ) -> None:
        self._rng = rng
        self._clock = clock
        self.config = config
        self._members = member_ids
        self._send = send
        self._trace = trace
        self._clients = [_Client(i + 1) for i in range(config.clients)]
        self._keys = [f"k{i}" for i in range(config.keys)]
        self.history: list[Operation] = []
        self.stats = WorkloadStats()
        self.active = False
        self.reply_loss_rate = config.reply_loss_rate
        # Writes (and cas) invoked at or after this time that got a definite reply:
        # the liveness phase waits for one.
        self.progress_since_ms: int | None = None
        self.progress_made = False

    def start(self) -> None:
        self.active = True
        for client in self._clients:
            self._schedule_next(client)

    def stop(self) -> None:
        self.active = False

    def _now(self) -> int:
        # The event counter orders every event of the run totally, so it is a
        # finer clock for the history than virtual milliseconds.
        return self._clock.events_run

    def _schedule_next(self, client: _Client) -> None:
        delay = self._rng.randint(0, self.config.think_ms_max)
        self._clock.schedule(delay, lambda: self._invoke(client), "client")

    def _invoke(self, client: _Client) -> None:
        if not self.active or client.outstanding is not None:
            return
        cfg = self.config
        client.seq += 1
        key = self._rng.choice(self._keys)
        draw = self._rng.random()
        rid = f"c{client.client_id}-{client.seq}"
        if draw < cfg.read_ratio:
            req = Request(
                rid, client.client_id, OpKind.READ, key, None, None, self._now(), self._clock.now_ms
            )
        elif draw < cfg.read_ratio + cfg.cas_ratio:
            expected = client.seen.get(key)
            req = Request(
                rid,
                client.client_id,
                OpKind.CAS,
                key,
                rid,
                expected,
                self._now(),
                self._clock.now_ms,
            )
        else:
            req = Request(
                rid, client.client_id, OpKind.WRITE, key, rid, None, self._now(), self._clock.now_ms
            )
        client.outstanding = req
        self.stats.invoked += 1
        self.stats.by_kind[req.kind.value] = self.stats.by_kind.get(req.kind.value, 0) + 1
        if client.leader_hint and self._rng.random() < cfg.leader_affinity:
            target = client.leader_hint
        else:
            target = self._rng.choice(self._members)
        delay = self._rng.randint(0, cfg.request_delay_ms_max)
        self._clock.schedule(delay, lambda: self._send(target, req), "request")
        self._clock.schedule(cfg.timeout_ms, lambda: self._timeout(client, req), "timeout")

    def reply(self, reply: Reply, request: Request) -> None:
        """A member answers; the reply may be lost on its way back."""
        if self._rng.random() < self.reply_loss_rate:
            self.stats.replies_lost += 1
            return
        delay = self._rng.randint(0, self.config.request_delay_ms_max)
        self._clock.schedule(delay, lambda: self._receive(reply, request), "reply")

    def _receive(self, reply: Reply, request: Request) -> None:
        client = self._clients[request.client_id - 1]
        if client.outstanding is not request:
            return  # a late reply to a request already given up on
        client.outstanding = None
        if reply.leader_hint:
            client.leader_hint = reply.leader_hint
        now = self._now()
        if reply.status is ReplyStatus.REFUSED:
            self.stats.refused += 1
            self._trace(f"c{client.client_id} {request.request_id} refused")
        else:
            self.stats.ok += 1
            op = self._record(request, now, reply)
            self._trace(f"c{client.client_id} {op.describe()}")
            if request.kind is OpKind.READ:
                client.seen[request.key] = reply.value
            elif request.kind is OpKind.WRITE or reply.succeeded:
                client.seen[request.key] = request.value
            if (
                request.kind is not OpKind.READ
                and self.progress_since_ms is not None
                and request.invoke_ms >= self.progress_since_ms
            ):
                self.progress_made = True
        if self.active:
            self._schedule_next(client)

    def _timeout(self, client: _Client, request: Request) -> None:
        if client.outstanding is not request:
            return
        client.outstanding = None
        client.leader_hint = 0
        self.stats.unknown += 1
        if request.kind is not OpKind.READ:
            op = self._record(request, None, None)
            self._trace(f"c{client.client_id} {op.describe()}")
        if self.active:
            self._schedule_next(client)

    def finish(self) -> None:
        """End of run: whatever is still outstanding has an unknown outcome."""
        self.active = False
        for client in self._clients:
            request = client.outstanding
            if request is None:
                continue
            client.outstanding = None
            self.stats.unknown += 1
            if request.kind is not OpKind.READ:
                self._record(request, None, None)

    def _record(self, request: Request, return_time: int | None, reply: Reply | None) -> Operation:
        op = Operation(
            op_id=len(self.history) + 1,
            client_id=request.client_id,
            kind=request.kind,
            key=request.key,
            invoke_time=request.invoke_time,
            return_time=return_time,
            value=reply.value if request.kind is OpKind.READ and reply else request.value,
            expected=request.expected,
            succeeded=reply.succeeded if reply is not None else None,
        )
        self.history.append(op)
        return op
