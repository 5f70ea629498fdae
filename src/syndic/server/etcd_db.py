"""syndic's member state laid out as etcd 3.4's backend: bbolt buckets of records.

``Maintenance.Snapshot`` streams this image ahead of syndic's own state, so
that etcd's tools read a snapshot saved from syndic as one saved from etcd:
``etcdctl snapshot status`` reports the same revision and the same key count
(it counts every entry of every bucket), and only the hash and size differ,
as they differ between any two etcd clusters (member and lease ids, Raft
indexes, password hashes).

The buckets and records are etcd 3.4's (mvcc/kvstore.go, etcdserver/api/
membership/store.go, auth/store.go, lease/lessor.go, etcdserver/cindex):

* ``key``: one entry per retained revision, keyed by the 17-byte revision
  (main, ``_``, sub; a tombstone adds ``t``), valued by its mvccpb.KeyValue;
* ``meta``: ``consistent_index``, and after a compaction
  ``scheduledCompactRev`` and ``finishedCompactRev``;
* ``members`` (id in hex -> JSON), ``members_removed``, ``cluster``
  (``clusterVersion``), ``alarm`` (an AlarmMember per alarm);
* ``auth`` (``authRevision``, ``authEnabled`` while enabled), ``authUsers``,
  ``authRoles`` (authpb records), ``lease`` (leasepb.Lease by 8-byte id).

Where syndic keeps less than etcd, the image has less: etcd keeps
``authEnabled`` once auth has ever been enabled and lists removed members in
``members_removed``; syndic's state records neither. And etcd's compaction
drops a tombstone at exactly the compaction revision, which syndic keeps for
watchers starting there. Each shifts ``TOTAL KEYS`` by one entry.
"""

from __future__ import annotations

import json
import struct
from typing import Final

from syndic.api.gen import auth_pb2, kv_pb2, rpc_pb2
from syndic.kv.mvcc import CREATE, LEASE, MOD, VALUE, VERSION, Store
from syndic.protowire import varint
from syndic.server.auth import AuthStore
from syndic.server.state_machine import MemberAttrs, StateMachine
from syndic.storage.bolt import build_db

# etcd: version.Cluster of the release syndic's API follows (3.4).
CLUSTER_VERSION: Final = b"3.4.0"
_REVISION: Final = struct.Struct(">Q")  # etcd: revToBytes, then "_" and the sub revision
_U64: Final = struct.Struct(">Q")
_I64: Final = struct.Struct(">q")


def revision_key(main: int, sub: int, tombstone: bool = False) -> bytes:
    """etcd's key-bucket key: big-endian main, ``_``, big-endian sub, ``t`` if deleted."""
    return _REVISION.pack(main) + b"_" + _REVISION.pack(sub) + (b"t" if tombstone else b"")


def _key_bucket(store: Store) -> list[tuple[bytes, bytes]]:
    rows = []
    for main, sub, key, rec in store.history():
        if rec[VALUE] is None:
            # etcd: a tombstone's value is a KeyValue holding only the key.
            kv = kv_pb2.KeyValue(key=key)
        else:
            kv = kv_pb2.KeyValue(
                key=key,
                create_revision=rec[CREATE],
                mod_revision=rec[MOD],
                version=rec[VERSION],
                value=rec[VALUE],
                lease=rec[LEASE],
            )
        rows.append((revision_key(main, sub, rec[VALUE] is None), kv.SerializeToString()))
    return rows


def _meta_bucket(store: Store, consistent_index: int) -> list[tuple[bytes, bytes]]:
    rows = [(b"consistent_index", _U64.pack(consistent_index))]
    if store.compact_revision > 0:
        compacted = revision_key(store.compact_revision, 0)
        rows += [(b"finishedCompactRev", compacted), (b"scheduledCompactRev", compacted)]
    return rows


def _member_json(member_id: int, attrs: MemberAttrs) -> bytes:
    # etcd: membership.Member's JSON, field order as its struct declares.
    record = {
        "id": member_id,
        "peerURLs": list(attrs.peer_urls),
        "name": attrs.name,
        "clientURLs": list(attrs.client_urls),
    }
    return json.dumps(record, separators=(",", ":")).encode()


def _members_bucket(members: dict[int, MemberAttrs]) -> list[tuple[bytes, bytes]]:
    # etcd: types.ID.String(), hex without leading zeros.
    rows = [(f"{mid:x}".encode(), _member_json(mid, attrs)) for mid, attrs in members.items()]
    return sorted(rows)


def _lease_value(lease_id: int, ttl_s: int) -> bytes:
    # leasepb.Lease {int64 ID = 1; int64 TTL = 2;}: two varint fields.
    return b"\x08" + varint(lease_id) + b"\x10" + varint(ttl_s)


def _auth_buckets(auth: AuthStore) -> dict[bytes, list[tuple[bytes, bytes]]]:
    flags = [(b"authRevision", _U64.pack(auth.revision))]
    if auth.enabled:
        flags.insert(0, (b"authEnabled", b"\x01"))
    users = []
    for user in auth.users.values():
        record = auth_pb2.User(
            name=user.name.encode(),
            password=user.password_hash.encode(),
            roles=list(user.roles),
            options=auth_pb2.UserAddOptions(no_password=user.no_password),
        )
        users.append((user.name.encode(), record.SerializeToString()))
    roles = []
    for role in auth.roles.values():
        permissions = [
            auth_pb2.Permission(permType=p.perm_type.name, key=p.key, range_end=p.range_end)
            for p in role.permissions
        ]
        role_pb = auth_pb2.Role(name=role.name.encode(), keyPermission=permissions)
        roles.append((role.name.encode(), role_pb.SerializeToString()))
    return {b"auth": flags, b"authUsers": sorted(users), b"authRoles": sorted(roles)}


def etcd_buckets(
    state: StateMachine, consistent_index: int, member_id: int
) -> dict[bytes, list[tuple[bytes, bytes]]]:
    """The buckets etcd 3.4 would hold for ``state``, applied up to ``consistent_index``.

    ``member_id`` names the member that raised each alarm (syndic's alarms
    are cluster-wide; etcd records who raised one).
    """
    store = state.store
    alarms = [
        (rpc_pb2.AlarmMember(memberID=member_id, alarm=alarm.name).SerializeToString(), b"")
        for alarm in sorted(store.alarms)
    ]
    leases = [(_I64.pack(i), _lease_value(i, ttl_s)) for i, ttl_s in store.leases()]
    return {
        b"alarm": sorted(alarms),
        b"cluster": [(b"clusterVersion", CLUSTER_VERSION)],
        b"key": _key_bucket(store),
        b"lease": sorted(leases),
        b"members": _members_bucket(state.members),
        b"members_removed": [],
        b"meta": _meta_bucket(store, consistent_index),
        **_auth_buckets(auth=state.auth),
    }


def etcd_db(state: StateMachine, consistent_index: int, member_id: int) -> bytes:
    """The bbolt image of :func:`etcd_buckets`."""
    return build_db(etcd_buckets(state, consistent_index, member_id))


def etcd_total_keys(state: StateMachine) -> int:
    """What ``etcdctl snapshot status`` prints as TOTAL KEYS for ``state``'s
    image: every entry of every bucket."""
    return sum(len(entries) for entries in etcd_buckets(state, 0, 0).values())
