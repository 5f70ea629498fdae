"""How a member's data directory begins: its ids and its first log state.

A member of a new cluster (``--initial-cluster-state=new``) derives every id
from the flags and starts its log with one snapshot at index 1, term 1, that
holds the initial member table and configuration. Every founding member
writes the same one, so a member added later is brought up to date from that
snapshot and the log after it. (etcd starts with one ConfChange entry per
member instead; a snapshot carries the member table too, and ``snapshot
restore`` already starts a log this way.)

A member joining a running cluster (``existing``) cannot derive its id: the
id was chosen when ``member add`` ran. It asks a running member for the
cluster id and member table, finds itself by its peer URLs, and starts with
an empty log that the leader fills.

Either way the ids are recorded in the data directory. On a restart the
recorded ids decide, as etcd's stored ids do, and a new member's flags must
still derive them, which catches a data directory handed to the wrong member.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from syndic.kv.mvcc import StoreConfig
from syndic.raft import ConfState, HardState, Snapshot, SnapshotMeta
from syndic.server.backend import Member
from syndic.server.config import ServerConfig, member_id, parse_url
from syndic.server.peer_codec import PeerCodecError, decode_cluster_info
from syndic.server.state_machine import MemberAttrs, StateMachine
from syndic.server.transport import DIAL_TIMEOUT_S, call_peer
from syndic.storage import SnapshotStore, Wal
from syndic.storage.durable import write_atomically

# Where a founding member's log starts: one snapshot, nothing after it.
INITIAL_INDEX: Final = 1
INITIAL_TERM: Final = 1
IDENTITY_FILE: Final = "identity"
# How long a joining member keeps asking the listed peers for the member table.
JOIN_TIMEOUT_S: Final = 10.0
JOIN_RETRY_S: Final = 0.2

_IDENTITY_LINE = re.compile(r"member ([0-9a-f]{1,16}) cluster ([0-9a-f]{1,16})\n")


class MemberIdentityError(RuntimeError):
    """The data directory belongs to another member, or the cluster will not
    say who this member is."""


@dataclass(frozen=True, slots=True)
class MemberIdentity:
    member_id: int
    cluster_id: int

    def line(self) -> str:
        return f"member {self.member_id:x} cluster {self.cluster_id:x}\n"


def derived_identity(config: ServerConfig) -> MemberIdentity:
    """A founding member's ids, from ``--initial-cluster`` and the cluster token."""
    peers = config.cluster_peers()
    cluster_id = member_id(
        tuple(sorted(u for urls in peers.values() for u in urls)), config.initial_cluster_token
    )
    return MemberIdentity(config.member_ids()[config.name], cluster_id)


def initial_members(config: ServerConfig) -> dict[int, MemberAttrs]:
    """The member table ``--initial-cluster`` describes. Client URLs are empty:
    each member publishes its own once it sees a leader, as etcd's do."""
    ids = config.member_ids()
    return {ids[name]: MemberAttrs(name, urls, ()) for name, urls in config.cluster_peers().items()}


def initial_snapshot(config: ServerConfig) -> Snapshot:
    """The snapshot a founding member's log starts from: empty store, initial members."""
    members = initial_members(config)
    state = StateMachine(StoreConfig(), members)
    meta = SnapshotMeta(INITIAL_INDEX, INITIAL_TERM, ConfState(voters=frozenset(members)))
    return Snapshot(meta=meta, data=state.serialize())


def write_initial_log(wal: Wal, snapshots: SnapshotStore, snapshot: Snapshot) -> None:
    """Start an empty log at ``snapshot``. The snapshot file goes first, then the
    WAL marker naming it: a marker must never name a file that is not durable."""
    snapshots.save(snapshot)
    wal.save(
        HardState(term=snapshot.meta.term, vote=0, commit=snapshot.meta.index),
        (),
        snapshot=snapshot.meta,
        must_sync=True,
    )


def settle_identity(
    member_dir: Path, config: ServerConfig, claimed: MemberIdentity | None
) -> MemberIdentity:
    """The ids this member runs under: the recorded ones, checked against
    ``claimed`` (derived from the flags, or told by the cluster on joining);
    recorded on first use. Raises MemberIdentityError on a mismatch."""
    path = member_dir / IDENTITY_FILE
    if not path.exists():
        if claimed is None:
            raise MemberIdentityError(
                f"{member_dir} holds a log but no record of which member wrote it"
            )
        write_atomically(path, claimed.line().encode())
        return claimed
    text = path.read_text()
    match = _IDENTITY_LINE.fullmatch(text)
    if match is None:
        raise MemberIdentityError(f"{path} is damaged: {text[:80]!r}")
    stored = MemberIdentity(int(match.group(1), 16), int(match.group(2), 16))
    if claimed is not None and claimed != stored:
        raise MemberIdentityError(
            f"{member_dir} belongs to {stored.line().strip()!r}, but these flags "
            f"(--name={config.name!r}, --initial-cluster, --initial-cluster-token, "
            f"--initial-cluster-state={config.initial_cluster_state}) make "
            f"{claimed.line().strip()!r}"
        )
    return stored


async def join_cluster(
    config: ServerConfig, ssl_context: ssl.SSLContext | None = None
) -> tuple[MemberIdentity, list[Member]]:
    """Ask the other members in ``--initial-cluster`` who this member is.

    This member must already have been added (``etcdctl member add``) with the
    peer URLs it advertises. Raises MemberIdentityError when no peer answers
    within JOIN_TIMEOUT_S or the cluster does not list this member."""
    own = set(config.initial_advertise_peer_urls)
    others = [
        url
        for name, urls in config.cluster_peers().items()
        if name != config.name
        for url in urls
        if url not in own
    ]
    if not others:
        raise MemberIdentityError(
            "--initial-cluster-state=existing needs --initial-cluster to name a running member"
        )
    failures: dict[str, str] = {}
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    while time.monotonic() < deadline:
        for url in others:
            host, port = parse_url(url, "initial_cluster")
            try:
                ok, payload = await call_peer(
                    host, port, "cluster", [], DIAL_TIMEOUT_S, ssl_context
                )
                if not ok:
                    failures[url] = str(payload)
                    continue
                cluster_id, members = decode_cluster_info(payload)
            except (OSError, TimeoutError, PeerCodecError) as exc:
                failures[url] = str(exc) or type(exc).__name__
                continue
            for member in members:
                if set(member.peer_urls) == own:
                    return MemberIdentity(member.id, cluster_id), members
            listed = ", ".join(",".join(m.peer_urls) for m in members)
            raise MemberIdentityError(
                f"cluster {cluster_id:x} has no member with peer URLs {','.join(sorted(own))} "
                f"(it has {listed}); add it first: etcdctl member add {config.name} "
                f"--peer-urls={','.join(sorted(own))}"
            )
        await asyncio.sleep(JOIN_RETRY_S)
    detail = "; ".join(f"{url}: {why}" for url, why in failures.items())
    raise MemberIdentityError(f"cannot fetch the member table from any peer URL ({detail})")
