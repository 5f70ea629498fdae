"""Configuration of one Raft node, and the state a runtime reloads at restart."""

from __future__ import annotations

from dataclasses import dataclass

from syndic.raft.errors import ConfigError, InvalidArgumentError
from syndic.raft.messages import Entry, HardState, Snapshot, check_node_id

# Planted defects the core knows how to enable; a negative control must name one of
# these, so a typo cannot silently turn a control into a no-op.
KNOWN_PLANTED_BUGS = frozenset({"old-term-commit"})


def _positive(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"RaftConfig.{name} must be an int >= 1, got {value!r}")


@dataclass(frozen=True, slots=True)
class RaftConfig:
    """Tunables of one node; time is in ticks, a runtime decides how long a tick is.

    - ``election_timeout_ticks`` (10): a follower that hears from no leader for a
      randomized timeout drawn from ``[t, 2t)`` campaigns; a leader with
      ``check_quorum`` steps down when a quorum was silent for ``t`` ticks (Raft §5.2).
    - ``heartbeat_interval_ticks`` (1): leader heartbeat period; must be < the
      election timeout, else followers time out between heartbeats.
    - ``pre_vote`` (True): a pre-election round that never bumps the term, so a
      partitioned node cannot disrupt the cluster when it rejoins (thesis §9.6).
    - ``check_quorum`` (True): leader stickiness and leader step-down (thesis §6.2).
    - ``lease_read`` (False): serve ReadIndex from a leader lease of
      ``lease_ticks`` (default ``election_timeout_ticks - 1``), measured from the
      send time of heartbeats a quorum acknowledged. Needs ``check_quorum`` and a
      lease strictly shorter than the election timeout (thesis §6.4.1); it assumes
      ticks on different nodes run at the same rate.
    - ``max_inflight_messages`` (256) / ``max_inflight_bytes`` (8 MiB): flow-control
      window per follower in APPEND messages / payload bytes not yet acknowledged.
    - ``max_entries_per_message`` (64) / ``max_bytes_per_message`` (1 MiB): batch
      bounds per APPEND; one entry is always sent even if larger, so progress is made.
    - ``max_uncommitted_bytes`` (64 MiB): proposals are dropped while the leader's
      uncommitted tail exceeds this (etcd: MaxUncommittedEntriesSize).
    - ``planted_bugs``: negative controls for checkers; ``"old-term-commit"`` lets a
      leader commit entries of older terms by counting replicas (violates §5.4.2).
    """

    node_id: int
    election_timeout_ticks: int = 10
    heartbeat_interval_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    lease_read: bool = False
    max_inflight_messages: int = 256
    max_inflight_bytes: int = 8 * 1024 * 1024
    max_entries_per_message: int = 64
    max_bytes_per_message: int = 1024 * 1024
    max_uncommitted_bytes: int = 64 * 1024 * 1024
    planted_bugs: frozenset[str] = frozenset()
    lease_ticks: int | None = None

    def __post_init__(self) -> None:
        try:
            check_node_id("RaftConfig.node_id", self.node_id)
        except InvalidArgumentError as exc:
            raise ConfigError(str(exc)) from exc
        for name in (
            "election_timeout_ticks",
            "heartbeat_interval_ticks",
            "max_inflight_messages",
            "max_inflight_bytes",
            "max_entries_per_message",
            "max_bytes_per_message",
            "max_uncommitted_bytes",
        ):
            _positive(name, getattr(self, name))
        if self.heartbeat_interval_ticks >= self.election_timeout_ticks:
            raise ConfigError(
                f"heartbeat_interval_ticks ({self.heartbeat_interval_ticks}) must be < "
                f"election_timeout_ticks ({self.election_timeout_ticks})"
            )
        if not isinstance(self.planted_bugs, frozenset):
            raise ConfigError("RaftConfig.planted_bugs must be a frozenset of names")
        unknown = self.planted_bugs - KNOWN_PLANTED_BUGS
        if unknown:
            raise ConfigError(
                f"unknown planted bugs {sorted(unknown)}; known: {sorted(KNOWN_PLANTED_BUGS)}"
            )
        if self.lease_ticks is not None:
            _positive("lease_ticks", self.lease_ticks)
        if self.lease_read:
            if not self.check_quorum:
                # Thesis §6.4.1: without check-quorum a deposed leader keeps serving.
                raise ConfigError("lease_read requires check_quorum")
            if self.effective_lease_ticks() < 1:
                raise ConfigError("lease_read needs election_timeout_ticks >= 2")
            if self.effective_lease_ticks() >= self.election_timeout_ticks:
                raise ConfigError(
                    f"lease_ticks ({self.lease_ticks}) must be strictly shorter than "
                    f"election_timeout_ticks ({self.election_timeout_ticks})"
                )

    def effective_lease_ticks(self) -> int:
        if self.lease_ticks is not None:
            return self.lease_ticks
        return self.election_timeout_ticks - 1


@dataclass(frozen=True, slots=True)
class PersistentState:
    """What a runtime loads from disk at restart: the last hard state, the latest
    snapshot (if any) and the entries after it, in index order."""

    hard_state: HardState
    snapshot: Snapshot | None
    entries: tuple[Entry, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.hard_state, HardState):
            raise InvalidArgumentError("PersistentState.hard_state must be a HardState")
        if self.snapshot is not None and not isinstance(self.snapshot, Snapshot):
            raise InvalidArgumentError("PersistentState.snapshot must be a Snapshot or None")
        if not isinstance(self.entries, tuple):
            raise InvalidArgumentError("PersistentState.entries must be a tuple of Entry")
        first = self.snapshot.meta.index + 1 if self.snapshot is not None else 1
        previous = None
        for entry in self.entries:
            if not isinstance(entry, Entry):
                raise InvalidArgumentError("PersistentState.entries must be a tuple of Entry")
            if previous is not None and entry.index != previous.index + 1:
                raise InvalidArgumentError(
                    f"PersistentState.entries not contiguous at index {entry.index}"
                )
            if previous is not None and entry.term < previous.term:
                raise InvalidArgumentError(
                    f"PersistentState.entries: term goes down at index {entry.index}"
                )
            if previous is None and entry.index != first:
                raise InvalidArgumentError(
                    f"PersistentState.entries must start at snapshot index + 1 = {first}, "
                    f"got {entry.index}"
                )
            previous = entry
        last = previous.index if previous is not None else first - 1
        if self.hard_state.commit > last:
            raise InvalidArgumentError(
                f"PersistentState: commit {self.hard_state.commit} beyond last index {last}"
            )
