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

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, TypeVar

from syndic.client import Client
from syndic.config.sdk import ConfigChange, ConfigClient, ConfigValue, Subscription

T = TypeVar("T")
# How long close() waits for the loop thread to close watches and channels.
CLOSE_TIMEOUT_S = 10.0


class SyncConfigClient:
    """:class:`ConfigClient` as blocking calls; ``client_options`` go to the etcd client."""

    def __init__(
        self,
        endpoints: Sequence[str] | str,
        *,
        client_options: dict[str, Any] | None = None,
        **config_options: Any,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="syndic-config-loop", daemon=True
        )
        self._thread.start()
        self._closed = False
        try:
            self._client, self._cfg = self._run(
                self._open(endpoints, client_options or {}, config_options)
            )
        except BaseException:
            self._stop_loop()
            raise

    @staticmethod
    async def _open(
        endpoints: Sequence[str] | str, client_options: dict[str, Any], options: dict[str, Any]
    ) -> tuple[Client, ConfigClient]:
        # Built on the loop thread: channels and tasks belong to that loop.
        client = await Client.connect(endpoints, **client_options)
        return client, ConfigClient(client, **options)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise RuntimeError("SyncConfigClient is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(CLOSE_TIMEOUT_S)
        if not self._loop.is_running():
            self._loop.close()

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
        if self._closed:
            return
        try:
            self._run(self._close_both())
        finally:
            self._closed = True
            self._stop_loop()

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
