"""The peer transport: Raft messages between members over TCP.

Each member dials every other member and keeps one connection per direction
(as etcd's stream transport does), so each direction's reconnection and
flow control are independent. A frame is a 4-byte big-endian length and a
msgpack body holding every message for that peer from one node cycle, so a
cycle costs one write per peer however many messages it produced.

Raft tolerates lost messages, so the transport never blocks the node loop:
when a peer's queue is full or its connection is down, frames are dropped
and the node is told the peer is unreachable (it then probes instead of
streaming).

Frame sizes are bounded by :class:`FrameLimits`, derived from the request
limit and Raft's batch bounds: a receiver never reads a longer frame, and a
sender splits a cycle's batch that would exceed it. A snapshot travels alone
in a frame marked by the high bit of the length word, bounded by the store's
quota instead. Bodies longer than ``DECODE_INLINE_BYTES_MAX`` are decoded in
a worker thread so a large frame does not hold the event loop.

Trust: the peer port accepts Raft messages and proposals from whoever
connects. Run it with mutual TLS (``--peer-client-cert-auth``) or behind a
firewall that admits only the members (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from syndic.raft import Message, RaftConfig
from syndic.server.peer_codec import (
    FORWARDED_PROPOSALS_MAX,
    PeerCodecError,
    decode_batch,
    decode_reply,
    decode_request,
    encode_batch,
    encode_reply,
    encode_request,
    is_request,
)
from syndic.server.peer_rtt import PeerRoundTrips

log = logging.getLogger(__name__)

FRAME_HEADER = struct.Struct(">I")
# The high bit of the length word marks a frame that carries one snapshot
# message; the other 31 bits are the body's length.
SNAPSHOT_FRAME_FLAG = 1 << 31
FRAME_LENGTH_MASK = SNAPSHOT_FRAME_FLAG - 1
# msgpack framing of one message around its entries' data: the fixed fields
# and a ReadIndex context (raft: READ_CONTEXT_BYTES_MAX = 4 KiB).
MESSAGE_FRAMING_BYTES_MAX = 8 * 1024
# msgpack framing of one entry (term, index, type, data header).
ENTRY_FRAMING_BYTES_MAX = 32
# Serialised state beyond the store's quota: the member and auth tables.
SNAPSHOT_SLACK_BYTES = 64 * 1024 * 1024
# Bodies at least this long are decoded in a worker thread: decoding a few
# MiB of msgpack takes milliseconds the event loop owes to heartbeats.
DECODE_INLINE_BYTES_MAX = 256 * 1024
# Frames waiting for one peer. Past these, new frames are dropped: a slow or
# dead peer must not grow the leader's memory without bound.
PEER_QUEUE_FRAMES_MAX = 4096
PEER_QUEUE_BYTES_MAX = 64 * 1024 * 1024
# A frame is written straight to the socket only while less than this waits
# in its buffer; past it, frames queue and the pump waits for the socket.
DIRECT_WRITE_BUFFER_BYTES_MAX = 256 * 1024
# Reconnection backoff: quick enough to rejoin within one election timeout.
RECONNECT_DELAY_S_MIN = 0.05
RECONNECT_DELAY_S_MAX = 1.0
DIAL_TIMEOUT_S = 1.0
# How long closing a connection may wait for its buffer to drain.
CLOSE_TIMEOUT_S = 1.0
# A reply carries a member table at most; anything longer is not one.
PEER_REPLY_BYTES_MAX = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FrameLimits:
    """The longest peer frame bodies, in bytes.

    ``frame_bytes_max``: one APPEND holds at most ``max_bytes_per_message``
    of entries, or a single entry if that is larger, and an entry is at most
    the request limit plus its framing (the member refuses larger requests
    before proposing them); a frame holds two such messages' worth, and the
    sender splits a cycle's batch to fit. ``snapshot_frame_bytes_max``: a
    snapshot is the store's state, which the quota bounds.

    >>> FrameLimits.derive(1_572_864, 2**31).frame_bytes_max
    3166208
    """

    frame_bytes_max: int
    snapshot_frame_bytes_max: int

    def __post_init__(self) -> None:
        if not 0 < self.frame_bytes_max <= self.snapshot_frame_bytes_max <= FRAME_LENGTH_MASK:
            raise ValueError(
                "FrameLimits needs 0 < frame_bytes_max <= snapshot_frame_bytes_max < 2 GiB"
            )

    @classmethod
    def derive(
        cls, entry_bytes_max: int, quota_bytes: int, raft: RaftConfig | None = None
    ) -> FrameLimits:
        raft = raft or RaftConfig(node_id=1)
        message = (
            max(raft.max_bytes_per_message, entry_bytes_max)
            + raft.max_entries_per_message * ENTRY_FRAMING_BYTES_MAX
            + MESSAGE_FRAMING_BYTES_MAX
        )
        frame = 2 * message
        snapshot = min(FRAME_LENGTH_MASK, max(frame, quota_bytes + SNAPSHOT_SLACK_BYTES))
        return cls(frame, snapshot)


@dataclass(frozen=True, slots=True)
class PeerAddress:
    node_id: int
    host: str
    port: int


@dataclass(slots=True)
class PeerStats:
    frames_sent: int = 0
    frames_dropped: int = 0
    bytes_sent: int = 0
    connected: bool = False
    # time.monotonic() when the current connection came up; 0.0 when down.
    connected_since_s: float = 0.0
    # The last heartbeat round trip to this peer (peer_rtt); 0.0 before one.
    round_trip_s: float = 0.0


class _PeerWriter:
    """Owns the outbound connection and bounded queue for one peer."""

    def __init__(
        self,
        peer: PeerAddress,
        ssl_context: ssl.SSLContext | None,
        on_unreachable: Callable[[int], None],
    ) -> None:
        self.peer = peer
        self.stats = PeerStats()
        self._ssl = ssl_context
        self._on_unreachable = on_unreachable
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(PEER_QUEUE_FRAMES_MAX)
        self._queued_bytes = 0
        self._task: asyncio.Task[None] | None = None
        # The live connection while the pump runs, for direct writes.
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"peer-writer-{self.peer.node_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def enqueue(self, frame: bytes) -> None:
        if self._write_now(frame):
            return
        if (
            not self.stats.connected
            or self._queue.full()
            or self._queued_bytes + len(frame) > PEER_QUEUE_BYTES_MAX
        ):
            self.stats.frames_dropped += 1
            self._on_unreachable(self.peer.node_id)
            return
        self._queued_bytes += len(frame)
        self._queue.put_nowait(frame)

    def _write_now(self, frame: bytes) -> bool:
        """Write ``frame`` at once when nothing is queued ahead of it and the
        socket keeps up; saves a task hop on every Raft round trip."""
        if self._stream is None or not self._queue.empty():
            return False
        reader, writer = self._stream
        transport = writer.transport
        if (
            reader.at_eof()
            or transport.is_closing()
            or transport.get_write_buffer_size() > DIRECT_WRITE_BUFFER_BYTES_MAX
        ):
            return False  # the pump sees the EOF, or waits for the socket
        writer.write(frame)
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(frame)
        return True

    def _drain_queue(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()
            self.stats.frames_dropped += 1
        self._queued_bytes = 0

    async def _run(self) -> None:
        delay_s = RECONNECT_DELAY_S_MIN
        while True:
            try:
                async with asyncio.timeout(DIAL_TIMEOUT_S):
                    reader, writer = await asyncio.open_connection(
                        self.peer.host, self.peer.port, ssl=self._ssl
                    )
            except (OSError, TimeoutError):
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RECONNECT_DELAY_S_MAX)
                continue
            delay_s = RECONNECT_DELAY_S_MIN
            self.stats.connected = True
            self.stats.connected_since_s = time.monotonic()
            try:
                self._stream = (reader, writer)
                await self._pump(reader, writer)
            except (OSError, ConnectionError):
                log.debug("peer %x: connection lost", self.peer.node_id)
            finally:
                self._stream = None
                self.stats.connected = False
                self.stats.connected_since_s = 0.0
                self._drain_queue()
                self._on_unreachable(self.peer.node_id)
                await _hang_up(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            frame = await self._queue.get()
            # A peer that exited closes its end with a FIN; writes to such a
            # stream neither fail nor arrive, so look for the EOF before each
            # batch and redial instead of writing into nothing.
            if reader.at_eof() or writer.is_closing():
                self._queued_bytes -= len(frame)
                self.stats.frames_dropped += 1
                raise ConnectionResetError(f"peer {self.peer.node_id:x} closed the connection")
            frames = [frame]
            # Coalesce whatever else is queued into one write.
            while not self._queue.empty():
                frames.append(self._queue.get_nowait())
            size = sum(len(f) for f in frames)
            self._queued_bytes -= size
            writer.writelines(frames)
            await writer.drain()
            self.stats.frames_sent += len(frames)
            self.stats.bytes_sent += size


class PeerTransport:
    """Sends Raft messages to peers and hands received ones to ``on_messages``."""

    def __init__(
        self,
        node_id: int,
        listen_host: str,
        listen_port: int,
        on_messages: Callable[[list[Message]], None],
        on_unreachable: Callable[[int], None],
        *,
        on_proposals: Callable[[list[bytes]], None] | None = None,
        on_request: Callable[[str, list[Any]], Awaitable[tuple[bool, Any]]] | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        limits: FrameLimits | None = None,
    ) -> None:
        # etcd's request limit (1.5 MiB) and default quota (2 GiB) when the
        # member does not say.
        self.limits = limits or FrameLimits.derive(1_572_864 + 1024, 2 * 1024**3)
        self.node_id = node_id
        self._listen = (listen_host, listen_port)
        self._on_messages = on_messages
        self._on_unreachable = on_unreachable
        self._on_proposals = on_proposals
        self._on_request = on_request
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self._writers: dict[int, _PeerWriter] = {}
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.StreamWriter] = set()
        self.frames_rejected = 0
        self.frames_oversized = 0
        self.round_trips = PeerRoundTrips()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_inbound, *self._listen, ssl=self._server_ssl, reuse_address=True
        )

    def set_peers(self, peers: list[PeerAddress]) -> None:
        """Dial new peers, hang up on removed ones; unchanged peers keep their link."""
        wanted = {p.node_id: p for p in peers if p.node_id != self.node_id}
        for node_id in list(self._writers):
            if node_id not in wanted or self._writers[node_id].peer != wanted[node_id]:
                writer = self._writers.pop(node_id)
                self.round_trips.forget(node_id)
                asyncio.get_running_loop().create_task(writer.stop())
        for node_id, peer in wanted.items():
            if node_id not in self._writers:
                writer = _PeerWriter(peer, self._client_ssl, self._on_unreachable)
                writer.start()
                self._writers[node_id] = writer

    def send(self, messages: tuple[Message, ...] | list[Message]) -> None:
        """Queue one frame per destination peer; never blocks."""
        self.round_trips.sent(messages, time.monotonic())
        by_peer: dict[int, list[Message]] = {}
        for msg in messages:
            by_peer.setdefault(msg.to_id, []).append(msg)
        for node_id, batch in by_peer.items():
            writer = self._writers.get(node_id)
            if writer is None:
                self._on_unreachable(node_id)
                continue
            plain = [m for m in batch if m.snapshot is None]
            for frame in self._frames(plain, []):
                writer.enqueue(frame)
            for msg in batch:
                if msg.snapshot is not None:
                    self._enqueue_snapshot(writer, msg)

    def forward_proposals(self, to_id: int, proposals: list[bytes]) -> bool:
        """Queue entry data for the leader ``to_id`` to propose; False if it cannot go."""
        writer = self._writers.get(to_id)
        if writer is None or not writer.stats.connected:
            return False
        for frame in self._frames([], proposals):
            writer.enqueue(frame)
        return True

    def _frames(self, messages: list[Message], proposals: list[bytes]) -> list[bytes]:
        """Frames carrying ``messages`` and ``proposals`` in order, each within
        the frame limit: a batch that is too long is split in halves."""
        if not messages and not proposals:
            return []
        body = encode_batch(messages, proposals)
        if len(body) <= self.limits.frame_bytes_max and len(proposals) <= FORWARDED_PROPOSALS_MAX:
            return [FRAME_HEADER.pack(len(body)) + body]
        if len(messages) + len(proposals) == 1:
            # FrameLimits.derive makes this impossible for what a member
            # produces; dropping it is what Raft expects of a lossy link.
            log.error("a peer message of %d bytes exceeds the frame limit; dropped", len(body))
            self.frames_oversized += 1
            return []
        if messages:
            half = (len(messages) + 1) // 2
            return self._frames(messages[:half], []) + self._frames(messages[half:], proposals)
        half = len(proposals) // 2
        return self._frames([], proposals[:half]) + self._frames([], proposals[half:])

    def _enqueue_snapshot(self, writer: _PeerWriter, msg: Message) -> None:
        body = encode_batch([msg])
        if len(body) > self.limits.snapshot_frame_bytes_max:
            log.error("a snapshot of %d bytes exceeds the snapshot frame limit", len(body))
            self.frames_oversized += 1
            return
        writer.enqueue(FRAME_HEADER.pack(SNAPSHOT_FRAME_FLAG | len(body)) + body)

    def stats(self) -> dict[int, PeerStats]:
        for node_id, w in self._writers.items():
            rtt = self.round_trips.stats.get(node_id)
            w.stats.round_trip_s = rtt.last_s if rtt is not None else 0.0
        return {node_id: w.stats for node_id, w in self._writers.items()}

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers.values():
            await writer.stop()
        self._writers.clear()
        # Closing the sockets ends each inbound reader with IncompleteReadError;
        # cancelling their tasks instead makes asyncio log spurious errors.
        for inbound in list(self._inbound):
            inbound.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _answer(self, body: bytes, writer: asyncio.StreamWriter) -> None:
        try:
            op, args = decode_request(body)
        except PeerCodecError as exc:
            reply = encode_reply(False, ["INVALID_ARGUMENT", str(exc)])
        else:
            if self._on_request is None:
                reply = encode_reply(False, ["UNIMPLEMENTED", f"peer request {op!r}"])
            else:
                reply = encode_reply(*await self._on_request(op, args))
        writer.write(FRAME_HEADER.pack(len(reply)) + reply)
        await writer.drain()

    async def _serve_inbound(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._inbound.add(writer)
        try:
            while True:
                header = await reader.readexactly(FRAME_HEADER.size)
                (word,) = FRAME_HEADER.unpack(header)
                is_snapshot = bool(word & SNAPSHOT_FRAME_FLAG)
                length = word & FRAME_LENGTH_MASK
                limit = (
                    self.limits.snapshot_frame_bytes_max
                    if is_snapshot
                    else self.limits.frame_bytes_max
                )
                if length > limit:
                    # The stream cannot be resynchronised without reading the
                    # body, which is what the limit refuses: hang up.
                    log.warning("peer frame of %d bytes exceeds %d; closing", length, limit)
                    self.frames_rejected += 1
                    return
                body = await reader.readexactly(length)
                if not is_snapshot and is_request(body):
                    await self._answer(body, writer)
                    continue
                try:
                    messages, proposals = await _decode(body)
                    if any(m.snapshot is not None for m in messages) != is_snapshot:
                        raise PeerCodecError("snapshot messages travel alone in marked frames")
                except PeerCodecError as exc:
                    log.warning("dropping a malformed peer frame: %s", exc)
                    self.frames_rejected += 1
                    continue
                mine = [m for m in messages if m.to_id == self.node_id]
                if len(mine) != len(messages):
                    self.frames_rejected += 1
                if mine:
                    self.round_trips.received(mine, time.monotonic())
                    self._on_messages(mine)
                if proposals and self._on_proposals is not None:
                    self._on_proposals(proposals)
        except (asyncio.IncompleteReadError, OSError, ConnectionError):
            pass
        finally:
            self._inbound.discard(writer)
            writer.close()


async def _hang_up(writer: asyncio.StreamWriter) -> None:
    """Close a connection; abort it if its buffer cannot drain in time. A
    graceful close waits to flush what is buffered, and a peer that stopped
    reading (paused, or shutting down itself) would hold a stopping member
    here for ever."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT_S):
            await writer.wait_closed()
    except TimeoutError:
        writer.transport.abort()
    except (OSError, ConnectionError):
        pass


