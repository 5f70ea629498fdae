"""Typed errors raised by the Raft core.

Every public method of :class:`syndic.raft.RaftNode` either succeeds or raises
one of these without having changed any state.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base class of every error the Raft core raises on purpose."""


class InvalidArgumentError(RaftError, ValueError):
    """A public method or value type was handed a malformed argument."""


class NotLeaderError(RaftError):
    """The request needs the leader and this node is not it.

    ``leader_id`` is the leader this node knows of, or 0 when it knows none, so
    a runtime can redirect the client (etcd: ErrNotLeader / ErrNoLeader).
    """

    def __init__(self, leader_id: int, message: str | None = None) -> None:
        self.leader_id = leader_id
        if message is None:
            message = (
                f"not the leader; leader is {leader_id}"
                if leader_id
                else "not the leader; no leader known"
            )
        super().__init__(message)


class ProposalDroppedError(RaftError):
    """The leader refused a proposal (transfer in progress, too large, too much uncommitted).

    ``reason`` is a short machine-readable word such as ``"transferring"`` or
    ``"uncommitted-bytes"`` (etcd: ErrProposalDropped).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        super().__init__(f"proposal dropped ({reason}){': ' + detail if detail else ''}")


class InvariantError(RaftError, AssertionError):
    """An internal invariant of the core does not hold: a bug, never an input error."""


class ConfChangeError(RaftError):
    """A membership change was refused (unknown node, pending change, last voter, ...)."""


class SnapshotOutOfDateError(RaftError):
    """A snapshot or compaction request is at or behind what the log already holds.

    etcd: ErrSnapOutOfDate / ErrCompacted.
    """


class ConfigError(RaftError, ValueError):
    """A :class:`syndic.raft.RaftConfig` combination is unsafe or meaningless."""


class ReadyContractError(RaftError):
    """``ready()``/``advance()`` were called out of order (one Ready at a time)."""
