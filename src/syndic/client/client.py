"""The async etcd v3 client: KV, transactions, leases, watches, cluster and
maintenance, over several members with failover.

Example::

    from syndic.client import Client, Compare, Op

    async with Client(["127.0.0.1:2379", "127.0.0.1:22379"]) as client:
        await client.put("app/config", "v1")
        result = await client.get("app/", prefix=True)
        txn = await client.txn(
            compare=[Compare.version("app/leader") == 0],
            success=[Op.put("app/leader", "me")],
            failure=[Op.get("app/leader")],
        )
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from syndic.api.gen import rpc_pb2
from syndic.api.services import (
    CLUSTER_SERVICE,
    KV_SERVICE,
    LEASE_SERVICE,
    MAINTENANCE_SERVICE,
)
from syndic.client import convert, wire
from syndic.client.concurrency.stm import ATTEMPTS_MAX_DEFAULT, Isolation, Stm, transact
from syndic.client.config import ClientConfig, TlsOptions
from syndic.client.errors import ClientError
from syndic.client.lease import KeepAliver, Lease, keep_alive_once
from syndic.client.requests import SortOrder, SortTarget, delete_request, put_request, range_request
from syndic.client.snapshot import download_snapshot
from syndic.client.transport import Transport
from syndic.client.txn import Comparison, Op, txn_request
from syndic.client.types import (
    Alarm,
    AlarmType,
    DeleteResult,
    GetResult,
    HashKV,
    LeaseGrant,
    LeaseKeepAlive,
    LeaseTimeToLive,
    Member,
    MemberAddResult,
    MemberListResult,
    PutResult,
    Status,
    TxnResult,
)
from syndic.client.validate import (
    UINT64_MAX,
    InvalidTypeError,
    check_request_size,
    flag,
    int_in,
    key_range,
)
from syndic.client.watch import Watch, WatchMux, watch_filters

_T = TypeVar("_T")

# etcd: lease.MaxLeaseTTL (9,000,000,000 s); a larger TTL is ErrLeaseTTLTooLarge.
LEASE_TTL_S_MAX = 9_000_000_000


class Client:
    """An etcd v3 client over ``endpoints``; see the module docstring.

    ``timeout_s`` bounds each call, retries included. Every other setting is
    a field of :class:`ClientConfig`, passed by keyword.
    """

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        *,
        timeout_s: float | None = None,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | str | None = None,
        cert_file: Path | str | None = None,
        key_file: Path | str | None = None,
        config: ClientConfig | None = None,
        **settings: Any,
    ) -> None:
        if config is None:
            if isinstance(endpoints, str):
                endpoints = [e for e in endpoints.split(",") if e]
            tls = None
            if ca_file is not None or cert_file is not None or key_file is not None:
                tls = TlsOptions(ca_file=ca_file, cert_file=cert_file, key_file=key_file)
            if timeout_s is not None:
                settings["timeout_s"] = timeout_s
            config = ClientConfig(
                endpoints=tuple(endpoints),
                username=username,
                password=password,
                tls=tls,
                **settings,
            )
        self.config = config
        self._transport = Transport(config)
        self.keeper = KeepAliver(self._transport)
        self._watches: set[Watch] = set()
        self._watch_mux = WatchMux(self._transport)
        self._request_bytes_max = config.request_bytes_max

    @classmethod
    async def connect(cls, endpoints: Sequence[str] | str, **options: Any) -> Client:
        """A client whose credentials (if any) were checked by one member."""
        client = cls(endpoints, **options)
        try:
            await client._transport.authenticate()
        except BaseException:
            await client.close()
            raise
        return client

    async def __aenter__(self) -> Client:
        await self._transport.authenticate()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop watches and keep-alives (leases are left to expire) and close channels."""
        for watch in list(self._watches):
            await watch.close()
        await self._watch_mux.close()
        await self.keeper.close()
        await self._transport.close()

    @property
    def endpoints(self) -> list[str]:
        return self._transport.targets

    async def _call(
        self,
        service: str,
        method: str,
        request: Any,
        *,
        idempotent: bool,
        endpoint: str | None = None,
    ) -> Any:
        return await self._transport.call(
            service, method, request, idempotent=idempotent, endpoint=endpoint
        )

    # ------------------------------------------------------------------ KV

    async def get(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        range_end: str | bytes | None = None,
        from_key: bool = False,
        limit: int = 0,
        revision: int = 0,
        serializable: bool = False,
        keys_only: bool = False,
        count_only: bool = False,
        sort_order: SortOrder = "none",
        sort_target: SortTarget = "key",
        min_mod_revision: int = 0,
        max_mod_revision: int = 0,
        min_create_revision: int = 0,
        max_create_revision: int = 0,
    ) -> GetResult:
        """Read a key, a prefix, ``[key, range_end)`` or every key from ``key`` on."""
        request = range_request(
            key,
            prefix=prefix,
            range_end=range_end,
            from_key=from_key,
            limit=limit,
            revision=revision,
            serializable=serializable,
            keys_only=keys_only,
            count_only=count_only,
            sort_order=sort_order,
            sort_target=sort_target,
            min_mod_revision=min_mod_revision,
            max_mod_revision=max_mod_revision,
            min_create_revision=min_create_revision,
            max_create_revision=max_create_revision,
        )
        answer = await self._transport.call(KV_SERVICE, "Range", request, idempotent=True)
        return wire.get_result(answer)

    async def put(
        self, key: str | bytes, value: str | bytes, *, lease: int = 0, prev_kv: bool = False
    ) -> PutResult:
        """Write ``value`` at ``key``; a lost answer raises OutcomeUnknownError."""
        request = put_request(
            key, value, lease=lease, prev_kv=prev_kv, request_bytes_max=self._request_bytes_max
        )
        check_request_size(len(request), self._request_bytes_max)
        answer = await self._transport.call(KV_SERVICE, "Put", request, idempotent=False)
        return wire.put_result(answer)

    async def delete(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        range_end: str | bytes | None = None,
        from_key: bool = False,
        prev_kv: bool = False,
    ) -> DeleteResult:
        request = delete_request(
            key, prefix=prefix, range_end=range_end, from_key=from_key, prev_kv=prev_kv
        )
        answer = await self._transport.call(KV_SERVICE, "DeleteRange", request, idempotent=False)
        return wire.delete_result(answer)

    async def txn(
        self,
        compare: Iterable[Comparison] = (),
        success: Iterable[Op] = (),
        failure: Iterable[Op] = (),
    ) -> TxnResult:
        """If every comparison holds run ``success``, else ``failure``, atomically."""
        request = txn_request(compare, success, failure)
        check_request_size(len(request.encoded), self._request_bytes_max)
        answer = await self._transport.call(
            KV_SERVICE, "Txn", request.encoded, idempotent=request.read_only
        )
        return wire.txn_result(answer)

    async def transact(
        self,
        fn: Callable[[Stm], Awaitable[_T]],
        *,
        isolation: Isolation = "serializable_snapshot",
        attempts_max: int = ATTEMPTS_MAX_DEFAULT,
    ) -> tuple[_T, TxnResult]:
        """Run ``fn`` as a software transaction, retried until it commits without
        conflict (etcd's ``concurrency.NewSTM``); see
        :func:`syndic.client.concurrency.transact`."""
        return await transact(self, fn, isolation=isolation, attempts_max=attempts_max)

    async def compact(self, revision: int, *, physical: bool = False) -> int:
        """Drop history before ``revision``; returns the header revision."""
        request = rpc_pb2.CompactionRequest(
            revision=int_in("revision", revision, 1), physical=flag("physical", physical)
        )
        response = await self._call(KV_SERVICE, "Compact", request, idempotent=False)
        return int(response.header.revision)

    # ------------------------------------------------------------------ leases

    async def grant(self, ttl_s: int, *, lease_id: int = 0) -> LeaseGrant:
        """A new lease of ``ttl_s`` seconds (``lease_id`` 0 lets the server choose)."""
        request = rpc_pb2.LeaseGrantRequest(
            TTL=int_in("ttl_s", ttl_s, 1, LEASE_TTL_S_MAX), ID=int_in("lease_id", lease_id)
        )
        response = await self._call(LEASE_SERVICE, "LeaseGrant", request, idempotent=False)
        if response.error:
            raise ClientError(f"etcdserver: {response.error}")
        return LeaseGrant(response.ID, response.TTL, response.header.revision)

    async def revoke(self, lease_id: int) -> int:
        """Revoke a lease, deleting its keys; NotFoundError if it does not exist."""
        request = rpc_pb2.LeaseRevokeRequest(ID=int_in("lease_id", lease_id, 1))
        # Repeating a revoke cannot revoke anything else (etcd clientv3 retries it).
        response = await self._call(LEASE_SERVICE, "LeaseRevoke", request, idempotent=True)
        return int(response.header.revision)

    async def time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseTimeToLive:
        """The lease's remaining TTL (-1 if it is gone) and, with ``keys``, its keys."""
        request = rpc_pb2.LeaseTimeToLiveRequest(
            ID=int_in("lease_id", lease_id, 1), keys=flag("keys", keys)
        )
        response = await self._call(LEASE_SERVICE, "LeaseTimeToLive", request, idempotent=True)
        return LeaseTimeToLive(
            response.ID,
            response.TTL,
            response.grantedTTL,
            list(response.keys),
            response.header.revision,
        )

    async def leases(self) -> list[int]:
        """The ids of every live lease."""
        response = await self._call(
            LEASE_SERVICE, "LeaseLeases", rpc_pb2.LeaseLeasesRequest(), idempotent=True
        )
        return [status.ID for status in response.leases]

    async def keep_alive_once(self, lease_id: int) -> LeaseKeepAlive:
        """Renew a lease once, on a stream of its own; NotFoundError if it is gone."""
        return await keep_alive_once(self._transport, int_in("lease_id", lease_id, 1))

    def lease(self, ttl_s: int) -> Lease:
        """``async with client.lease(ttl_s) as lease``: granted, kept alive, revoked on exit."""
        return Lease(self, int_in("ttl_s", ttl_s, 1, LEASE_TTL_S_MAX))

    async def keep_alive(self, lease_id: int, ttl_s: int) -> Lease:
        """Keep an existing lease alive in the background; ``await lease.release()`` stops."""
        lease = Lease(
            self, int_in("ttl_s", ttl_s, 1, LEASE_TTL_S_MAX), int_in("lease_id", lease_id, 1)
        )
        return await lease.__aenter__()

    # ------------------------------------------------------------------ watch

    def watch(
        self,
        key: str | bytes,
        *,
        prefix: bool = False,
        range_end: str | bytes | None = None,
        from_key: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        filters: Iterable[str] = (),
        progress_notify: bool = False,
    ) -> Watch:
        """An async iterator of change batches; see :mod:`syndic.client.watch`."""
        start, end = key_range(key, prefix=prefix, range_end=range_end, from_key=from_key)
        if isinstance(filters, str):
            raise InvalidTypeError("filters must be a list such as ['noput'], not a string")
        watch = Watch(
            self._watch_mux,
            start,
            end,
            start_revision=int_in("start_revision", start_revision),
            prev_kv=flag("prev_kv", prev_kv),
            filters=watch_filters(filters),
            progress_notify=flag("progress_notify", progress_notify),
            buffered_events_max=self.config.watch_buffered_events_max,
            on_close=self._watches.discard,
        )
        self._watches.add(watch)
        return watch

    # ------------------------------------------------------------------ cluster

    async def member_list(self, *, linearizable: bool = False) -> MemberListResult:
        request = rpc_pb2.MemberListRequest()
        if linearizable:
            request.linearizable = True
        response = await self._call(CLUSTER_SERVICE, "MemberList", request, idempotent=True)
        return MemberListResult(
            [convert.member(m) for m in response.members],
            response.header.revision,
            response.header.member_id,
            response.header.cluster_id,
        )

    async def member_add(
        self, peer_urls: Sequence[str], *, is_learner: bool = False
    ) -> MemberAddResult:
        if (
            isinstance(peer_urls, str)
            or not peer_urls
            or not all(isinstance(url, str) and url for url in peer_urls)
        ):
            raise InvalidTypeError("peer_urls must be a non-empty list of URLs")
        request = rpc_pb2.MemberAddRequest(
            peerURLs=list(peer_urls), isLearner=flag("is_learner", is_learner)
        )
        response = await self._call(CLUSTER_SERVICE, "MemberAdd", request, idempotent=False)
        return MemberAddResult(
            convert.member(response.member),
            [convert.member(m) for m in response.members],
            response.header.revision,
        )

    async def member_remove(self, member_id: int) -> list[Member]:
        request = rpc_pb2.MemberRemoveRequest(ID=int_in("member_id", member_id, 1, UINT64_MAX))
        response = await self._call(CLUSTER_SERVICE, "MemberRemove", request, idempotent=False)
        return [convert.member(m) for m in response.members]

    async def member_promote(self, member_id: int) -> list[Member]:
        request = rpc_pb2.MemberPromoteRequest(ID=int_in("member_id", member_id, 1, UINT64_MAX))
        response = await self._call(CLUSTER_SERVICE, "MemberPromote", request, idempotent=False)
        return [convert.member(m) for m in response.members]

    async def member_update(self, member_id: int, peer_urls: Sequence[str]) -> list[Member]:
        if isinstance(peer_urls, str) or not peer_urls:
            raise InvalidTypeError("peer_urls must be a non-empty list of URLs")
        request = rpc_pb2.MemberUpdateRequest(
            ID=int_in("member_id", member_id, 1, UINT64_MAX), peerURLs=list(peer_urls)
        )
        response = await self._call(CLUSTER_SERVICE, "MemberUpdate", request, idempotent=True)
        return [convert.member(m) for m in response.members]

    # ------------------------------------------------------------------ maintenance

    async def status(self, endpoint: str | None = None) -> Status:
        """A member's status: ``endpoint`` (one of the client's) or any member."""
        response = await self._call(
            MAINTENANCE_SERVICE,
            "Status",
            rpc_pb2.StatusRequest(),
            idempotent=True,
            endpoint=endpoint,
        )
        return convert.status(response)

    async def alarms(self) -> list[Alarm]:
        """Every active alarm on every member."""
        request = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET)
        response = await self._call(MAINTENANCE_SERVICE, "Alarm", request, idempotent=True)
        return [convert.alarm(a) for a in response.alarms]

    async def disarm(self, alarm: AlarmType = AlarmType.NONE, member_id: int = 0) -> list[Alarm]:
        """Clear alarms (all kinds on all members by default); returns those cleared."""
        if not isinstance(alarm, AlarmType):
            raise InvalidTypeError(f"alarm must be an AlarmType, got {type(alarm).__name__}")
        request = rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.DEACTIVATE,
            memberID=int_in("member_id", member_id, 0, UINT64_MAX),
            alarm=alarm.value,  # type: ignore[arg-type]
        )
        if alarm is AlarmType.NONE and member_id == 0:
            cleared = []
            for active in await self.alarms():
                cleared.extend(await self.disarm(active.alarm, active.member_id))
            return cleared
        response = await self._call(MAINTENANCE_SERVICE, "Alarm", request, idempotent=True)
        return [convert.alarm(a) for a in response.alarms]

    async def defragment(self, endpoint: str | None = None) -> None:
        """Defragment one member's backend (etcd defragments per member)."""
        await self._call(
            MAINTENANCE_SERVICE,
            "Defragment",
            rpc_pb2.DefragmentRequest(),
            idempotent=True,
            endpoint=endpoint,
        )

    async def hash_kv(self, revision: int = 0, *, endpoint: str | None = None) -> HashKV:
        """The hash of the store up to ``revision`` (0: the latest) on one member."""
        request = rpc_pb2.HashKVRequest(revision=int_in("revision", revision))
        response = await self._call(
            MAINTENANCE_SERVICE, "HashKV", request, idempotent=True, endpoint=endpoint
        )
        return HashKV(
            response.hash,
            response.compact_revision,
            response.header.revision,
            response.header.member_id,
        )

    async def snapshot(self, path: os.PathLike[str] | str, *, endpoint: str | None = None) -> int:
        """Download a member's snapshot to ``path`` (atomically); returns its size in bytes."""
        return await download_snapshot(self._transport, Path(path), endpoint)

    def __repr__(self) -> str:
        return f"Client({self.endpoints})"