async def _decode(body: bytes) -> tuple[list[Message], list[bytes]]:
    # The inbound reader awaits each frame's decoding before reading the
    # next, so frames of one connection are still handed over in order.
    if len(body) < DECODE_INLINE_BYTES_MAX:
        return decode_batch(body)
    return await asyncio.to_thread(decode_batch, body)


async def call_peer(
    host: str,
    port: int,
    op: str,
    args: list[Any],
    timeout_s: float,
    ssl_context: ssl.SSLContext | None = None,
) -> tuple[bool, Any]:
    """Send one request to the member whose peer port is ``host:port``; its
    (ok, payload) reply. Raises OSError, TimeoutError or PeerCodecError when
    no sound reply arrives within ``timeout_s``."""
    async with asyncio.timeout(DIAL_TIMEOUT_S):
        reader, writer = await asyncio.open_connection(host, port, ssl=ssl_context)
    try:
        return await _request(reader, writer, op, args, timeout_s)
    finally:
        await _hang_up(writer)


async def _request(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    op: str,
    args: list[Any],
    timeout_s: float,
) -> tuple[bool, Any]:
    body = encode_request(op, args)
    writer.write(FRAME_HEADER.pack(len(body)) + body)
    try:
        async with asyncio.timeout(timeout_s):
            (length,) = FRAME_HEADER.unpack(await reader.readexactly(FRAME_HEADER.size))
            if length > PEER_REPLY_BYTES_MAX:
                raise PeerCodecError(f"peer reply of {length} bytes is over the bound")
            return decode_reply(await reader.readexactly(length))
    except asyncio.IncompleteReadError as exc:
        raise ConnectionResetError("the peer closed before answering") from exc


class PeerRequester:
    """Requests to one member at a time over a connection kept open between
    them, so a follower's stream of forwarded keep-alives costs no dial each.

    Requests are sent one after the other (the member answers a connection's
    requests in order); a failed one closes the connection, and the next
    request dials again."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._lock = asyncio.Lock()
        self._address: tuple[str, int] | None = None
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def call(
        self, host: str, port: int, op: str, args: list[Any], timeout_s: float
    ) -> tuple[bool, Any]:
        """As :func:`call_peer`, over the kept connection when it leads to ``host:port``."""
        async with self._lock:
            if self._stream is not None and (
                self._address != (host, port) or self._stream[0].at_eof()
            ):
                await self._close()
            if self._stream is None:
                async with asyncio.timeout(DIAL_TIMEOUT_S):
                    self._stream = await asyncio.open_connection(host, port, ssl=self._ssl)
                self._address = (host, port)
            reader, writer = self._stream
            try:
                return await _request(reader, writer, op, args, timeout_s)
            except BaseException:
                await self._close()
                raise

    async def close(self) -> None:
        async with self._lock:
            await self._close()

    async def _close(self) -> None:
        if self._stream is not None:
            writer = self._stream[1]
            self._stream = None
            await _hang_up(writer)
