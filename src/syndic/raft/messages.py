"""Value types of the Raft core: entries, messages, hard state, snapshots, Ready.

All are frozen slotted dataclasses, validated on construction, so a malformed
value is refused where it is built (an :class:`InvalidArgumentError`) and the
core never has to re-check field ranges; :func:`fast_frozen_init` makes
building one (a message per peer message, a Ready per cycle) cheaper. Node
ids are ints >= 1; 0 means "none".

Example::

    >>> Entry(term=1, index=1, data=b"x")
    Entry(term=1, index=1, type=<EntryType.NORMAL: 1>, data=b'x')
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import msgpack

from syndic.frozen import fast_frozen_init
from syndic.raft.errors import ConfChangeError, InvalidArgumentError

# A node id is a positive int that fits in 64 bits, as etcd's uint64 ids; a larger
# value would not survive the msgpack peer transport.
NODE_ID_MAX = 2**64 - 1
# Terms and indexes are 64-bit on the wire too.
U64_MAX = 2**64 - 1


def _check_uint(name: str, value: object, minimum: int = 0) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidArgumentError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum or value > U64_MAX:
        raise InvalidArgumentError(f"{name} must be in [{minimum}, 2**64), got {value}")


def check_node_id(name: str, value: object, *, allow_none: bool = False) -> None:
    """Raise :class:`InvalidArgumentError` unless ``value`` is a valid node id (0 if allowed)."""
    _check_uint(name, value, 0 if allow_none else 1)


def _check_bytes(name: str, value: object) -> None:
    if not isinstance(value, bytes):
        raise InvalidArgumentError(f"{name} must be bytes, got {type(value).__name__}")


class MessageType(enum.Enum):
    """Kinds of peer messages (etcd: raftpb.MessageType, minus the local ones)."""

    PRE_VOTE = 1
    PRE_VOTE_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    APPEND = 5
    APPEND_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    READ_INDEX = 10
    READ_INDEX_RESP = 11
    TIMEOUT_NOW = 12


# Responses to these are sent back to the requester; used by the core to pick the
# term to answer with and by runtimes that want to prioritise traffic.
RESPONSE_TYPES = frozenset(
    {
        MessageType.PRE_VOTE_RESP,
        MessageType.VOTE_RESP,
        MessageType.APPEND_RESP,
        MessageType.HEARTBEAT_RESP,
        MessageType.READ_INDEX_RESP,
    }
)


class EntryType(enum.Enum):
    NORMAL = 1
    CONF_CHANGE = 2


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Entry:
    """One log entry. ``index >= 1`` and ``term >= 1``: index 0 / term 0 is the empty log."""

    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""

    def __post_init__(self) -> None:
        term, index = self.term, self.index
        if (
            type(term) is int
            and type(index) is int
            and 1 <= term <= U64_MAX
            and 1 <= index <= U64_MAX
            and type(self.type) is EntryType
            and type(self.data) is bytes
        ):
            return  # the common case, decided without a call per field
        _check_uint("Entry.term", self.term, 1)
        _check_uint("Entry.index", self.index, 1)
        if not isinstance(self.type, EntryType):
            raise InvalidArgumentError(f"Entry.type must be an EntryType, got {self.type!r}")
        _check_bytes("Entry.data", self.data)

    def size_bytes(self) -> int:
        """Payload size used by the byte bounds (etcd counts the payload only, too)."""
        return len(self.data)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class HardState:
    """What must be on stable storage before any message that depends on it is sent."""

    term: int = 0
    vote: int = 0
    commit: int = 0

    def __post_init__(self) -> None:
        term, vote, commit = self.term, self.vote, self.commit
        if (
            type(term) is int
            and type(vote) is int
            and type(commit) is int
            and 0 <= term <= U64_MAX
            and 0 <= vote <= U64_MAX
            and 0 <= commit <= U64_MAX
        ):
            return  # the common case, decided without a call per field
        _check_uint("HardState.term", self.term)
        check_node_id("HardState.vote", self.vote, allow_none=True)
        _check_uint("HardState.commit", self.commit)


def _as_id_set(name: str, value: object) -> frozenset[int]:
    if not isinstance(value, set | frozenset):
        raise InvalidArgumentError(f"{name} must be a frozenset of node ids, got {value!r}")
    for node_id in value:
        check_node_id(name, node_id)
    return frozenset(value)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ConfState:
    """A cluster configuration. ``voters_outgoing`` is non-empty only in a joint config.

    A node may not be both a voter and a learner.
    """

    voters: frozenset[int]
    learners: frozenset[int] = frozenset()
    voters_outgoing: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "voters", _as_id_set("ConfState.voters", self.voters))
        object.__setattr__(self, "learners", _as_id_set("ConfState.learners", self.learners))
        object.__setattr__(
            self,
            "voters_outgoing",
            _as_id_set("ConfState.voters_outgoing", self.voters_outgoing),
        )
        both = self.voters & self.learners
        if both:
            raise InvalidArgumentError(f"ConfState: nodes {sorted(both)} are voters and learners")

    def all_ids(self) -> frozenset[int]:
        return self.voters | self.learners | self.voters_outgoing


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    index: int
    term: int
    conf_state: ConfState

    def __post_init__(self) -> None:
        _check_uint("SnapshotMeta.index", self.index)
        _check_uint("SnapshotMeta.term", self.term)
        if not isinstance(self.conf_state, ConfState):
            raise InvalidArgumentError("SnapshotMeta.conf_state must be a ConfState")
        if (self.index == 0) != (self.term == 0):
            raise InvalidArgumentError(
                f"SnapshotMeta: index {self.index} and term {self.term} must be both 0 or both > 0"
            )


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Snapshot:
    meta: SnapshotMeta
    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.meta, SnapshotMeta):
            raise InvalidArgumentError("Snapshot.meta must be a SnapshotMeta")
        _check_bytes("Snapshot.data", self.data)


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Message:
    """A peer message.

    Field use follows etcd-io/raft: for APPEND ``(log_term, index)`` name the entry
    preceding ``entries``; for APPEND_RESP ``index`` is the acknowledged last index,
    or on ``reject`` the rejected index with ``reject_hint``/``log_term`` giving the
    follower's fast back-off hint; for (PRE_)VOTE ``(log_term, index)`` is the
    candidate's last entry. HEARTBEAT/HEARTBEAT_RESP use ``index`` for the leader's
    local tick stamp (echoed back, so the leader can time its lease from the send
    time) and ``context`` for a ReadIndex round. SNAPSHOT carries ``snapshot``.
    """

    type: MessageType
    from_id: int
    to_id: int
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""

    def __post_init__(self) -> None:
        # The scalar fields in one expression: every message the core builds
        # passes here, so the per-field checks (and their messages) run only
        # for a value that is wrong or of an unusual type.
        if not (
            type(self.type) is MessageType
            and type(self.from_id) is int
            and type(self.to_id) is int
            and type(self.term) is int
            and type(self.log_term) is int
            and type(self.index) is int
            and type(self.commit) is int
            and type(self.reject_hint) is int
            and type(self.reject) is bool
            and type(self.context) is bytes
            and 1 <= self.from_id <= U64_MAX
            and 1 <= self.to_id <= U64_MAX
            and 0 <= self.term <= U64_MAX
            and 0 <= self.log_term <= U64_MAX
            and 0 <= self.index <= U64_MAX
            and 0 <= self.commit <= U64_MAX
            and 0 <= self.reject_hint <= U64_MAX
        ):
            self._check_fields()
        entries = self.entries
        if not isinstance(entries, tuple):
            raise InvalidArgumentError("Message.entries must be a tuple of Entry")
        if entries:  # most messages carry none
            append = self.type is MessageType.APPEND
            expected = self.index + 1
            for entry in entries:
                if not isinstance(entry, Entry):
                    raise InvalidArgumentError("Message.entries must be a tuple of Entry")
                if append and entry.index != expected:
                    raise InvalidArgumentError(
                        f"Message.entries: APPEND entries must be contiguous from index "
                        f"{expected}, got {entry.index}"
                    )
                expected = entry.index + 1
        snapshot = self.snapshot
        if snapshot is not None and not isinstance(snapshot, Snapshot):
            raise InvalidArgumentError("Message.snapshot must be a Snapshot or None")
        if snapshot is None and self.type is MessageType.SNAPSHOT:
            raise InvalidArgumentError("Message: SNAPSHOT without a snapshot")
        if type(self.context) is not bytes:
            _check_bytes("Message.context", self.context)

    def _check_fields(self) -> None:
        if not isinstance(self.type, MessageType):
            raise InvalidArgumentError(f"Message.type must be a MessageType, got {self.type!r}")
        check_node_id("Message.from_id", self.from_id)
        check_node_id("Message.to_id", self.to_id)
        _check_uint("Message.term", self.term)
        _check_uint("Message.log_term", self.log_term)
        _check_uint("Message.index", self.index)
        _check_uint("Message.commit", self.commit)
        _check_uint("Message.reject_hint", self.reject_hint)
        if not isinstance(self.reject, bool):
            raise InvalidArgumentError("Message.reject must be a bool")


class ConfChangeType(enum.Enum):
    ADD_VOTER = 1
    ADD_LEARNER = 2
    REMOVE_NODE = 3


# An encoded conf change entry holds the change plus the resulting voter and learner
# lists: 9 bytes per id at most, so this admits configurations of ~7,000 members.
CONF_CHANGE_ENCODED_BYTES_MAX = 64 * 1024


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership change; travels msgpack-encoded as a CONF_CHANGE entry's data.

    >>> ConfChange.decode(ConfChange(ConfChangeType.ADD_LEARNER, 4).encode())
    ConfChange(type=<ConfChangeType.ADD_LEARNER: 2>, node_id=4)
    """

    type: ConfChangeType
    node_id: int

    def __post_init__(self) -> None:
        if not isinstance(self.type, ConfChangeType):
            raise InvalidArgumentError(f"ConfChange.type must be a ConfChangeType: {self.type!r}")
        check_node_id("ConfChange.node_id", self.node_id)

    def encode(self) -> bytes:
        return msgpack.packb([self.type.value, self.node_id])

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        if not isinstance(data, bytes) or len(data) > CONF_CHANGE_ENCODED_BYTES_MAX:
            raise ConfChangeError(
                f"conf change data must be bytes of at most {CONF_CHANGE_ENCODED_BYTES_MAX} bytes"
            )
        try:
            raw = msgpack.unpackb(data)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise ConfChangeError(f"conf change data is not msgpack: {exc}") from exc
        # Entries written by the core carry the resulting configuration after the
        # change as two more fields (see membership.py); decode() ignores them.
        if not isinstance(raw, list) or len(raw) not in (2, 4):
            raise ConfChangeError(f"conf change must be [type, node_id, ...], got {raw!r}")
        kind, node_id = raw[0], raw[1]
        try:
            return cls(ConfChangeType(kind), node_id)
        except (ValueError, InvalidArgumentError) as exc:
            raise ConfChangeError(f"invalid conf change {raw!r}: {exc}") from exc


