"""Simulated clients: the store's request types against random members.

Register clients issue Put, compare-and-set Txn, DeleteRange, linearizable
and serializable Range, and now and then a Compact; lease clients grant a
lease, attach a key to it, keep it alive for a while and then revoke it or
let it expire. Each client has at most one operation outstanding, as in
Jepsen: it picks a member (the last leader it heard of, or any member), sends
the request, and waits for the reply or its timeout. A lost reply or a
timeout leaves the operation's outcome unknown; a definite refusal ("not
leader", "dropped") means it never took effect and it is left out of the
history. Values written are unique, so the linearizability checker can tell
every write apart. Serializable reads may be stale by design (etcd), so they
are only checked to return a value some client wrote.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from syndic.check.linearizability import Operation, OpKind
from syndic.frozen import fast_frozen_init

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
    # Shares of the remaining writes that are deletes, of reads that are
    # serializable, and of register operations that are a Compact instead.
    delete_ratio: float = 0.1
    serializable_ratio: float = 0.2
    compact_ratio: float = 0.02
    # Lease clients, their lease TTL (the simulator's floor: 1 s), how many
    # keep-alives each sends before stopping, and the share that revoke
    # their lease instead of letting it expire.
    lease_clients: int = 2
    lease_ttl_s: int = 1
    keep_alives_max: int = 3
    keep_alive_interval_ms: int = 300
    revoke_ratio: float = 0.3
    # Watch clients (each one watch over the register keys from revision 1,
    # resumed across members) and how often each pulls its responses.
    watchers: int = 2
    watch_pull_interval_ms: int = 25
    think_ms_max: int = 20
    timeout_ms: int = 400
    request_delay_ms_max: int = 3
    reply_loss_rate: float = 0.03
    leader_affinity: float = 0.7

    def __post_init__(self) -> None:
        if self.clients < 1 or self.keys < 1:
            raise ValueError("need at least one client and one key")
        for name in (
            "read_ratio",
            "cas_ratio",
            "reply_loss_rate",
            "leader_affinity",
            "delete_ratio",
            "serializable_ratio",
            "compact_ratio",
            "revoke_ratio",
        ):
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


class RequestKind(enum.Enum):
    READ = "read"  # linearizable Range (ReadIndex)
    SERIAL_READ = "serial-read"  # serializable Range, served from local state
    WRITE = "write"  # Put
    CAS = "cas"  # Txn: compare the value (or absence), put on success
    DELETE = "delete"  # DeleteRange of one key
    COMPACT = "compact"  # Compaction at a recent revision
    LEASE_GRANT = "lease-grant"
    LEASE_PUT = "lease-put"  # Put attached to the client's lease
    KEEP_ALIVE = "keep-alive"  # renewed in the leader's memory, no log entry
    LEASE_REVOKE = "lease-revoke"


# Kinds that go through the log as an entry (the others are reads or keep-alives).
LOGGED_KINDS = frozenset(
    {
        RequestKind.WRITE,
        RequestKind.CAS,
        RequestKind.DELETE,
        RequestKind.COMPACT,
        RequestKind.LEASE_GRANT,
        RequestKind.LEASE_PUT,
        RequestKind.LEASE_REVOKE,
    }
)
_HISTORY_KINDS = {
    RequestKind.READ: OpKind.READ,
    RequestKind.WRITE: OpKind.WRITE,
    RequestKind.CAS: OpKind.CAS,
    RequestKind.DELETE: OpKind.DELETE,
}


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Request:
    request_id: str
    client_id: int
    kind: RequestKind
    key: str
    value: str | None
    expected: str | None
    invoke_time: int
    invoke_ms: int
    lease_id: int = 0
    ttl_s: int = 0
    revision: int = 0  # a compaction's target


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Reply:
    request_id: str
    status: ReplyStatus
    value: str | None = None  # a read's result
    succeeded: bool | None = None  # a cas's result; False for a refused keep-alive
    leader_hint: int = 0
    revision: int = 0  # the store's revision when answered


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
    revision_seen: int = 0
    # Lease clients: the lease they hold (0: none yet) and keep-alives sent.
    is_lease_client: bool = False
    lease_id: int = 0
    lease_step: int = 0


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
        self._clients += [
            _Client(config.clients + i + 1, is_lease_client=True)
            for i in range(config.lease_clients)
        ]
        self._keys = [f"k{i}" for i in range(config.keys)]
        self.history: list[Operation] = []
        # Serializable reads: (key, value) pairs, each must name a written value.
        self.serializable_reads: list[tuple[str, str | None]] = []
        self.leases_granted = 0
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
        delay = self._think_ms(client)
        self._clock.schedule(delay, lambda: self._invoke(client), "client")

    def _invoke(self, client: _Client) -> None:
        if not self.active or client.outstanding is not None:
            return
        client.seq += 1
        rid = f"c{client.client_id}-{client.seq}"
        if client.is_lease_client:
            req = self._lease_request(client, rid)
        else:
            req = self._register_request(client, rid)
        if req is None:
            return
        cfg = self.config
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

    def _request(
        self, client: _Client, rid: str, kind: RequestKind, key: str = "", **kw: Any
    ) -> Request:
        return Request(
            rid,
            client.client_id,
            kind,
            key,
            kw.pop("value", None),
            kw.pop("expected", None),
            self._now(),
            self._clock.now_ms,
            **kw,
        )

    def _register_request(self, client: _Client, rid: str) -> Request:
        cfg = self.config
        key = self._rng.choice(self._keys)
        draw = self._rng.random()
        if draw < cfg.compact_ratio and client.revision_seen > 1:
            # A compaction a little behind the newest revision this client saw.
            revision = max(1, client.revision_seen - self._rng.randint(0, 5))
            return self._request(client, rid, RequestKind.COMPACT, revision=revision)
        draw = self._rng.random()
        if draw < cfg.read_ratio:
            serial = self._rng.random() < cfg.serializable_ratio
            kind = RequestKind.SERIAL_READ if serial else RequestKind.READ
            return self._request(client, rid, kind, key)
        if draw < cfg.read_ratio + cfg.cas_ratio:
            return self._request(
                client, rid, RequestKind.CAS, key, value=rid, expected=client.seen.get(key)
            )
        if self._rng.random() < cfg.delete_ratio:
            return self._request(client, rid, RequestKind.DELETE, key)
        return self._request(client, rid, RequestKind.WRITE, key, value=rid)

    def _lease_request(self, client: _Client, rid: str) -> Request | None:
        """grant -> put a key on it -> keep-alives -> revoke or let it expire -> again."""
        cfg = self.config
        if client.lease_id == 0:
            # Ids are chosen by the client (etcd allows it), unique per run.
            self.leases_granted += 1
            lease_id = client.client_id << 32 | self.leases_granted
            return self._request(
                client, rid, RequestKind.LEASE_GRANT, lease_id=lease_id, ttl_s=cfg.lease_ttl_s
            )
        if client.lease_step == 0:
            key = f"lease-{client.lease_id:x}"
            return self._request(
                client, rid, RequestKind.LEASE_PUT, key, value=rid, lease_id=client.lease_id
            )
        if client.lease_step <= cfg.keep_alives_max:
            return self._request(client, rid, RequestKind.KEEP_ALIVE, lease_id=client.lease_id)
        lease_id = client.lease_id
        client.lease_id = 0
        client.lease_step = 0
        if self._rng.random() < cfg.revoke_ratio:
            return self._request(client, rid, RequestKind.LEASE_REVOKE, lease_id=lease_id)
        return self._lease_request(client, rid)  # let it expire; start a new one

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
            client.revision_seen = max(client.revision_seen, reply.revision)
            self._on_ok(client, request, reply, now)
            if (
                request.kind in LOGGED_KINDS
                and self.progress_since_ms is not None
                and request.invoke_ms >= self.progress_since_ms
            ):
                self.progress_made = True
        if self.active:
            self._schedule_next(client)

    def _on_ok(self, client: _Client, request: Request, reply: Reply, now: int) -> None:
        kind = request.kind
        if kind in _HISTORY_KINDS:
            op = self._record(request, now, reply)
            self._trace(f"c{client.client_id} {op.describe()}")
        else:
            self._trace(f"c{client.client_id} {request.request_id} {kind.value} ok")
        if kind is RequestKind.READ:
            client.seen[request.key] = reply.value
        elif kind is RequestKind.SERIAL_READ:
            self.serializable_reads.append((request.key, reply.value))
        elif kind is RequestKind.DELETE:
            client.seen[request.key] = None
        elif kind is RequestKind.WRITE or (kind is RequestKind.CAS and reply.succeeded):
            client.seen[request.key] = request.value
        elif kind is RequestKind.LEASE_GRANT:
            client.lease_id = request.lease_id
            client.lease_step = 0
        elif kind is RequestKind.LEASE_PUT:
            client.lease_step = 1
        elif kind is RequestKind.KEEP_ALIVE:
            if reply.succeeded is False:  # expired or unknown: start over
                client.lease_id = 0
                client.lease_step = 0
            else:
                client.lease_step += 1

    def _think_ms(self, client: _Client) -> int:
        if client.is_lease_client and client.lease_step >= 1:
            return self.config.keep_alive_interval_ms
        return self._rng.randint(0, self.config.think_ms_max)

    def _timeout(self, client: _Client, request: Request) -> None:
        if client.outstanding is not request:
            return
        client.outstanding = None
        client.leader_hint = 0
        self.stats.unknown += 1
        if client.is_lease_client and request.kind is RequestKind.LEASE_GRANT:
            client.lease_id = 0  # it may exist; a fresh one is simpler than guessing
        if request.kind in _HISTORY_KINDS and request.kind is not RequestKind.READ:
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
            if request.kind in _HISTORY_KINDS and request.kind is not RequestKind.READ:
                self._record(request, None, None)

    def _record(self, request: Request, return_time: int | None, reply: Reply | None) -> Operation:
        kind = _HISTORY_KINDS[request.kind]
        op = Operation(
            op_id=len(self.history) + 1,
            client_id=request.client_id,
            kind=kind,
            key=request.key,
            invoke_time=request.invoke_time,
            return_time=return_time,
            value=reply.value if kind is OpKind.READ and reply else request.value,
            expected=request.expected,
            succeeded=reply.succeeded if reply is not None and kind is OpKind.CAS else None,
        )
        self.history.append(op)
        return op
