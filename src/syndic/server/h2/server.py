"""Listening sockets, the method table, and an orderly stop."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import ssl
from collections.abc import Iterable, Mapping
from typing import Any

from syndic.server.h2.connection import Http2Connection
from syndic.server.h2.limits import ServerLimits, SharedBudget, TokenBucket
from syndic.server.h2.reads import ReadShare


class ListenError(RuntimeError):
    """A listen address cannot be bound (in use, not local, malformed)."""


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ListenError(f"listen address {address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port_text)


# A peer's (rapid-reset, cheap-frame) budgets.
_Budgets = tuple[TokenBucket, TokenBucket]
# Departed peers whose budgets are remembered: past this many, the expired
# are dropped, then the longest gone.
LEFT_BUDGETS_MAX = 4096


class GrpcServer:
    """gRPC over HTTP/2 on asyncio; registration as on grpc.aio's server."""

    def __init__(self, limits: ServerLimits | None = None) -> None:
        self.limits = limits if limits is not None else ServerLimits()
        self._methods: dict[str, Any] = {}
        self._services: set[str] = set()
        self._generic: list[Any] = []
        self._sockets: list[tuple[socket.socket, ssl.SSLContext | None]] = []
        self._servers: list[asyncio.Server] = []
        self._connections: set[Http2Connection] = set()
        self._per_peer: collections.Counter[str] = collections.Counter()
        self._counted: dict[Http2Connection, str] = {}
        # The rapid-reset and cheap-frame budgets of each peer address with a
        # connection open: reconnecting does not refill them.
        self._buckets: dict[str, _Budgets] = {}
        # Budgets of peers whose last connection closed before they refilled,
        # with when they will be full: a peer that comes back within that
        # time gets what it left, not a fresh burst.
        self._left: dict[str, tuple[float, _Budgets]] = {}
        # Request bytes held unread, summed over every connection.
        self.request_budget = SharedBudget(self.limits.server_request_buffer_bytes_max)
        # Answer bytes queued behind clients' windows, summed over every connection.
        self.answer_budget = SharedBudget(self.limits.server_send_buffer_bytes_max)
        # Large reads parsed per loop pass, over every connection (reads.py).
        self.read_share = ReadShare(self.limits.read_bytes_per_pass_max, self.request_budget)

    # -- registration -----------------------------------------------------

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Any]) -> None:
        """Serve ``/service/method`` for each of ``handlers`` (grpc.RpcMethodHandler)."""
        self._services.add(service)
        for method, handler in handlers.items():
            self._methods[f"/{service}/{method}"] = handler

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        """grpc.GenericRpcHandler objects, asked for paths not registered by name."""
        self._generic.extend(handlers)

    def _lookup(self, path: str) -> Any:
        handler = self._methods.get(path)
        if handler is not None or not self._generic:
            return handler
        details = _CallDetails(path)
        for generic in self._generic:
            handler = generic.service(details)
            if handler is not None:
                return handler
        return None

    def _unknown_method(self, path: str) -> str:
        service, _, method = path.lstrip("/").partition("/")
        if service in self._services:
            return f"unknown method {method} for service {service}"
        return f"unknown service {service}"

    # -- listening ----------------------------------------------------------

    def add_insecure_port(self, address: str) -> int:
        """Bind ``host:port`` now (port 0 picks one); returns the port."""
        return self._bind(address, None)

    def add_secure_port(self, address: str, context: ssl.SSLContext) -> int:
        """As add_insecure_port, with TLS; ``context`` should offer ALPN "h2"."""
        return self._bind(address, context)

    def _bind(self, address: str, context: ssl.SSLContext | None) -> int:
        host, port = _split_address(address)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror as exc:
            raise ListenError(f"cannot listen on {address}: {exc.strerror}") from exc
        bound: list[socket.socket] = []
        seen: set[tuple[Any, ...]] = set()
        try:
            for family, kind, proto, _, sockaddr in infos:
                key = (family, sockaddr[0])
                if key in seen:
                    continue
                seen.add(key)
                sock = socket.socket(family, kind, proto)
                bound.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                if port == 0 and len(bound) > 1:  # one port for every address
                    sock.bind((sockaddr[0], bound[0].getsockname()[1], *sockaddr[2:]))
                else:
                    sock.bind(sockaddr)
                sock.listen(1024)
                sock.setblocking(False)
        except OSError as exc:
            for sock in bound:
                sock.close()
            raise ListenError(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        self._sockets.extend((sock, context) for sock in bound)
        chosen: int = bound[0].getsockname()[1]
        return chosen

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for sock, context in self._sockets:
            server = await loop.create_server(self._new_connection, sock=sock, ssl=context)
            self._servers.append(server)

    def _new_connection(self) -> Http2Connection:
        connection = Http2Connection(
            self.limits,
            self._lookup,
            self._unknown_method,
            self._closed,
            self.request_budget,
            self._admit,
            self.read_share,
        )
        connection.protocol.answers = self.answer_budget
        self._connections.add(connection)
        return connection

    def _admit(self, connection: Http2Connection, peer_host: str) -> str | None:
        """Count the connection against the caps; why it may not stay, or None."""
        limits = self.limits
        if len(self._counted) >= limits.connections_max:
            return f"over {limits.connections_max} connections"
        if self._per_peer[peer_host] >= limits.connections_per_peer_max:
            return f"over {limits.connections_per_peer_max} connections from {peer_host}"
        self._per_peer[peer_host] += 1
        self._counted[connection] = peer_host
        buckets = self._buckets.get(peer_host)
        if buckets is None:
            left = self._left.pop(peer_host, None)
            fresh = (connection.protocol.resets, connection.protocol.cheap)
            buckets = left[1] if left is not None else fresh
            self._buckets[peer_host] = buckets
        connection.protocol.resets, connection.protocol.cheap = buckets
        return None

    def _closed(self, connection: Http2Connection) -> None:
        self._connections.discard(connection)
        peer_host = self._counted.pop(connection, None)
        if peer_host is not None:
            self._per_peer[peer_host] -= 1
            if not self._per_peer[peer_host]:
                del self._per_peer[peer_host]
                self._remember(peer_host, self._buckets.pop(peer_host))

    def _remember(self, peer_host: str, buckets: _Budgets) -> None:
        """Keep a departing peer's budgets until they would be full again."""
        now = asyncio.get_running_loop().time()
        full_at = max(bucket.full_at() for bucket in buckets)
        if full_at <= now:
            return
        if len(self._left) >= LEFT_BUDGETS_MAX:
            for host in [h for h, (t, _) in self._left.items() if t <= now]:
                del self._left[host]
            if len(self._left) >= LEFT_BUDGETS_MAX:  # the longest gone is forgotten
                del self._left[next(iter(self._left))]
        self._left[peer_host] = (full_at, buckets)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let running calls finish for ``grace`` seconds, then cut."""
        for server in self._servers:
            server.close()
        for connection in list(self._connections):
            connection.close_gracefully()
        if grace:
            deadline = asyncio.get_running_loop().time() + grace
            while self._connections and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
        for connection in list(self._connections):
            connection.abort_now()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
        for sock, _ in self._sockets:
            sock.close()
        self._sockets.clear()


class _CallDetails:
    """What grpc.GenericRpcHandler.service() reads (grpc.HandlerCallDetails)."""

    __slots__ = ("invocation_metadata", "method")

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()
