"""Software transactional memory over the store, like etcd's ``concurrency.NewSTM``.

``await transact(client, fn)`` runs ``fn(stm)``: reads through ``stm.get``,
buffered writes through ``stm.put`` and ``stm.delete``. Then one Txn commits
the writes if nothing ``fn`` read has changed since; on a conflict ``fn``
runs again on fresh data, up to ``attempts_max`` times. ``fn`` must have no
effect other than through ``stm``: it may run several times.

Isolation levels are etcd's:

- ``"serializable_snapshot"`` (default): every read at the revision of the
  first read, and the commit fails if a read key changed or a written key
  was written by anyone since that revision;
- ``"serializable"``: reads at the first read's revision, commit fails if a
  read key changed;
- ``"repeatable_read"``: each key read once (serializable reads), commit
  fails if a read key changed;
- ``"read_committed"``: no conflict check at all.

Example::

    async def transfer(stm: Stm) -> None:
        a = int(await stm.get("acct/a") or b"0")
        b = int(await stm.get("acct/b") or b"0")
        stm.put("acct/a", str(a - 10))
        stm.put("acct/b", str(b + 10))

    await transact(client, transfer)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, TypeVar

from syndic.client.concurrency.errors import TransactionConflictError
from syndic.client.errors import InvalidRequestError
from syndic.client.txn import Compare, Comparison, Op
from syndic.client.types import GetResult, TxnResult
from syndic.client.validate import key_bytes, value_bytes

if TYPE_CHECKING:
    from syndic.client.client import Client

Isolation = Literal["serializable_snapshot", "serializable", "repeatable_read", "read_committed"]
ISOLATIONS: Final = ("serializable_snapshot", "serializable", "repeatable_read", "read_committed")
# Runs of ``fn`` before giving up under contention; etcd retries forever,
# which turns a livelock into a hang.
ATTEMPTS_MAX_DEFAULT: Final = 64
# A buffered value is one put: etcd's default request bound.
VALUE_BYTES_MAX: Final = 1536 * 1024

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Write:
    value: bytes | None  # None deletes
    lease: int


class Stm:
    """The read and write sets of one run of a transaction function."""

    def __init__(self, client: Client, isolation: Isolation) -> None:
        self._client = client
        self._isolation = isolation
        self._reads: dict[bytes, GetResult] = {}
        self._writes: dict[bytes, _Write] = {}
        # Serializable levels read everything at the first read's revision.
        self._read_revision = 0

    async def get(self, key: str | bytes) -> bytes | None:
        """The key's value as this transaction sees it; None if absent."""
        name = key_bytes(key)
        write = self._writes.get(name)
        if write is not None:
            return write.value
        found = await self._read(name)
        return found.kvs[0].value if found.kvs else None

    async def rev(self, key: str | bytes) -> int:
        """The mod revision of the key as read (0 if absent)."""
        found = await self._read(key_bytes(key))
        return found.kvs[0].mod_revision if found.kvs else 0

    def put(self, key: str | bytes, value: str | bytes, *, lease: int = 0) -> None:
        self._writes[key_bytes(key)] = _Write(value_bytes(value, VALUE_BYTES_MAX), lease)

    def delete(self, key: str | bytes) -> None:
        self._writes[key_bytes(key)] = _Write(None, 0)

    async def _read(self, key: bytes) -> GetResult:
        cached = self._reads.get(key)
        if cached is not None:
            return cached
        if self._isolation in ("serializable_snapshot", "serializable"):
            # The first read is linearizable and fixes the snapshot revision;
            # the others read that revision (etcd: stmSerializable.Get).
            found = await self._client.get(
                key, revision=self._read_revision, serializable=bool(self._read_revision)
            )
            if not self._read_revision:
                self._read_revision = found.revision
        else:
            found = await self._client.get(key, serializable=True)
        self._reads[key] = found
        return found

    def _conflicts(self) -> list[Comparison]:
        if self._isolation == "read_committed":
            return []
        compares = [
            Compare.mod_revision(key) == (found.kvs[0].mod_revision if found.kvs else 0)
            for key, found in self._reads.items()
        ]
        if self._isolation == "serializable_snapshot" and self._read_revision:
            # Nobody wrote a key we write since our snapshot (etcd: wset.cmps).
            compares += [
                Compare.mod_revision(key) < self._read_revision + 1 for key in self._writes
            ]
        return compares

    def _ops(self) -> list[Op]:
        return [
            Op.delete(key) if write.value is None else Op.put(key, write.value, lease=write.lease)
            for key, write in self._writes.items()
        ]

    async def commit(self) -> TxnResult:
        return await self._client.txn(compare=self._conflicts(), success=self._ops())


async def transact(
    client: Client,
    fn: Callable[[Stm], Awaitable[_T]],
    *,
    isolation: Isolation = "serializable_snapshot",
    attempts_max: int = ATTEMPTS_MAX_DEFAULT,
) -> tuple[_T, TxnResult]:
    """Run ``fn`` until its writes commit without conflict; returns (fn's result, the Txn).

    An exception from ``fn`` aborts the transaction (nothing is written) and
    propagates. TransactionConflictError after ``attempts_max`` conflicts.
    """
    if isolation not in ISOLATIONS:
        raise InvalidRequestError(f"isolation must be one of {ISOLATIONS}, got {isolation!r}")
    if type(attempts_max) is not int or attempts_max < 1:
        raise InvalidRequestError(f"attempts_max must be a positive int, got {attempts_max!r}")
    for _ in range(attempts_max):
        stm = Stm(client, isolation)
        outcome = await fn(stm)
        committed = await stm.commit()
        if committed.succeeded:
            return outcome, committed
    raise TransactionConflictError(
        f"transaction conflicted {attempts_max} times in a row; nothing was written"
    )
