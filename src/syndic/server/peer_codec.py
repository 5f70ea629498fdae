"""Raft messages on the peer wire: msgpack arrays, validated on the way in.

A frame carries a batch: every message for one peer produced in one node
cycle, and proposals a follower forwards to its leader (entry data the
leader proposes as is, as etcd-io/raft's MsgProp does). Decoding never
trusts the sender: a malformed frame raises :class:`PeerCodecError` and is
dropped whole, which Raft tolerates as loss.
"""

from __future__ import annotations

from typing import Any

import msgpack

from syndic.raft import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    RaftError,
    Snapshot,
    SnapshotMeta,
)

# Version of the array layout below; a peer speaking another one is refused.
PEER_WIRE_VERSION = 1
# Forwarded proposals per frame; a follower forwards at most one cycle's worth.
FORWARDED_PROPOSALS_MAX = 10_000


class PeerCodecError(ValueError):
    """A peer frame could not be decoded; the message says which part."""


def _encode_snapshot(snapshot: Snapshot | None) -> list[Any] | None:
    if snapshot is None:
        return None
    conf = snapshot.meta.conf_state
    return [
        snapshot.meta.index,
        snapshot.meta.term,
        sorted(conf.voters),
        sorted(conf.learners),
        sorted(conf.voters_outgoing),
        snapshot.data,
    ]


def _encode_message(msg: Message) -> list[Any]:
    return [
        msg.type.value,
        msg.from_id,
        msg.to_id,
        msg.term,
        msg.log_term,
        msg.index,
        [[e.term, e.index, e.type.value, e.data] for e in msg.entries],
        msg.commit,
        msg.reject,
        msg.reject_hint,
        _encode_snapshot(msg.snapshot),
        msg.context,
    ]


def encode_batch(messages: list[Message], proposals: list[bytes] | None = None) -> bytes:
    """One frame body: the wire version, the messages in order, forwarded proposals."""
    return msgpack.packb(
        [PEER_WIRE_VERSION, [_encode_message(m) for m in messages], proposals or []]
    )


def _decode_snapshot(raw: Any) -> Snapshot | None:
    if raw is None:
        return None
    index, term, voters, learners, outgoing, data = raw
    conf = ConfState(frozenset(voters), frozenset(learners), frozenset(outgoing))
    return Snapshot(SnapshotMeta(index, term, conf), data)


def _decode_message(raw: Any) -> Message:
    (kind, from_id, to_id, term, log_term, index, entries, commit, reject, hint, snap, ctx) = raw
    return Message(
        type=MessageType(kind),
        from_id=from_id,
        to_id=to_id,
        term=term,
        log_term=log_term,
        index=index,
        entries=tuple(Entry(t, i, EntryType(k), d) for t, i, k, d in entries),
        commit=commit,
        reject=reject,
        reject_hint=hint,
        snapshot=_decode_snapshot(snap),
        context=ctx,
    )


def decode_batch(body: bytes) -> tuple[list[Message], list[bytes]]:
    """The inverse of :func:`encode_batch`; any defect raises PeerCodecError."""
    try:
        version, raw_messages, proposals = msgpack.unpackb(body, use_list=True, raw=False)
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        raise PeerCodecError(
            f"peer frame is not a msgpack [version, messages, proposals] triple: {exc}"
        ) from exc
    if version != PEER_WIRE_VERSION:
        raise PeerCodecError(f"peer wire version {version!r} is not {PEER_WIRE_VERSION}")
    if not isinstance(raw_messages, list):
        raise PeerCodecError("peer frame's messages are not a list")
    if (
        not isinstance(proposals, list)
        or len(proposals) > FORWARDED_PROPOSALS_MAX
        or not all(isinstance(p, bytes) for p in proposals)
    ):
        raise PeerCodecError(
            "peer frame's proposals must be a list of at most "
            f"{FORWARDED_PROPOSALS_MAX} byte strings"
        )
    try:
        return [_decode_message(raw) for raw in raw_messages], proposals
    except (ValueError, TypeError, RaftError) as exc:
        raise PeerCodecError(f"malformed raft message in peer frame: {exc}") from exc
