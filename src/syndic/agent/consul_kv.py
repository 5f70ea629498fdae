"""Consul's KV store and sessions on raw etcd keys.

``/v1/kv/<key>`` is the etcd key ``<key>`` itself, so Consul tools and etcd
tools see the same data. What Consul keeps beside a value lives under the
registry prefix (see :mod:`syndic.registry.keys`): flags and the lock index
in ``kvmeta/<key>``, the holding session in ``lock/<key>``, which is bound
to the session's lease, so a session that ends (destroyed, or its TTL
passed) releases its locks at the same revision. A session whose behavior
is ``delete`` lists its keys under ``sessdel/<session>/``; when the session
ends, those keys are deleted.

Sessions are etcd leases: a TTL session's lease has the session's TTL and is
renewed by ``/v1/session/renew``; a session without a TTL is kept alive by
the agent that created it (Consul ties such a session to its node's health).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import uuid
from dataclasses import dataclass
from typing import Any

from syndic.client import (
    Client,
    Compare,
    GetResult,
    NotFoundError,
    Op,
    PermissionDeniedError,
    TxnResult,
)
from syndic.client.types import KeyValue
from syndic.registry.keys import KeyLayout

#: A session without a TTL lives on a lease of this many seconds that its
#: agent renews; if the agent dies the session ends within it (Consul's
#: serfHealth-bound sessions end when the node fails).
AGENT_SESSION_LEASE_S = 30
#: Longest session name, in characters.
SESSION_NAME_LENGTH_MAX = 256
#: Tries of a read-modify-write on kvmeta when another writer races it.
META_RETRIES_MAX = 8


class KvError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Session:
    session_id: str
    name: str
    node: str
    behavior: str  # "release" | "delete"
    ttl_s: int  # 0: no TTL (kept alive by the agent)
    lock_delay_ms: float
    lease: int
    create_revision: int = 0
    mod_revision: int = 0

    def to_consul(self) -> dict[str, Any]:
        return {
            "ID": self.session_id,
            "Name": self.name,
            "Node": self.node,
            "LockDelay": int(self.lock_delay_ms * 1_000_000),
            "Behavior": self.behavior,
            "TTL": f"{self.ttl_s}s" if self.ttl_s else "",
            "NodeChecks": ["serfHealth"],
            "ServiceChecks": None,
            "Namespace": "default",
            "CreateIndex": self.create_revision,
            "ModifyIndex": self.mod_revision,
        }


def _session_doc(s: Session) -> bytes:
    return json.dumps(
        {
            "id": s.session_id,
            "name": s.name,
            "node": s.node,
            "behavior": s.behavior,
            "ttl_s": s.ttl_s,
            "lock_delay_ms": s.lock_delay_ms,
            "lease": s.lease,
        },
        sort_keys=True,
    ).encode()


def _session_from(kv: KeyValue) -> Session:
    doc = json.loads(kv.value)
    return Session(
        doc["id"],
        doc["name"],
        doc["node"],
        doc["behavior"],
        doc["ttl_s"],
        doc["lock_delay_ms"],
        doc["lease"],
        kv.create_revision,
        kv.mod_revision,
    )


@dataclass(frozen=True, slots=True)
class LockTaken:
    """A lock just taken or kept: whether it was free before, and the metadata it replaced."""

    newly: bool
    meta_before: bytes | None


@dataclass(frozen=True, slots=True)
class KvEntry:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    flags: int
    lock_index: int
    session: str

    def to_consul(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "LockIndex": self.lock_index,
            "Key": self.key.decode("utf-8", "replace"),
            "Flags": self.flags,
            "Value": base64.b64encode(self.value).decode() if self.value else None,
            "CreateIndex": self.create_revision,
            "ModifyIndex": self.mod_revision,
        }
        if self.session:
            out["Session"] = self.session
        return out


class ConsulKv:
    """Consul's KV and session operations over one etcd client."""

    def __init__(self, client: Client, layout: KeyLayout, node: str) -> None:
        self.client = client
        self.layout = layout
        self.node = node
        self._kept: dict[str, Any] = {}  # session id -> Lease kept alive by this agent
        self.user: Client | None = None  # with auth on, the user whose permissions apply

    def as_user(self, user: Client) -> ConsulKv:
        """The same operations on behalf of a user (auth on), so etcd's key permissions decide.

        The user's own client reads and writes the user's keys, each in one
        transaction with its guards: etcd checks the permission when it applies
        that transaction, so no write lands after a permission was taken away
        (a separate check, then a write by the agent, would let one through).
        Consul's flags and locks live under the registry prefix, which users
        are not granted, so the agent's client keeps them beside the user's
        write: a lock is taken before the value is written and given back if
        the user's write is refused; flags follow the write they belong to,
        guarded by its revision; a read takes the user's data and the agent's
        metadata at one revision. A cheap probe first refuses the obvious
        cases before the agent touches anything.
        """
        other = ConsulKv(self.client, self.layout, self.node)
        other._kept = self._kept
        other.user = user
        return other

    async def _may_read(self, key: bytes, recurse: bool) -> None:
        if self.user is not None:
            await self.user.get(key, prefix=recurse, count_only=True)

    async def _may_write(self, key: bytes, recurse: bool = False) -> None:
        if self.user is not None:
            op = Op.delete(key, prefix=True) if recurse else Op.put(key, b"")
            await self.user.txn(compare=[Compare.version(key) < 0], success=[op], failure=[])

    def reserved(self, key: bytes) -> bool:
        """Keys under the registry prefix are syndic's own: not written through /v1/kv."""
        return key.startswith(self.layout.all())

    # -- reads ----------------------------------------------------------------

    async def read(self, key: bytes, *, recurse: bool, limit: int) -> tuple[list[KvEntry], int]:
        """The entries at ``key`` (or under it); returns them and the store revision."""
        lay = self.layout
        meta_reads = [
            Op.get(lay.kvmeta(key), prefix=recurse, limit=limit),
            Op.get(lay.lock(key), prefix=recurse, limit=limit),
        ]
        if self.user is None:
            t = await self.client.txn(
                compare=[],
                success=[Op.get(key, prefix=recurse, limit=limit), *meta_reads],
                failure=[],
            )
            data, meta, locks = (r for r in t.responses)
            revision = t.revision
        else:
            # The user's read is the permission check; the metadata is read at its revision.
            data = await self.user.get(key, prefix=recurse, limit=limit)
            at = [
                Op.get(lay.kvmeta(key), prefix=recurse, limit=limit, revision=data.revision),
                Op.get(lay.lock(key), prefix=recurse, limit=limit, revision=data.revision),
            ]
            t = await self.client.txn(compare=[], success=at, failure=[])
            meta, locks = (r for r in t.responses)
            revision = data.revision
        assert isinstance(data, GetResult) and isinstance(meta, GetResult)
        assert isinstance(locks, GetResult)
        meta_by = {bytes(kv.key)[len(lay.kvmeta(b"")) :]: kv for kv in meta.kvs}
        lock_by = {bytes(kv.key)[len(lay.lock(b"")) :]: kv for kv in locks.kvs}
        out: list[KvEntry] = []
        assert isinstance(data, GetResult)
        for kv in data.kvs:
            k = bytes(kv.key)
            if self.reserved(k):
                continue
            m = json.loads(meta_by[k].value) if k in meta_by else {}
            holder = json.loads(lock_by[k].value)["session"] if k in lock_by else ""
            out.append(
                KvEntry(
                    k,
                    bytes(kv.value),
                    kv.create_revision,
                    kv.mod_revision,
                    int(m.get("flags", 0)),
                    int(m.get("lock_index", 0)),
                    holder,
                )
            )
        return out, revision

    async def wait_change(self, key: bytes, *, recurse: bool, index: int, timeout_s: float) -> int:
        """Block until something at ``key`` changes after revision ``index``; the change's
        revision, or 0 when the time ran out."""
        await self._may_read(key, recurse)
        watch = self.client.watch(key, prefix=recurse, start_revision=index + 1)

        async def first() -> int:
            async for batch in watch:
                if batch.events:
                    return batch.revision
            return 0

        try:
            async with asyncio.timeout(timeout_s):
                return await first()
        except TimeoutError:
            return 0
        finally:
            await watch.close()

    # -- writes ---------------------------------------------------------------

    async def put(
        self,
        key: bytes,
        value: bytes,
        *,
        flags: int | None,
        cas: int | None,
        acquire: str | None,
        release: str | None,
    ) -> bool:
        if self.reserved(key):
            raise KvError(403, "Permission denied: key is reserved for syndic's registry")
        await self._may_write(key)
        if self.user is not None:
            return await self._put_as_user(
                self.user, key, value, flags=flags, cas=cas, acquire=acquire, release=release
            )
        if acquire:
            return await self._acquire(key, value, flags, acquire)
        if release:
            return await self._release(key, value, flags, release)
        compare = self._cas_compare(key, cas)
        for _ in range(META_RETRIES_MAX):
            meta_kv, meta = await self._meta(key)
            ops = [Op.put(key, value)]
            guard = list(compare)
            if flags is not None and flags != meta.get("flags", 0):
                guard.append(self._meta_guard(key, meta_kv))
                ops.append(Op.put(self.layout.kvmeta(key), self._meta_doc(meta, flags=flags)))
            t = await self.client.txn(compare=guard, success=ops, failure=[Op.get(key)])
            if t.succeeded:
                return True
            if cas is not None and not self._cas_holds(t, key, cas):
                return False
        raise KvError(500, "too many concurrent writers on the key's flags")

    @staticmethod
    def _cas_compare(key: bytes, cas: int | None) -> list[Any]:
        if cas is None:
            return []
        return [Compare.create_revision(key) == 0 if cas == 0 else Compare.mod_revision(key) == cas]

    async def _put_as_user(
        self,
        user: Client,
        key: bytes,
        value: bytes,
        *,
        flags: int | None,
        cas: int | None,
        acquire: str | None,
        release: str | None,
    ) -> bool:
        if acquire:
            return await self._acquire_as_user(user, key, value, flags, acquire)
        if release:
            return await self._release_as_user(user, key, value, flags, release)
        t = await user.txn(compare=self._cas_compare(key, cas), success=[Op.put(key, value)])
        if t.succeeded and flags is not None:
            await self._flags_after(key, flags, t.revision)
        return t.succeeded

    async def _flags_after(self, key: bytes, flags: int, revision: int) -> None:
        """Record the flags of the write at ``revision``, unless a later write owns the key."""
        for _ in range(META_RETRIES_MAX):
            meta_kv, meta = await self._meta(key)
            if meta.get("flags", 0) == flags:
                return
            t = await self.client.txn(
                compare=[Compare.mod_revision(key) == revision, self._meta_guard(key, meta_kv)],
                success=[Op.put(self.layout.kvmeta(key), self._meta_doc(meta, flags=flags))],
                failure=[Op.get(key)],
            )
            if t.succeeded or not self._cas_holds(t, key, revision):
                return
        raise KvError(500, "too many concurrent writers on the key's flags")

    async def _acquire_as_user(
        self, user: Client, key: bytes, value: bytes, flags: int | None, sid: str
    ) -> bool:
        taken = await self._take_lock(key, None, flags, sid)
        if taken is None:
            return False
        try:
            await user.txn(compare=[], success=[Op.put(key, value)])
        except PermissionDeniedError:
            if taken.newly:
                await self._give_back(key, sid, taken)
            raise
        return True

    async def _give_back(self, key: bytes, sid: str, taken: LockTaken) -> None:
        """Undo a lock taken for a write the user was then refused."""
        lay = self.layout
        holder = json.dumps({"session": sid}).encode()
        restore = (
            Op.delete(lay.kvmeta(key))
            if taken.meta_before is None
            else Op.put(lay.kvmeta(key), taken.meta_before)
        )
        await self.client.txn(
            compare=[Compare.value(lay.lock(key)) == holder],
            success=[Op.delete(lay.lock(key)), Op.delete(lay.session_delete(sid, key)), restore],
            failure=[],
        )

    async def _release_as_user(
        self, user: Client, key: bytes, value: bytes, flags: int | None, sid: str
    ) -> bool:
        lay = self.layout
        holder = json.dumps({"session": sid}).encode()
        t = await self.client.txn(compare=[], success=[Op.get(lay.lock(key)), Op.get(key)])
        lock, data = t.responses
        assert isinstance(lock, GetResult) and isinstance(data, GetResult)
        if not lock.kvs or lock.kvs[0].value != holder:
            return False
        # The holder's last write, guarded by the revision seen while holding the lock:
        # another acquirer writes the key, so a lock lost in between fails the guard.
        seen = data.kvs[0].mod_revision if data.kvs else 0
        written = await user.txn(
            compare=[Compare.mod_revision(key) == seen], success=[Op.put(key, value)]
        )
        if not written.succeeded:
            return False
        return await self._release(key, None, flags, sid)

    def _cas_holds(self, t: TxnResult, key: bytes, cas: int) -> bool:
        got = t.responses[0]
        assert isinstance(got, GetResult)
        current = got.kvs[0].mod_revision if got.kvs else 0
        return current == cas

    async def _meta(self, key: bytes) -> tuple[KeyValue | None, dict[str, Any]]:
        r = await self.client.get(self.layout.kvmeta(key))
        if not r.kvs:
            return None, {}
        return r.kvs[0], json.loads(r.kvs[0].value)

    def _meta_guard(self, key: bytes, meta_kv: KeyValue | None) -> Any:
        revision = meta_kv.mod_revision if meta_kv is not None else 0
        return Compare.mod_revision(self.layout.kvmeta(key)) == revision

    @staticmethod
    def _meta_doc(meta: dict[str, Any], **changes: int) -> bytes:
        doc = {"flags": meta.get("flags", 0), "lock_index": meta.get("lock_index", 0)}
        doc.update(changes)
        return json.dumps(doc, sort_keys=True).encode()

    async def _acquire(self, key: bytes, value: bytes, flags: int | None, sid: str) -> bool:
        return await self._take_lock(key, value, flags, sid) is not None

    async def _take_lock(
        self, key: bytes, value: bytes | None, flags: int | None, sid: str
    ) -> LockTaken | None:
        """Take (or keep) the lock on ``key`` for ``sid``, writing ``value`` in the same
        transaction unless it is None (the user writes it); None when another holds it."""
        session = await self.session(sid)
        if session is None:
            raise KvError(500, f'invalid session "{sid}"')
        lay = self.layout
        holder = json.dumps({"session": sid}).encode()
        for _ in range(META_RETRIES_MAX):
            meta_kv, meta = await self._meta(key)
            lock = await self.client.get(lay.lock(key))
            held_by_us = bool(lock.kvs) and lock.kvs[0].value == holder
            if lock.kvs and not held_by_us:
                return None
            lock_index = int(meta.get("lock_index", 0)) + (0 if held_by_us else 1)
            new_flags = flags if flags is not None else int(meta.get("flags", 0))
            ops = [
                *([] if value is None else [Op.put(key, value)]),
                Op.put(lay.lock(key), holder, lease=session.lease),
                Op.put(
                    lay.kvmeta(key), self._meta_doc(meta, flags=new_flags, lock_index=lock_index)
                ),
            ]
            if session.behavior == "delete":
                ops.append(Op.put(lay.session_delete(sid, key), b""))
            guard = [
                Compare.create_revision(lay.session(sid)) > 0,
                self._meta_guard(key, meta_kv),
                (Compare.value(lay.lock(key)) == holder)
                if held_by_us
                else (Compare.create_revision(lay.lock(key)) == 0),
            ]
            t = await self.client.txn(compare=guard, success=ops, failure=[])
            if t.succeeded:
                return LockTaken(not held_by_us, meta_kv.value if meta_kv is not None else None)
            if await self.session(sid) is None:
                raise KvError(500, f'invalid session "{sid}"')
        return None

    async def _release(self, key: bytes, value: bytes | None, flags: int | None, sid: str) -> bool:
        lay = self.layout
        holder = json.dumps({"session": sid}).encode()
        ops = [
            *([] if value is None else [Op.put(key, value)]),
            Op.delete(lay.lock(key)),
            Op.delete(lay.session_delete(sid, key)),
        ]
        if flags is not None:
            _meta_kv, meta = await self._meta(key)
            ops.append(Op.put(lay.kvmeta(key), self._meta_doc(meta, flags=flags)))
        t = await self.client.txn(
            compare=[Compare.value(lay.lock(key)) == holder], success=ops, failure=[]
        )
        return t.succeeded

    async def delete(self, key: bytes, *, recurse: bool, cas: int | None) -> bool:
        if self.reserved(key):
            raise KvError(403, "Permission denied: key is reserved for syndic's registry")
        await self._may_write(key, recurse)
        lay = self.layout
        compare = []
        if cas is not None and not recurse:
            compare.append(Compare.mod_revision(key) == cas)
        if self.user is not None:
            t = await self.user.txn(compare=compare, success=[Op.delete(key, prefix=recurse)])
            if t.succeeded:
                await self._drop_metadata(key, recurse)
            return t.succeeded
        ops = [
            Op.delete(key, prefix=recurse),
            Op.delete(lay.kvmeta(key), prefix=recurse),
            Op.delete(lay.lock(key), prefix=recurse),
        ]
        t = await self.client.txn(compare=compare, success=ops, failure=[])
        return t.succeeded

    async def _drop_metadata(self, key: bytes, recurse: bool) -> None:
        """Delete the flags and lock of keys the user deleted (each only while its key is
        still gone: a key written again in between keeps its own)."""
        lay = self.layout
        t = await self.client.txn(
            compare=[],
            success=[
                Op.get(lay.kvmeta(key), prefix=recurse, keys_only=True),
                Op.get(lay.lock(key), prefix=recurse, keys_only=True),
            ],
        )
        meta, locks = t.responses
        assert isinstance(meta, GetResult) and isinstance(locks, GetResult)
        gone = {bytes(kv.key)[len(lay.kvmeta(b"")) :] for kv in meta.kvs}
        gone |= {bytes(kv.key)[len(lay.lock(b"")) :] for kv in locks.kvs}
        for k in sorted(gone):
            await self.client.txn(
                compare=[Compare.create_revision(k) == 0],
                success=[Op.delete(lay.kvmeta(k)), Op.delete(lay.lock(k))],
            )

    # -- sessions -------------------------------------------------------------

    async def create_session(
        self, *, name: str, behavior: str, ttl_s: int, lock_delay_ms: float, node: str
    ) -> Session:
        lease_ttl = ttl_s or AGENT_SESSION_LEASE_S
        grant = await self.client.grant(lease_ttl)
        sid = str(uuid.uuid4())
        session = Session(sid, name, node, behavior, ttl_s, lock_delay_ms, grant.id)
        await self.client.put(self.layout.session(sid), _session_doc(session), lease=grant.id)
        if not ttl_s:
            self._kept[sid] = await self.client.keep_alive(grant.id, lease_ttl)
        stored = await self.session(sid)
        assert stored is not None, "a session just created is readable"
        return stored

    async def session(self, sid: str) -> Session | None:
        r = await self.client.get(self.layout.session(sid))
        return _session_from(r.kvs[0]) if r.kvs else None

    async def sessions(self) -> tuple[list[Session], int]:
        r = await self.client.get(self.layout.sessions(), prefix=True)
        return [_session_from(kv) for kv in r.kvs], r.revision

    async def renew_session(self, sid: str) -> Session | None:
        session = await self.session(sid)
        if session is None:
            return None
        try:
            await self.client.keep_alive_once(session.lease)
        except NotFoundError:
            return None
        return session

    async def destroy_session(self, sid: str) -> bool:
        session = await self.session(sid)
        kept = self._kept.pop(sid, None)
        if kept is not None:
            await kept.release()
        if session is None:
            return True
        await self.session_ended(sid)
        with contextlib.suppress(NotFoundError):
            await self.client.revoke(session.lease)
        return True

    async def session_ended(self, sid: str) -> None:
        """Delete the keys a ``delete``-behavior session held (idempotent)."""
        lay = self.layout
        marks = await self.client.get(lay.session_deletes(sid), prefix=True, keys_only=True)
        base = len(lay.session_deletes(sid))
        ops = [Op.delete(lay.session_deletes(sid), prefix=True)]
        for kv in marks.kvs:
            k = bytes(kv.key)[base:]
            ops += [Op.delete(k), Op.delete(lay.kvmeta(k)), Op.delete(lay.lock(k))]
        await self.client.txn(compare=[], success=ops, failure=[])

    async def close(self) -> None:
        for lease in self._kept.values():
            await lease.release()
        self._kept.clear()


def session_ttl_s(ttl_ms: float) -> int:
    return math.ceil(ttl_ms / 1000.0)
