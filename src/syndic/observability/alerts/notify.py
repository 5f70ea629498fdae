"""Delivers alert transitions to the log and to webhooks (JSON POST, Alertmanager-like)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from typing import Final
from urllib.parse import urlsplit

import aiohttp

from syndic.observability.alerts.engine import Transition

log = logging.getLogger("syndic.alerts")

WEBHOOK_URL_CHARS_MAX: Final = 2048
WEBHOOKS_MAX: Final = 16
# Notifications waiting for delivery; past this the oldest are dropped (and logged).
QUEUE_ENTRIES_MAX: Final = 1000
WEBHOOK_TIMEOUT_S: Final = 5.0


class WebhookError(ValueError):
    """A webhook URL the member refuses."""


def check_webhook_url(url: object) -> str:
    if not isinstance(url, str) or not url:
        raise WebhookError("webhook url must be a non-empty string")
    if len(url) > WEBHOOK_URL_CHARS_MAX:
        raise WebhookError(f"webhook url is longer than {WEBHOOK_URL_CHARS_MAX} chars")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise WebhookError("webhook url contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookError(f"webhook url {url!r:.80} is malformed: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookError(f"webhook url must be http or https, got {parts.scheme!r:.20}")
    if not parts.hostname:
        raise WebhookError(f"webhook url {url!r:.80} has no host")
    if parts.username or parts.password:
        raise WebhookError("webhook url must not embed credentials")
    if port == 0:
        raise WebhookError("webhook url port must be 1..65535")
    return url


class Notifier:
    """Logs each transition and posts it to every webhook from one sender task."""

    def __init__(self, webhooks: list[str] | None = None) -> None:
        self.webhooks: list[str] = []
        self.set_webhooks(webhooks or [])
        self._queue: asyncio.Queue[Transition] | None = None
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def set_webhooks(self, urls: object) -> None:
        if not isinstance(urls, list) or len(urls) > WEBHOOKS_MAX:
            raise WebhookError(f"webhooks must be a list of at most {WEBHOOKS_MAX} urls")
        self.webhooks = [check_webhook_url(u) for u in urls]

    def __call__(self, t: Transition) -> None:
        level = logging.WARNING if t.state == "firing" else logging.INFO
        log.log(
            level,
            "alert %s %s (value %s): %s",
            t.name,
            t.state,
            t.value,
            t.summary,
            extra={"alert": dataclasses.asdict(t)},
        )
        if not self.webhooks:
            return
        if self._queue is None:
            self._queue = asyncio.Queue(QUEUE_ENTRIES_MAX)
            self._task = asyncio.get_running_loop().create_task(self._send(), name="alert-hooks")
        if self._queue.full():
            dropped = self._queue.get_nowait()
            log.warning("alert queue full: dropped %s %s", dropped.name, dropped.state)
        self._queue.put_nowait(t)

    async def _send(self) -> None:
        assert self._queue is not None
        timeout = aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT_S)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                t = await self._queue.get()
                body = {"status": t.state, "alerts": [dataclasses.asdict(t)]}
                for url in list(self.webhooks):
                    try:
                        async with session.post(url, json=body) as resp:
                            resp.raise_for_status()
                        self.delivered += 1
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        self.failed += 1
                        log.warning("alert webhook %s failed: %s", url, exc)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self._queue = None
