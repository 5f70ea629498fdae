"""Cluster configuration: quorum math and single-server membership changes.

Choice: one change at a time (Raft thesis §4.1), not joint consensus (§4.3).

Adding or removing one server keeps every majority of the old voter set
intersecting every majority of the new one, so no two leaders can be elected in
one term even while members disagree on which of the two configurations is in
force. That argument breaks when configurations two changes apart coexist; the
known fix (Ongaro, raft-dev, 2015) is that a leader may not append a new change
until an entry of its own term is committed. syndic enforces, like etcd-io/raft:

- a change takes effect on every member when the entry is *applied* (after commit);
- a leader refuses a change until an entry of its own term is committed (the
  empty entry it appends on election);
- a leader starts with ``pending_conf_index = last_index`` at election, and refuses
  a new change while ``pending_conf_index > applied``: the previous change (of this
  or an earlier term) must be applied first, so at most one is pending;
- a node does not campaign while a committed change is still unapplied.

Why not joint consensus: the simpler rule covers every change syndic needs (add a
learner, promote it, remove a node), each step is one log entry, and the proof is
a one-line quorum intersection. Joint configurations (``voters_outgoing``) are
still understood by the quorum math below, so a restored ConfState holding one is
counted correctly, but the core never creates them.

Each CONF_CHANGE entry the core writes carries, besides the change itself, the
configuration that results from it (``[type, node_id, voters, learners]``), and
members adopt that configuration when they apply the entry. A node that joins
with an empty configuration thus learns the whole membership from the first
change it applies, although the initial configuration was never in the log.
All members compute the same result, because the leader derives it from a
configuration in which every earlier change is already applied.

Learners receive the log but never vote and never count toward any quorum.
Promotion is ADD_VOTER of an existing learner; demotion of a voter is refused.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import msgpack

from syndic.raft.errors import ConfChangeError, InvalidArgumentError
from syndic.raft.messages import (
    CONF_CHANGE_ENCODED_BYTES_MAX,
    ConfChange,
    ConfChangeType,
    ConfState,
)


class VoteResult(enum.Enum):
    PENDING = 1
    WON = 2
    LOST = 3


def majority_committed_index(voters: Iterable[int], match: Mapping[int, int]) -> int:
    """Largest index that a majority of ``voters`` hold (missing voters hold 0).

    An empty voter set commits nothing it could not already (returns 0 ... which the
    caller never uses to move commit backwards). For voters ``{1,2,3}`` with matches
    ``5, 7, 3`` it is 5: two of three hold index 5.
    """
    get = match.get
    indexes = sorted([get(node_id, 0) for node_id in voters], reverse=True)
    if not indexes:
        return 0
    return indexes[len(indexes) // 2]


def majority_vote_result(voters: Iterable[int], votes: Mapping[int, bool]) -> VoteResult:
    ids = list(voters)
    if not ids:
        # etcd: an empty configuration wins every vote, which lets joint math compose.
        return VoteResult.WON
    granted = sum(1 for node_id in ids if votes.get(node_id) is True)
    rejected = sum(1 for node_id in ids if votes.get(node_id) is False)
    quorum = len(ids) // 2 + 1
    if granted >= quorum:
        return VoteResult.WON
    if len(ids) - rejected < quorum:
        return VoteResult.LOST
    return VoteResult.PENDING


def committed_index(conf: ConfState, match: Mapping[int, int]) -> int:
    """Quorum-acknowledged index; in a joint config the minimum of both halves."""
    incoming = majority_committed_index(conf.voters, match)
    if not conf.voters_outgoing:
        return incoming
    return min(incoming, majority_committed_index(conf.voters_outgoing, match))


def vote_result(conf: ConfState, votes: Mapping[int, bool]) -> VoteResult:
    incoming = majority_vote_result(conf.voters, votes)
    if not conf.voters_outgoing:
        return incoming
    outgoing = majority_vote_result(conf.voters_outgoing, votes)
    if incoming is outgoing:
        return incoming
    if VoteResult.LOST in (incoming, outgoing):
        return VoteResult.LOST
    return VoteResult.PENDING


def all_voters(conf: ConfState) -> frozenset[int]:
    return conf.voters | conf.voters_outgoing


def is_quorum(conf: ConfState, ids: Iterable[int]) -> bool:
    """True when ``ids`` contain a quorum of ``conf`` (check-quorum, ReadIndex acks)."""
    present = set(ids)
    votes = {node_id: node_id in present for node_id in all_voters(conf)}
    return vote_result(conf, votes) is VoteResult.WON


def validate_change(conf: ConfState, change: ConfChange) -> None:
    """Raise ConfChangeError unless ``change`` is a meaningful single-step change."""
    node_id = change.node_id
    if conf.voters_outgoing:
        raise ConfChangeError("configuration is joint; single-step changes are refused")
    if change.type is ConfChangeType.ADD_VOTER:
        if node_id in conf.voters:
            raise ConfChangeError(f"node {node_id} is already a voter")
    elif change.type is ConfChangeType.ADD_LEARNER:
        if node_id in conf.learners:
            raise ConfChangeError(f"node {node_id} is already a learner")
        if node_id in conf.voters:
            raise ConfChangeError(f"node {node_id} is a voter; demotion is not supported")
    else:
        if node_id not in conf.voters and node_id not in conf.learners:
            raise ConfChangeError(f"node {node_id} is not a member")
        if conf.voters == {node_id}:
            raise ConfChangeError(f"node {node_id} is the last voter")


def apply_change(conf: ConfState, change: ConfChange) -> ConfState:
    """The configuration after ``change``; changes that make no sense leave it as is.

    Lenient on purpose: a committed entry must apply on every member the same way,
    and re-applying an entry after a restart must be harmless.
    """
    voters, learners = set(conf.voters), set(conf.learners)
    node_id = change.node_id
    if change.type is ConfChangeType.ADD_VOTER:
        learners.discard(node_id)
        voters.add(node_id)
    elif change.type is ConfChangeType.ADD_LEARNER:
        if node_id not in voters:
            learners.add(node_id)
    elif voters != {node_id}:
        voters.discard(node_id)
        learners.discard(node_id)
    return ConfState(
        voters=frozenset(voters),
        learners=frozenset(learners),
        voters_outgoing=conf.voters_outgoing,
    )


def encode_change_entry(change: ConfChange, result: ConfState) -> bytes:
    """Entry data for ``change``: ConfChange.decode() reads it, and so does
    decode_change_entry(), which also returns the configuration ``result``."""
    return msgpack.packb(
        [change.type.value, change.node_id, sorted(result.voters), sorted(result.learners)]
    )


def decode_change_entry(data: bytes) -> tuple[ConfChange, ConfState | None]:
    """The change in a CONF_CHANGE entry, and the resulting configuration if recorded."""
    change = ConfChange.decode(data)
    raw = msgpack.unpackb(data)
    if len(raw) == 2:
        return change, None
    voters, learners = raw[2], raw[3]
    if not isinstance(voters, list) or not isinstance(learners, list):
        raise ConfChangeError(f"conf change entry: bad member lists {raw!r}")
    try:
        result = ConfState(voters=frozenset(voters), learners=frozenset(learners))
    except (InvalidArgumentError, TypeError) as exc:
        raise ConfChangeError(f"conf change entry: bad configuration {raw!r}: {exc}") from exc
    if len(data) > CONF_CHANGE_ENCODED_BYTES_MAX:
        raise ConfChangeError("conf change entry too large")
    return change, result