class Role(enum.Enum):
    FOLLOWER = 1
    PRE_CANDIDATE = 2
    CANDIDATE = 3
    LEADER = 4


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth reporting when it changes; never persisted."""

    leader_id: int
    role: Role


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class ReadState:
    """A confirmed linearizable read: serve it once ``applied >= index``."""

    index: int
    request_ctx: bytes


@fast_frozen_init
@dataclass(frozen=True, slots=True)
class Ready:
    """Everything the core wants done, and the order to do it in (etcd-io/raft's contract).

    The runtime must:

    0. send ``early_messages``, at any time before step 5: a leader's appends
       and heartbeats, which go out while its own disk writes the same entries
       (Raft thesis §10.2.1; the leader counts itself only after step 5);
    1. persist ``hard_state`` (when not None), ``snapshot`` (when not None) and
       ``entries`` (appending them, replacing any stored entries at the same or
       higher indexes), fsyncing first if ``must_sync`` is true;
    2. only then send ``messages``: votes, vote grants and append acknowledgements
       in them promise state that must already be durable;
    3. apply ``committed_entries`` to the state machine, in order (when a snapshot
       is present, restore it first);
    4. answer each of ``read_states`` once its applied index reaches ``index``;
    5. call ``advance(ready)`` with this very value.

    ``must_sync`` is true whenever entries, the term or the vote changed; a change
    of the commit index alone may be written lazily. ``soft_state`` and
    ``hard_state`` are None when unchanged since the previous Ready.
    """

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: tuple[Entry, ...]
    snapshot: Snapshot | None
    committed_entries: tuple[Entry, ...]
    early_messages: tuple[Message, ...]
    messages: tuple[Message, ...]
    read_states: tuple[ReadState, ...]
    must_sync: bool


EMPTY_CONF_STATE = ConfState(voters=frozenset())
