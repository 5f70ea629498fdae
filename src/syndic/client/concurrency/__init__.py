"""Coordination recipes on ``syndic.client``, key-compatible with etcd's ``concurrency``.

Locks and elections use etcd's key layout (``name/<lease id hex>``, the
oldest key wins), so they interoperate with ``etcdctl lock``, ``etcdctl
elect`` and Go programs using ``clientv3/concurrency``, on syndic or on any
etcd. See ``docs/client.md`` ("Coordination recipes").

Example::

    from syndic.client import Client
    from syndic.client.concurrency import FencedFile, Lock, Session

    async with Client(["127.0.0.1:2379"]) as client, Session(client, ttl_s=10) as session:
        async with Lock(session, "reports/daily") as lock:
            FencedFile("/srv/daily.csv").write(lock.fencing_token, b"...")
"""

from syndic.client.concurrency.barrier import Barrier, DoubleBarrier
from syndic.client.concurrency.election import Election
from syndic.client.concurrency.errors import (
    NoLeaderError,
    NotHeldError,
    NotLeaderError,
    SessionExpiredError,
    StaleTokenError,
    TransactionConflictError,
)
from syndic.client.concurrency.fencing import FencedFile, TokenGate
from syndic.client.concurrency.lock import Lock
from syndic.client.concurrency.semaphore import Semaphore
from syndic.client.concurrency.session import Session
from syndic.client.concurrency.stm import Isolation, Stm, transact

__all__ = [
    "Barrier",
    "DoubleBarrier",
    "Election",
    "FencedFile",
    "Isolation",
    "Lock",
    "NoLeaderError",
    "NotHeldError",
    "NotLeaderError",
    "Semaphore",
    "Session",
    "SessionExpiredError",
    "StaleTokenError",
    "Stm",
    "TokenGate",
    "TransactionConflictError",
    "transact",
]
