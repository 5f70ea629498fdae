"""syndic's gRPC server: HTTP/2 and gRPC's framing on an asyncio Protocol.

``grpc.aio``'s server spends about 200 µs of CPU per unary call on this
machine's benchmark, most of it handing each call between the gRPC core's
threads and the event loop, and it writes every response on its own, which
makes clients pay twice as much per call as they pay against etcd. This
server parses frames in the member's own event loop, answers from the
handler's task, and writes everything produced in one loop pass with one
system call; a call costs about 8 µs of server time on its own.

The HTTP/2 and gRPC framing rules, flow control and every limit live in a
sans-IO object, :class:`~syndic.server.h2.protocol.H2Protocol` (bytes and
time in, events and bytes out); :class:`~syndic.server.h2.connection.Http2Connection`
is the thin asyncio driver that feeds it and runs the handlers.

It serves the handlers that :func:`syndic.api.services.add_servicer`
registers, with the parts of grpc.aio's servicer context that syndic uses
(``abort``, ``write``, ``invocation_metadata``, ``code``, ``peer``), so the
same servicers run on either server. ``grpc`` stays the client.

Example::

    server = GrpcServer(max_receive_message_bytes=2 * 1024 * 1024)
    add_servicer(server, KV_SERVICE, MyKV())
    server.add_insecure_port("127.0.0.1:2379")
    await server.start()
    ...
    await server.stop(grace_s=1.0)
"""

from syndic.server.h2.limits import ServerLimits
from syndic.server.h2.server import GrpcServer

__all__ = ["GrpcServer", "ServerLimits"]
