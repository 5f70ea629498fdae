"""SyncConfigClient: the configuration SDK for code without an event loop.

A Flask or Django process, a script, a thread pool: the async
:class:`~syndic.config.sdk.ConfigClient` runs on a private event loop in a
daemon thread, which keeps its watches open between calls, so ``get`` is a
memory read after the first and listeners are called (on that thread) as
soon as a change arrives.

Example::

    from syndic.config.sync import SyncConfigClient

    with SyncConfigClient(["127.0.0.1:2379"], namespace="prod",
                          snapshot_dir="/var/lib/app/config") as cfg:
        pool = cfg.load("orders", "pool.yaml", PoolSettings)
        cfg.add_listener("orders", "pool.yaml", lambda change: reload(change.new))
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

from syndic.client import Client
from syndic.client.loop_thread import LoopThread
from syndic.config.sdk import ConfigChange, ConfigClient, ConfigValue, Subscription

T = TypeVar("T")


class SyncConfigClient:
    """:class:`ConfigClient` as blocking calls; ``client_options`` go to the etcd client."""

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        *,
        client_options: dict[str, Any] | None = None,
        **config_options: Any,
    ) -> None:
        self._runner = LoopThread("syndic-config-loop")
        try:
            self._client, self._cfg = self._run(
                self._open(endpoints, client_options or {}, config_options)
            )
        except BaseException:
            self._runner.stop()
            raise

    @staticmethod
    async def _open(
        endpoints: Sequence[str] | str, client_options: dict[str, Any], options: dict[str, Any]
    ) -> tuple[Client, ConfigClient]:
        # Built on the loop thread: channels and tasks belong to that loop.
        client = await Client.connect(endpoints, **client_options)
        return client, ConfigClient(client, **options)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def get(self, group: str, data_id: str) -> ConfigValue:
        return self._run(self._cfg.get(group, data_id))

    def load(self, group: str, data_id: str, cls: type[T]) -> T:
        return self.get(group, data_id).load(cls)

    def add_listener(
        self, group: str, data_id: str, listener: Callable[[ConfigChange], None]
    ) -> Subscription:
        """``listener(change)`` runs on the client's thread: keep it short, or hand off."""
        return self._run(self._cfg.add_listener(group, data_id, listener))

    def close(self) -> None:
        if self._runner.stopped:
            return
        try:
            self._run(self._close_both())
        finally:
            self._runner.stop()

    async def _close_both(self) -> None:
        await self._cfg.close()
        await self._client.close()

    def __enter__(self) -> SyncConfigClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
