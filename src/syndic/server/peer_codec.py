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
from syndic.server.backend import Member

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


def _unpack(body: bytes, shape: str, fields: int) -> list[Any]:
    """``body`` as a msgpack array of ``fields`` items; PeerCodecError otherwise."""
    try:
        value = msgpack.unpackb(body, use_list=True, raw=False)
    except (
        ValueError,
        TypeError,
        msgpack.ExtraData,
        msgpack.FormatError,
        msgpack.StackError,
    ) as exc:
        raise PeerCodecError(f"peer frame is not a msgpack {shape}: {exc}") from exc
    if not isinstance(value, list) or len(value) != fields:
        raise PeerCodecError(f"peer frame is not a msgpack {shape}")
    return value


def decode_batch(body: bytes) -> tuple[list[Message], list[bytes]]:
    """The inverse of :func:`encode_batch`; any defect raises PeerCodecError."""
    version, raw_messages, proposals = _unpack(body, "[version, messages, proposals]", 3)
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


# ------------------------------------------------------------ peer requests
#
# Besides the Raft stream, a member answers requests on its peer port, one
# connection per request: a member joining with --initial-cluster-state=
# existing asks for the cluster id and member table (etcd fetches /members
# from a peer URL), and a follower hands a membership change to its leader
# (etcd forwards those to the leader too). A request is [version, "request",
# op, args]; its 4-element head tells it from a Raft batch's 3 elements
# before any decoding. A reply is [version, ok, payload]; a refused request's
# payload is [gRPC code name, etcd's message].

_REQUEST_HEAD = b"\x94" + msgpack.packb(PEER_WIRE_VERSION) + msgpack.packb("request")
# Arguments of one request; membership changes carry a few URLs at most.
PEER_REQUEST_BYTES_MAX = 64 * 1024
# A member table longer than this is not one a sound member sends.
CLUSTER_MEMBERS_MAX = 1024


def encode_request(op: str, args: list[Any]) -> bytes:
    return msgpack.packb([PEER_WIRE_VERSION, "request", op, args])


def is_request(body: bytes) -> bool:
    return body.startswith(_REQUEST_HEAD)


def decode_request(body: bytes) -> tuple[str, list[Any]]:
    """The (op, args) of a request frame; any defect raises PeerCodecError."""
    if len(body) > PEER_REQUEST_BYTES_MAX:
        raise PeerCodecError(f"peer request of {len(body)} bytes is over {PEER_REQUEST_BYTES_MAX}")
    _, _, op, args = _unpack(body, "[version, 'request', op, args]", 4)
    if not isinstance(op, str) or not isinstance(args, list):
        raise PeerCodecError("peer request: op must be a string and args a list")
    return op, args


def encode_reply(ok: bool, payload: Any) -> bytes:
    return msgpack.packb([PEER_WIRE_VERSION, ok, payload])


def decode_reply(body: bytes) -> tuple[bool, Any]:
    """(ok, payload) of a reply; any defect raises PeerCodecError."""
    version, ok, payload = _unpack(body, "[version, ok, payload]", 3)
    if version != PEER_WIRE_VERSION or not isinstance(ok, bool):
        raise PeerCodecError(f"peer reply has version {version!r} and ok {ok!r}")
    if not ok and not (
        isinstance(payload, list) and len(payload) == 2 and all(isinstance(p, str) for p in payload)
    ):
        raise PeerCodecError("a refused peer request must say [code, message]")
    return ok, payload


def encode_member(member: Member) -> list[Any]:
    return [
        member.id,
        member.name,
        list(member.peer_urls),
        list(member.client_urls),
        member.is_learner,
    ]


def _str_list(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise PeerCodecError("peer reply: URLs must be a list of strings")
    return tuple(value)


def _check_id(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 2**64:
        raise PeerCodecError(f"peer reply: {what} {value!r} is not a 64-bit id")
    return value


def decode_member(row: Any) -> Member:
    if not isinstance(row, list) or len(row) != 5:
        raise PeerCodecError(
            "peer reply: a member is not [id, name, peer URLs, client URLs, learner]"
        )
    mid, name, peer_urls, client_urls, is_learner = row
    if not isinstance(name, str) or not isinstance(is_learner, bool):
        raise PeerCodecError("peer reply: a member's name or learner flag is malformed")
    return Member(
        _check_id(mid, "member id"), name, _str_list(peer_urls), _str_list(client_urls), is_learner
    )


def encode_cluster_info(cluster_id: int, members: list[Member]) -> list[Any]:
    """The payload answering the "cluster" request: the cluster id and every member."""
    return [cluster_id, [encode_member(m) for m in members]]


def decode_cluster_info(payload: Any) -> tuple[int, list[Member]]:
    """The inverse of :func:`encode_cluster_info`; any defect raises PeerCodecError."""
    if not isinstance(payload, list) or len(payload) != 2:
        raise PeerCodecError("cluster answer is not [cluster id, members]")
    cluster_id, rows = payload
    if not isinstance(rows, list) or len(rows) > CLUSTER_MEMBERS_MAX:
        raise PeerCodecError(f"cluster answer: members must be a list of <= {CLUSTER_MEMBERS_MAX}")
    return _check_id(cluster_id, "cluster id"), [decode_member(row) for row in rows]
