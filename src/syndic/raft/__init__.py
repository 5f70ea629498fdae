"""Raft consensus core (sans-IO).

A pure state machine modelled on etcd-io/raft: feed it ``tick()``, ``step(msg)``
and proposals; take a :class:`Ready`, persist, send, apply, then ``advance()``.
It does no I/O, reads no clock and draws randomness only from an injected rng.
"""

from syndic.raft.config import KNOWN_PLANTED_BUGS, PersistentState, RaftConfig
from syndic.raft.core import RaftNode
from syndic.raft.errors import (
    ConfChangeError,
    ConfigError,
    InvalidArgumentError,
    InvariantError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    ReadyContractError,
    SnapshotOutOfDateError,
)
from syndic.raft.messages import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)

__all__ = [
    "KNOWN_PLANTED_BUGS",
    "ConfChange",
    "ConfChangeError",
    "ConfChangeType",
    "ConfState",
    "ConfigError",
    "Entry",
    "EntryType",
    "HardState",
    "InvalidArgumentError",
    "InvariantError",
    "Message",
    "MessageType",
    "NotLeaderError",
    "PersistentState",
    "ProposalDroppedError",
    "RaftConfig",
    "RaftError",
    "RaftNode",
    "ReadState",
    "Ready",
    "ReadyContractError",
    "Role",
    "Snapshot",
    "SnapshotMeta",
    "SnapshotOutOfDateError",
    "SoftState",
]
