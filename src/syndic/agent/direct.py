"""Reads answered by writing their HTTP/1.1 bytes straight to the connection.

aiohttp turns each returned ``Response`` into bytes through a header multidict,
the ``on_response_prepare`` signal, header serialisation and its stream
writer; with the handler's resumption that was about 75 µs of CPU per answer
here, beside the 13 µs of the kernel's loopback send. When one change wakes a
thousand blocking queries of one service, their bodies are the same shared
bytes and only the head differs (index, consistency), so the agent writes status line,
headers and body in one ``transport.write`` and hands aiohttp a response with
nothing left to send. The bytes on the wire are those aiohttp would send for
``body_response`` (without its ``Server`` header, which Consul does not send),
gzipped when the request accepts gzip, as Consul's answers are.

A request qualifies only where aiohttp's own answer would need nothing this
path skips: a ``GET`` over HTTP/1.1 that keeps the connection open (no
``Connection`` header to add), on a live transport, with no
``on_response_prepare`` handler registered (a handler there may add headers).
Anything else is answered by aiohttp as before.

Example::

    direct = DirectAnswer.open(request)
    if direct is not None:
        direct.send(body, index, "leader")
        return direct.sent_response()
"""

from __future__ import annotations

import functools
import gzip
from collections import OrderedDict

from aiohttp import HttpVersion11, web
from aiohttp.helpers import rfc822_formatted_time

from syndic.agent.http_common import GZIP_LEVEL, VARY, accepts_gzip, consul_headers


class SentResponse(web.StreamResponse):
    """What a handler returns once its answer went out: aiohttp writes nothing more.

    aiohttp calls ``prepare`` and ``write_eof`` and then reads ``keep_alive``;
    the answer was only sent directly when the client keeps the connection.
    """

    def __init__(self) -> None:
        super().__init__()
        self._keep_alive = True

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write_eof(self, data: bytes = b"") -> None:
        return None


#: Heads kept, by (index, consistency, length, date): the thousand answers of one
#: change share one head, so a handful of entries covers every fan-out in flight.
HEADS_CACHED_MAX = 64


@functools.lru_cache(maxsize=HEADS_CACHED_MAX)
def _head(index: int, consistency: str, length: int, gzipped: bool, date: str) -> bytes:
    lines = [
        "HTTP/1.1 200 OK",
        "Content-Type: application/json",
        *(f"{name}: {value}" for name, value in consul_headers(index, consistency).items()),
        "{}: {}".format(*VARY),
        *(["Content-Encoding: gzip"] if gzipped else []),
        f"Content-Length: {length}",
        f"Date: {date}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


#: Gzipped bodies kept, each beside the body it was made from: the woken queries
#: of one change that accept gzip share one compression.
GZIPPED_BODIES_MAX = 64

_gzipped: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()


def gzipped(body: bytes) -> bytes:
    """``body`` gzipped, once per body object. The entry holds the body itself, so
    its id cannot be reused by another object while the entry is kept."""
    entry = _gzipped.get(id(body))
    if entry is not None and entry[0] is body:
        _gzipped.move_to_end(id(body))
        return entry[1]
    packed = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
    _gzipped[id(body)] = (body, packed)
    if len(_gzipped) > GZIPPED_BODIES_MAX:
        _gzipped.popitem(last=False)
    return packed


def answer_bytes(body: bytes, index: int, consistency: str, gzip_body: bool = False) -> bytes:
    """A 200 JSON answer with Consul's headers, as aiohttp would serialise it;
    gzipped when ``gzip_body`` (the request accepts it)."""
    if gzip_body:
        body = gzipped(body)
    return _head(index, consistency, len(body), gzip_body, rfc822_formatted_time()) + body


class DirectAnswer:
    """One request's right to be answered by a direct write, used at most once."""

    __slots__ = ("_gzip", "_request", "sent")

    def __init__(self, request: web.Request) -> None:
        self._request = request
        self._gzip = accepts_gzip(request)
        self.sent = False

    @classmethod
    def open(cls, request: web.Request) -> DirectAnswer | None:
        """The request's direct answer, or None when aiohttp must answer it."""
        transport = request.transport
        if (
            request.method != "GET"
            or request.version != HttpVersion11
            or not request.keep_alive
            or transport is None
            or transport.is_closing()
            or any(app.on_response_prepare for app in request.match_info.apps)
        ):
            return None
        return cls(request)

    def send(self, body: bytes, index: int, consistency: str) -> bool:
        """Write the answer; False (nothing written) if already sent or the client left."""
        transport = self._request.transport
        if self.sent or transport is None or transport.is_closing():
            return False
        transport.write(answer_bytes(body, index, consistency, self._gzip))
        self.sent = True
        return True

    def sent_response(self) -> web.StreamResponse:
        assert self.sent, "sent_response() before send()"
        return SentResponse()
