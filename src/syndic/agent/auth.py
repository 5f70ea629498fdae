"""``X-Consul-Token`` mapped to syndic auth (etcd's users, roles and key permissions).

When the store has auth on, a request's token (``X-Consul-Token``,
``?token=`` or ``Authorization: Bearer``) must be ``user:password`` of a
syndic user. Each distinct token gets its own authenticated client, and
``/v1/kv`` and ``/v1/session`` run through it, so a user's key-range
permissions apply to Consul's KV exactly as they apply to ``etcdctl``; a
denied key answers 403. The registry endpoints need a valid token and then
act with the agent's own credentials, as a Consul agent acts with its agent
token.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from typing import Any

from syndic.client import AuthenticationError, Client, ClientError

#: Authenticated clients kept, one per distinct token; the least recently
#: used is closed beyond this (each holds a gRPC channel and a token).
TOKEN_CLIENTS_MAX = 64
#: Longest token accepted, in bytes.
TOKEN_BYTES_MAX = 1024


class TokenRefusedError(Exception):
    """No token, a malformed one, or credentials the store refuses."""


class TokenAuth:
    def __init__(self, endpoints: list[str], **client_options: Any) -> None:
        self.endpoints = list(endpoints)
        self.client_options = client_options
        self._clients: OrderedDict[bytes, Client] = OrderedDict()
        self._lock = asyncio.Lock()

    async def client_for(self, token: str | None) -> Client:
        if not token:
            raise TokenRefusedError("Permission denied: a token is required (X-Consul-Token)")
        if len(token.encode()) > TOKEN_BYTES_MAX or ":" not in token:
            raise TokenRefusedError("ACL not found")
        digest = hashlib.sha256(token.encode()).digest()
        async with self._lock:
            client = self._clients.get(digest)
            if client is not None:
                self._clients.move_to_end(digest)
                return client
            user, _, password = token.partition(":")
            try:
                client = await Client.connect(
                    self.endpoints, username=user, password=password, **self.client_options
                )
            except AuthenticationError as exc:
                raise TokenRefusedError("ACL not found") from exc
            except ClientError as exc:
                raise TokenRefusedError(f"ACL not found: {exc.message}") from exc
            self._clients[digest] = client
            if len(self._clients) > TOKEN_CLIENTS_MAX:
                _digest, oldest = self._clients.popitem(last=False)
                await oldest.close()
            return client

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
