"""A tiny in-memory cluster for Raft tests: perfect storage, a controllable network.

Every Ready is handled in contract order: persist (into a dict per node), send
(queue), apply (a list per node), then advance. Links can be cut, messages are
delivered in the order they were sent, and invariants are checked after each step.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import msgpack

from syndic.raft import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    InvariantError,
    Message,
    MessageType,
    PersistentState,
    RaftConfig,
    RaftNode,
    ReadState,
    Ready,
    Snapshot,
)

# Rounds of (process readies, deliver) before stabilize() gives up: a healthy
# small cluster settles in a few dozen; more means a livelock worth failing on.
STABILIZE_ROUNDS_MAX = 500


@dataclass
class Storage:
    """What a node persisted: exactly what a restart reloads."""

    hard: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def persistent_state(self) -> PersistentState:
        return PersistentState(self.hard, self.snapshot, tuple(self.entries))


def describe_entry(entry: Entry) -> str:
    if entry.type is EntryType.CONF_CHANGE:
        change = ConfChange.decode(entry.data)
        return f"{entry.term}/{entry.index} {change.type.name}({change.node_id})"
    return f"{entry.term}/{entry.index} {entry.data.decode(errors='replace')!r}"


def describe_entries(entries: tuple[Entry, ...]) -> str:
    return "[" + ", ".join(describe_entry(e) for e in entries) + "]"


def describe_conf(conf: ConfState) -> str:
    text = f"voters={sorted(conf.voters)}"
    if conf.learners:
        text += f" learners={sorted(conf.learners)}"
    return text


def describe_message(msg: Message) -> str:
    head = f"{msg.from_id}->{msg.to_id} {msg.type.name} term={msg.term}"
    kind = msg.type
    if kind is MessageType.APPEND:
        tail = f" prev={msg.log_term}/{msg.index} commit={msg.commit}"
        if msg.entries:
            tail += " " + describe_entries(msg.entries)
    elif kind is MessageType.APPEND_RESP:
        if msg.reject:
            tail = f" reject index={msg.index} hint={msg.log_term}/{msg.reject_hint}"
        else:
            tail = f" index={msg.index}"
    elif kind in (MessageType.VOTE, MessageType.PRE_VOTE):
        tail = f" last={msg.log_term}/{msg.index}"
        if msg.context:
            tail += " transfer"
    elif kind in (MessageType.VOTE_RESP, MessageType.PRE_VOTE_RESP):
        tail = " rejected" if msg.reject else " granted"
    elif kind is MessageType.HEARTBEAT:
        tail = f" commit={msg.commit}"
        if msg.context:
            tail += f" read-seq={int.from_bytes(msg.context, 'big')}"
    elif kind is MessageType.HEARTBEAT_RESP:
        tail = f" read-seq={int.from_bytes(msg.context, 'big')}" if msg.context else ""
    elif kind is MessageType.SNAPSHOT:
        assert msg.snapshot is not None
        meta = msg.snapshot.meta
        tail = f" snap={meta.term}/{meta.index} {describe_conf(meta.conf_state)}"
    elif kind in (MessageType.READ_INDEX, MessageType.READ_INDEX_RESP):
        tail = f" index={msg.index} ctx={msg.context!r}" if msg.index else f" ctx={msg.context!r}"
    else:
        tail = ""
    return head + tail


def describe_ready(node_id: int, rd: Ready) -> list[str]:
    parts = []
    if rd.soft_state is not None:
        parts.append(f"role={rd.soft_state.role.name} lead={rd.soft_state.leader_id}")
    if rd.hard_state is not None:
        hs = rd.hard_state
        parts.append(f"hs term={hs.term} vote={hs.vote} commit={hs.commit}")
    if rd.snapshot is not None:
        meta = rd.snapshot.meta
        parts.append(f"snapshot {meta.term}/{meta.index} {describe_conf(meta.conf_state)}")
    if rd.entries:
        parts.append("persist " + describe_entries(rd.entries))
    if rd.committed_entries:
        parts.append("apply " + describe_entries(rd.committed_entries))
    for rs in rd.read_states:
        parts.append(f"read-state index={rs.index} ctx={rs.request_ctx!r}")
    lines = [f"{node_id}:" + (" " + " | ".join(parts) if parts else "")]
    lines.extend("  early " + describe_message(m) for m in rd.early_messages)
    lines.extend("  " + describe_message(m) for m in rd.messages)
    return lines


class Network:
    """Nodes, their storage and applied state, and the messages between them."""

    def __init__(
        self,
        ids: list[int] | int,
        *,
        seed: int = 1,
        make_config: Callable[[int], RaftConfig] | None = None,
        **config_fields: object,
    ) -> None:
        if isinstance(ids, int):
            ids = list(range(1, ids + 1))
        self.seed = seed
        self._config_fields = config_fields
        self._make_config = make_config
        self.nodes: dict[int, RaftNode] = {}
        self.storage: dict[int, Storage] = {}
        # index -> data of every applied NORMAL entry, per node (the state machine).
        self.applied: dict[int, dict[int, bytes]] = {}
        self.read_states: dict[int, list[ReadState]] = {}
        self.in_flight: list[Message] = []
        self.blocked: set[tuple[int, int]] = set()
        self.down: set[int] = set()
        self.trace: list[str] = []
        # The ConfState each node was first started with: a restart passes it again,
        # and the restored snapshot and log override it (the RaftNode contract).
        self.initial_conf: dict[int, ConfState] = {}
        voters = frozenset(ids)
        for node_id in ids:
            self.add_node(node_id, ConfState(voters=voters))

    def config(self, node_id: int) -> RaftConfig:
        if self._make_config is not None:
            return self._make_config(node_id)
        return RaftConfig(node_id=node_id, **self._config_fields)  # type: ignore[arg-type]

    def rng(self, node_id: int, incarnation: int = 0) -> random.Random:
        return random.Random(self.seed * 1_000_003 + node_id * 101 + incarnation)

    def add_node(self, node_id: int, conf: ConfState) -> RaftNode:
        node = RaftNode(self.config(node_id), conf, self.rng(node_id))
        self.initial_conf[node_id] = conf
        self.nodes[node_id] = node
        self.storage[node_id] = Storage()
        self.applied[node_id] = {}
        self.read_states[node_id] = []
        return node

    def restart(self, node_id: int) -> RaftNode:
        """Crash ``node_id`` (losing everything not persisted) and start it from storage."""
        stored = self.storage[node_id]
        self.in_flight = [m for m in self.in_flight if m.to_id != node_id]
        node = RaftNode(
            self.config(node_id),
            self.initial_conf[node_id],
            self.rng(node_id, incarnation=len(self.trace) + 1),
            restored=stored.persistent_state(),
        )
        self.nodes[node_id] = node
        self.applied[node_id] = self._state_from_snapshot(stored.snapshot)
        self.read_states[node_id] = []
        node.check_invariants()
        return node

    @staticmethod
    def _state_from_snapshot(snapshot: Snapshot | None) -> dict[int, bytes]:
        if snapshot is None or not snapshot.data:
            return {}
        pairs = msgpack.unpackb(snapshot.data)
        return {int(index): bytes(data) for index, data in pairs}

    def snapshot_data(self, node_id: int, index: int) -> bytes:
        pairs = [[i, d] for i, d in sorted(self.applied[node_id].items()) if i <= index]
        return msgpack.packb(pairs)

    def compact(self, node_id: int, index: int) -> Snapshot:
        snap = self.nodes[node_id].compact(index, self.snapshot_data(node_id, index))
        stored = self.storage[node_id]
        stored.snapshot = snap
        stored.entries = [e for e in stored.entries if e.index > index]
        return snap

    # -- the runtime loop ------------------------------------------------------

    def process_ready(self, node_id: int) -> list[str]:
        node = self.nodes[node_id]
        if node_id in self.down or not node.has_ready():
            return []
        rd = node.ready()
        stored = self.storage[node_id]
        # (1) persist
        if rd.hard_state is not None:
            stored.hard = rd.hard_state
        if rd.snapshot is not None:
            stored.snapshot = rd.snapshot
            stored.entries = []
        if rd.entries:
            first = rd.entries[0].index
            stored.entries = [e for e in stored.entries if e.index < first] + list(rd.entries)
        # (2) send (the early ones may leave before persisting; here it is all one step)
        self.in_flight.extend(rd.early_messages)
        self.in_flight.extend(rd.messages)
        # (3) apply
        if rd.snapshot is not None:
            self.applied[node_id] = self._state_from_snapshot(rd.snapshot)
        for entry in rd.committed_entries:
            if entry.type is EntryType.NORMAL:
                self.applied[node_id][entry.index] = entry.data
        # (4) reads
        self.read_states[node_id].extend(rd.read_states)
        node.advance(rd)
        node.check_invariants()
        lines = describe_ready(node_id, rd)
        self.trace.extend(lines)
        return lines

    def process_all(self) -> list[str]:
        lines: list[str] = []
        for node_id in sorted(self.nodes):
            lines.extend(self.process_ready(node_id))
        return lines

    def is_cut(self, msg: Message) -> bool:
        return (
            (msg.from_id, msg.to_id) in self.blocked
            or msg.to_id in self.down
            or msg.from_id in self.down
            or msg.to_id not in self.nodes
        )

    def deliver_once(self, only: Callable[[Message], bool] | None = None) -> list[str]:
        """Deliver every message now in flight (not those they provoke); with ``only``,
        just the matching ones, the rest stay in flight."""
        batch, self.in_flight = self.in_flight, []
        lines = []
        for msg in batch:
            if only is not None and not only(msg):
                self.in_flight.append(msg)
                continue
            if self.is_cut(msg):
                lines.append(f"  dropped {describe_message(msg)}")
                continue
            node = self.nodes[msg.to_id]
            node.step(msg)
            node.check_invariants()
        return lines

    def stabilize(self) -> list[str]:
        lines = self.process_all()
        for _ in range(STABILIZE_ROUNDS_MAX):
            if not self.in_flight:
                self.check_safety()
                return lines
            lines.extend(self.deliver_once())
            lines.extend(self.process_all())
        raise AssertionError(f"cluster did not stabilize in {STABILIZE_ROUNDS_MAX} rounds")

    def tick(self, node_id: int, count: int = 1) -> None:
        for _ in range(count):
            self.nodes[node_id].tick()
            self.nodes[node_id].check_invariants()

    def tick_all(self, count: int = 1, *, stabilize: bool = True) -> list[str]:
        """Tick every live node once per round; deliver everything after each round."""
        lines = []
        for _ in range(count):
            for node_id in sorted(self.nodes):
                if node_id not in self.down:
                    self.tick(node_id)
            if stabilize:
                lines.extend(self.stabilize())
        return lines

    # -- topology ---------------------------------------------------------------

    def partition(self, *groups: set[int]) -> None:
        self.heal()
        for a in groups:
            for b in groups:
                if a is b:
                    continue
                for x in a:
                    for y in b:
                        self.blocked.add((x, y))

    def isolate(self, node_id: int) -> None:
        others = set(self.nodes) - {node_id}
        self.partition({node_id}, others)

    def heal(self) -> None:
        self.blocked.clear()

    # -- observations -------------------------------------------------------------

    def leader(self) -> int:
        """The unique live leader of the highest term, or 0."""
        leaders = [
            n.id for n in self.nodes.values() if n.role.name == "LEADER" and n.id not in self.down
        ]
        if not leaders:
            return 0
        return max(leaders, key=lambda i: self.nodes[i].term)

    def check_safety(self) -> None:
        """State machine safety: no two nodes applied different data at one index."""
        seen: dict[int, tuple[int, bytes]] = {}
        for node_id, applied in self.applied.items():
            for index, data in applied.items():
                other = seen.setdefault(index, (node_id, data))
                if other[1] != data:
                    raise InvariantError(
                        f"index {index}: node {other[0]} applied {other[1]!r}, "
                        f"node {node_id} applied {data!r}"
                    )

    def applied_data(self, node_id: int) -> list[bytes]:
        """Applied non-empty payloads in index order (leaders' empty entries left out)."""
        return [d for _, d in sorted(self.applied[node_id].items()) if d]
