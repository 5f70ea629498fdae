"""etcd v3 gRPC services, bound to etcd's own method paths.

syndic's protobuf messages live in the packages ``syndic.api.v3.*`` so that
they can share a process with an etcd client's ``etcdserverpb``. Protobuf
packages do not travel on the wire, but gRPC method paths do: a client calls
``/etcdserverpb.KV/Range`` whatever its generated code is called. This
module is the one place where those paths are written down, each next to its
streaming shape and its syndic request and response classes, so the server
and syndic's own client never derive a path from a package name.

Example::

    server = grpc.aio.server(options=grpc_server_options())
    add_servicer(server, KV_SERVICE, MyKV())       # MyKV has async Range, Put, ...
    ...
    stub = make_stub(grpc.aio.insecure_channel(target), KV_SERVICE)
    response = await stub.Range(rpc_pb2.RangeRequest(key=b"k"))
"""

from __future__ import annotations

import enum
import inspect
import keyword
import types
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import grpc
from google.protobuf.message import DecodeError, Message

from syndic.api.gen import rpc_pb2, v3election_pb2, v3lock_pb2

__all__ = [
    "AUTH_SERVICE",
    "CLUSTER_SERVICE",
    "CONCURRENCY_SERVICES",
    "DEFAULT_MAX_REQUEST_BYTES",
    "ELECTION_SERVICE",
    "ETCD_PACKAGE",
    "GRPC_OVERHEAD_BYTES",
    "KV_SERVICE",
    "LEASE_SERVICE",
    "LOCK_SERVICE",
    "MAINTENANCE_SERVICE",
    "SERVICES",
    "WATCH_SERVICE",
    "ApiBindingError",
    "EncodedMessage",
    "HandlerError",
    "MethodKind",
    "MethodSpec",
    "ServiceSpec",
    "ServiceStub",
    "UnknownMethodError",
    "UnknownServiceError",
    "add_servicer",
    "grpc_server_options",
    "make_stub",
    "service",
]

# The protobuf package of etcd's rpc.proto; it prefixes every service name on
# the wire.
ETCD_PACKAGE: Final = "etcdserverpb"

KV_SERVICE: Final = "etcdserverpb.KV"
WATCH_SERVICE: Final = "etcdserverpb.Watch"
LEASE_SERVICE: Final = "etcdserverpb.Lease"
CLUSTER_SERVICE: Final = "etcdserverpb.Cluster"
MAINTENANCE_SERVICE: Final = "etcdserverpb.Maintenance"
AUTH_SERVICE: Final = "etcdserverpb.Auth"

# etcd's lock and election services (server/etcdserver/api/v3lock and
# v3election) live in protobuf packages of their own.
LOCK_SERVICE: Final = "v3lockpb.Lock"
ELECTION_SERVICE: Final = "v3electionpb.Election"
_SERVICE_PACKAGES: Final = (ETCD_PACKAGE, "v3lockpb", "v3electionpb")

# etcd: --max-request-bytes defaults to 1.5 MiB (embed.DefaultMaxRequestBytes).
DEFAULT_MAX_REQUEST_BYTES: Final = 1536 * 1024
# etcd: v3rpc.grpcOverheadBytes. gRPC framing and the other fields of a
# request may exceed the payload limit a little; etcd lets the transport
# accept this much more and rejects an over-large payload itself, with
# ErrRequestTooLarge, so that the client sees etcd's error and not gRPC's.
GRPC_OVERHEAD_BYTES: Final = 512 * 1024
# etcd: v3rpc.maxSendBytes (math.MaxInt32). A Range reply is bounded by the
# store's own limits, not by the transport.
_MAX_SEND_BYTES: Final = 2**31 - 1


class ApiBindingError(Exception):
    """A service, method or handler cannot be bound to etcd's API."""


class UnknownServiceError(ApiBindingError):
    """The name is not one of etcd's v3 services."""

    def __init__(self, service_name: str) -> None:
        known = ", ".join(sorted([*SERVICES, *CONCURRENCY_SERVICES]))
        super().__init__(f"unknown etcd v3 service {service_name!r}; known services: {known}")
        self.service_name = service_name


class UnknownMethodError(ApiBindingError):
    """The service has no method of that name."""

    def __init__(self, service_name: str, method_name: str, known: Iterable[str]) -> None:
        super().__init__(
            f"service {service_name!r} has no method {method_name!r}; "
            f"its methods are: {', '.join(known)}"
        )
        self.service_name = service_name
        self.method_name = method_name


class HandlerError(ApiBindingError):
    """A handler object cannot serve the service it was registered for."""


class MethodKind(enum.Enum):
    """The streaming shape of a method, as seen from the client."""

    UNARY_UNARY = "unary-unary"
    UNARY_STREAM = "unary-stream"
    STREAM_STREAM = "stream-stream"


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One RPC of etcd's API: its wire path, shape and message classes."""

    service_name: str
    name: str
    kind: MethodKind
    request_type: type[Message]
    response_type: type[Message]

    def __post_init__(self) -> None:
        package, _, short = self.service_name.rpartition(".")
        if package not in _SERVICE_PACKAGES or not short.isidentifier():
            raise ApiBindingError(
                f"service name {self.service_name!r} is not of the form '<package>.<Name>' "
                f"with a package among {', '.join(_SERVICE_PACKAGES)}"
            )
        if not self.name.isidentifier() or keyword.iskeyword(self.name):
            raise ApiBindingError(f"method name {self.name!r} is not a valid identifier")

    @property
    def path(self) -> str:
        """The HTTP/2 path a gRPC client sends, e.g. ``/etcdserverpb.KV/Range``."""
        return f"/{self.service_name}/{self.name}"


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One of etcd's services and its methods, in etcd's declaration order."""

    full_name: str
    methods: tuple[MethodSpec, ...]

    def __post_init__(self) -> None:
        names = [method.name for method in self.methods]
        if len(set(names)) != len(names):
            raise ApiBindingError(f"service {self.full_name!r} declares a method twice: {names}")
        for method in self.methods:
            if method.service_name != self.full_name:
                raise ApiBindingError(
                    f"method {method.path} does not belong to service {self.full_name!r}"
                )

    @property
    def method_names(self) -> tuple[str, ...]:
        return tuple(method.name for method in self.methods)

    def method(self, name: str) -> MethodSpec:
        """The method called ``name``; raises UnknownMethodError otherwise."""
        for method in self.methods:
            if method.name == name:
                return method
        raise UnknownMethodError(self.full_name, name, self.method_names)


_UU = MethodKind.UNARY_UNARY
_US = MethodKind.UNARY_STREAM
_SS = MethodKind.STREAM_STREAM

_MethodRow = tuple[str, MethodKind, type[Message], type[Message]]


def _service(full_name: str, rows: Iterable[_MethodRow]) -> ServiceSpec:
    methods = tuple(
        MethodSpec(full_name, name, kind, request, response)
        for name, kind, request, response in rows
    )
    return ServiceSpec(full_name, methods)


_r = rpc_pb2

# etcd: api/etcdserverpb/rpc.proto, release 3.5; order follows etcd's.
_SERVICE_LIST: Final = (
    _service(
        KV_SERVICE,
        [
            ("Range", _UU, _r.RangeRequest, _r.RangeResponse),
            ("Put", _UU, _r.PutRequest, _r.PutResponse),
            ("DeleteRange", _UU, _r.DeleteRangeRequest, _r.DeleteRangeResponse),
            ("Txn", _UU, _r.TxnRequest, _r.TxnResponse),
            ("Compact", _UU, _r.CompactionRequest, _r.CompactionResponse),
        ],
    ),
    _service(
        WATCH_SERVICE,
        [("Watch", _SS, _r.WatchRequest, _r.WatchResponse)],
    ),
    _service(
        LEASE_SERVICE,
        [
            ("LeaseGrant", _UU, _r.LeaseGrantRequest, _r.LeaseGrantResponse),
            ("LeaseRevoke", _UU, _r.LeaseRevokeRequest, _r.LeaseRevokeResponse),
            ("LeaseKeepAlive", _SS, _r.LeaseKeepAliveRequest, _r.LeaseKeepAliveResponse),
            ("LeaseTimeToLive", _UU, _r.LeaseTimeToLiveRequest, _r.LeaseTimeToLiveResponse),
            ("LeaseLeases", _UU, _r.LeaseLeasesRequest, _r.LeaseLeasesResponse),
        ],
    ),
    _service(
        CLUSTER_SERVICE,
        [
            ("MemberAdd", _UU, _r.MemberAddRequest, _r.MemberAddResponse),
            ("MemberRemove", _UU, _r.MemberRemoveRequest, _r.MemberRemoveResponse),
            ("MemberUpdate", _UU, _r.MemberUpdateRequest, _r.MemberUpdateResponse),
            ("MemberList", _UU, _r.MemberListRequest, _r.MemberListResponse),
            ("MemberPromote", _UU, _r.MemberPromoteRequest, _r.MemberPromoteResponse),
        ],
    ),
    _service(
        MAINTENANCE_SERVICE,
        [
            ("Alarm", _UU, _r.AlarmRequest, _r.AlarmResponse),
            ("Status", _UU, _r.StatusRequest, _r.StatusResponse),
            ("Defragment", _UU, _r.DefragmentRequest, _r.DefragmentResponse),
            ("Hash", _UU, _r.HashRequest, _r.HashResponse),
            ("HashKV", _UU, _r.HashKVRequest, _r.HashKVResponse),
            ("Snapshot", _US, _r.SnapshotRequest, _r.SnapshotResponse),
            ("MoveLeader", _UU, _r.MoveLeaderRequest, _r.MoveLeaderResponse),
            ("Downgrade", _UU, _r.DowngradeRequest, _r.DowngradeResponse),
        ],
    ),
    _service(
        AUTH_SERVICE,
        [
            ("AuthEnable", _UU, _r.AuthEnableRequest, _r.AuthEnableResponse),
            ("AuthDisable", _UU, _r.AuthDisableRequest, _r.AuthDisableResponse),
            ("AuthStatus", _UU, _r.AuthStatusRequest, _r.AuthStatusResponse),
            ("Authenticate", _UU, _r.AuthenticateRequest, _r.AuthenticateResponse),
            ("UserAdd", _UU, _r.AuthUserAddRequest, _r.AuthUserAddResponse),
            ("UserGet", _UU, _r.AuthUserGetRequest, _r.AuthUserGetResponse),
            ("UserList", _UU, _r.AuthUserListRequest, _r.AuthUserListResponse),
            ("UserDelete", _UU, _r.AuthUserDeleteRequest, _r.AuthUserDeleteResponse),
            (
                "UserChangePassword",
                _UU,
                _r.AuthUserChangePasswordRequest,
                _r.AuthUserChangePasswordResponse,
            ),
            ("UserGrantRole", _UU, _r.AuthUserGrantRoleRequest, _r.AuthUserGrantRoleResponse),
            ("UserRevokeRole", _UU, _r.AuthUserRevokeRoleRequest, _r.AuthUserRevokeRoleResponse),
            ("RoleAdd", _UU, _r.AuthRoleAddRequest, _r.AuthRoleAddResponse),
            ("RoleGet", _UU, _r.AuthRoleGetRequest, _r.AuthRoleGetResponse),
            ("RoleList", _UU, _r.AuthRoleListRequest, _r.AuthRoleListResponse),
            ("RoleDelete", _UU, _r.AuthRoleDeleteRequest, _r.AuthRoleDeleteResponse),
            (
                "RoleGrantPermission",
                _UU,
                _r.AuthRoleGrantPermissionRequest,
                _r.AuthRoleGrantPermissionResponse,
            ),
            (
                "RoleRevokePermission",
                _UU,
                _r.AuthRoleRevokePermissionRequest,
                _r.AuthRoleRevokePermissionResponse,
            ),
        ],
    ),
)

SERVICES: Final[Mapping[str, ServiceSpec]] = types.MappingProxyType(
    {spec.full_name: spec for spec in _SERVICE_LIST}
)
"""Every etcd v3 service, keyed by its wire name (``etcdserverpb.KV``, ...)."""

_lk = v3lock_pb2
_el = v3election_pb2

# etcd: v3lockpb/v3lock.proto and v3electionpb/v3election.proto, release 3.5.
CONCURRENCY_SERVICES: Final[Mapping[str, ServiceSpec]] = types.MappingProxyType(
    {
        spec.full_name: spec
        for spec in (
            _service(
                LOCK_SERVICE,
                [
                    ("Lock", _UU, _lk.LockRequest, _lk.LockResponse),
                    ("Unlock", _UU, _lk.UnlockRequest, _lk.UnlockResponse),
                ],
            ),
            _service(
                ELECTION_SERVICE,
                [
                    ("Campaign", _UU, _el.CampaignRequest, _el.CampaignResponse),
                    ("Proclaim", _UU, _el.ProclaimRequest, _el.ProclaimResponse),
                    ("Leader", _UU, _el.LeaderRequest, _el.LeaderResponse),
                    ("Observe", _US, _el.LeaderRequest, _el.LeaderResponse),
                    ("Resign", _UU, _el.ResignRequest, _el.ResignResponse),
                ],
            ),
        )
    }
)
"""etcd's lock and election services (``v3lockpb.Lock``, ``v3electionpb.Election``)."""


def service(service_name: str) -> ServiceSpec:
    """The spec of ``service_name``; raises UnknownServiceError otherwise."""
    spec = None
    if isinstance(service_name, str):
        spec = SERVICES.get(service_name) or CONCURRENCY_SERVICES.get(service_name)
    if spec is None:
        raise UnknownServiceError(str(service_name))
    return spec


def grpc_server_options(
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> list[tuple[str, int]]:
    """gRPC server options that size messages as etcd's server does.

    etcd's transport accepts ``max_request_bytes`` plus GRPC_OVERHEAD_BYTES
    and answers larger messages with RESOURCE_EXHAUSTED; what lies between is
    for the server to refuse with etcd's "request is too large".
    """
    if isinstance(max_request_bytes, bool) or not isinstance(max_request_bytes, int):
        raise TypeError(f"max_request_bytes must be an int, got {type(max_request_bytes).__name__}")
    receive_bytes_max = max_request_bytes + GRPC_OVERHEAD_BYTES
    if max_request_bytes <= 0 or receive_bytes_max > _MAX_SEND_BYTES:
        raise ValueError(
            f"max_request_bytes must be in [1, {_MAX_SEND_BYTES - GRPC_OVERHEAD_BYTES}], "
            f"got {max_request_bytes}"
        )
    return [
        ("grpc.max_receive_message_length", receive_bytes_max),
        ("grpc.max_send_message_length", _MAX_SEND_BYTES),
        # gRPC sets SO_REUSEPORT by default, so a second member (or an etcd
        # started with it) would bind the same client port silently and
        # split the traffic; a busy port must be an error, as it is for etcd.
        ("grpc.so_reuseport", 0),
    ]


class _UndecodableRequest:
    """Stands in for a request whose bytes did not parse.

    grpc.aio turns an exception raised by a deserializer into UNKNOWN and
    logs it as a servicer bug; etcd (grpc-go) answers INTERNAL "grpc: error
    unmarshalling request". Parsing into this value instead lets the method
    wrapper abort with etcd's code before the handler sees anything.
    """

    __slots__ = ("details",)

    def __init__(self, details: str) -> None:
        self.details = details


def _request_deserializer(request_type: type[Message]) -> Callable[[bytes], object]:
    def deserialize(data: bytes) -> object:
        try:
            return request_type.FromString(data)
        except DecodeError as exc:
            return _UndecodableRequest(f"grpc: error unmarshalling request: {exc}")

    return deserialize


def _type_error(expected: type[Message], got: object, where: str) -> TypeError:
    return TypeError(
        f"{where} expects {expected.DESCRIPTOR.full_name} "
        f"({expected.__module__}.{expected.__qualname__}), got "
        f"{type(got).__module__}.{type(got).__qualname__}"
    )


@dataclass(frozen=True, slots=True)
class EncodedMessage:
    """A response a handler has already serialised, sent as it is.

    A watch event that goes to a thousand streams is encoded once and only
    each stream's own fields are added per stream; ``message_type`` is the
    class the bytes encode, checked like any other response's class.
    """

    message_type: type[Message]
    payload: bytes

    def __post_init__(self) -> None:
        if type(self.payload) is not bytes:
            raise TypeError(f"EncodedMessage.payload must be bytes, got {type(self.payload)}")


def _is_response(message: object, message_type: type[Message]) -> bool:
    if type(message) is EncodedMessage:
        return message.message_type is message_type
    return isinstance(message, message_type)


def _serializer(message_type: type[Message]) -> Callable[[Message], bytes]:
    # Callers check types first (see _checked_*): grpc swallows a serializer
    # exception, logs it and sends an empty message, so raising here would
    # turn a mix-up into a silent default request. The assert is a last line.
    def serialize(message: Message | EncodedMessage) -> bytes:
        assert _is_response(message, message_type), f"{message!r} is not {message_type}"
        if type(message) is EncodedMessage:
            return message.payload
        return message.SerializeToString()  # type: ignore[union-attr]

    return serialize


async def _abort_if_undecodable(request: object, context: Any) -> None:
    if isinstance(request, _UndecodableRequest):
        await context.abort(grpc.StatusCode.INTERNAL, request.details)


async def _abort_on_bad_response(method: MethodSpec, response: object, context: Any) -> NoReturn:
    error = _type_error(method.response_type, response, f"handler for {method.path}")
    await context.abort(grpc.StatusCode.INTERNAL, str(error))
    raise error  # abort raises; this line only satisfies the type checker


async def _checked_requests(requests: Any, context: Any) -> AsyncIterator[Any]:
    async for request in requests:
        await _abort_if_undecodable(request, context)
        yield request


class _CheckedWriteContext:
    """A servicer context whose ``write`` aborts on a response of the wrong class
    (grpc would log the serializer's failure and send an empty message)."""

    __slots__ = ("_context", "_method")

    def __init__(self, context: Any, method: MethodSpec) -> None:
        self._context = context
        self._method = method

    async def write(self, response: Message | EncodedMessage) -> None:
        if not _is_response(response, self._method.response_type):
            await _abort_on_bad_response(self._method, response, self._context)
        await self._context.write(response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


def _wrap_behavior(method: MethodSpec, behavior: Callable[..., Any]) -> Callable[..., Any]:
    """Guard ``behavior`` against undecodable requests and wrong response types."""
    streaming_requests = method.kind is MethodKind.STREAM_STREAM

    response_type = method.response_type
    is_coroutine = inspect.iscoroutinefunction(behavior)

    async def unary_response(request: Any, context: Any) -> Any:
        # The per-call checks are inlined: this runs for every request.
        if type(request) is _UndecodableRequest:
            await context.abort(grpc.StatusCode.INTERNAL, request.details)
        response = behavior(request, context)
        if is_coroutine or inspect.isawaitable(response):
            response = await response
        if not isinstance(response, response_type):
            await _abort_on_bad_response(method, response, context)
        return response

    async def streamed_responses(request: Any, context: Any) -> AsyncIterator[Any]:
        if streaming_requests:
            request = _checked_requests(request, context)
        else:
            await _abort_if_undecodable(request, context)
        async for response in behavior(request, context):
            if not isinstance(response, method.response_type):
                await _abort_on_bad_response(method, response, context)
            yield response

    async def written_responses(request: Any, context: Any) -> None:
        # A coroutine handler that answers through context.write().
        if streaming_requests:
            request = _checked_requests(request, context)
        else:
            await _abort_if_undecodable(request, context)
        await behavior(request, _CheckedWriteContext(context, method))

    if method.kind is MethodKind.UNARY_UNARY:
        return unary_response
    if inspect.isasyncgenfunction(behavior):
        return streamed_responses
    return written_responses


_HANDLER_FACTORIES: Final[Mapping[MethodKind, Callable[..., Any]]] = {
    MethodKind.UNARY_UNARY: grpc.unary_unary_rpc_method_handler,
    MethodKind.UNARY_STREAM: grpc.unary_stream_rpc_method_handler,
    MethodKind.STREAM_STREAM: grpc.stream_stream_rpc_method_handler,
}


def _rpc_method_handler(method: MethodSpec, behavior: Callable[..., Any]) -> Any:
    return _HANDLER_FACTORIES[method.kind](
        _wrap_behavior(method, behavior),
        request_deserializer=_request_deserializer(method.request_type),
        response_serializer=_serializer(method.response_type),
    )


def add_servicer(server: Any, service_name: str, handler: object) -> tuple[str, ...]:
    """Serve ``service_name`` on ``server`` with ``handler``.

    ``server`` is syndic's :class:`~syndic.server.h2.GrpcServer` or a
    ``grpc.aio.Server``; both take ``add_registered_method_handlers``.

    ``handler`` has one attribute per implemented method, named as etcd names
    it (``Range``, ``Put``, ``Watch``, ...), with grpc.aio's signatures:
    ``async def Range(request, context) -> RangeResponse`` for unary methods;
    for streamed responses an async generator such as
    ``async def Watch(request_iterator, context)`` that yields responses (or a
    coroutine that answers with ``context.write``). Streamed requests must be
    read from ``request_iterator``, not ``context.read()``, so that
    undecodable ones are refused. A method the handler lacks is answered
    UNIMPLEMENTED by gRPC, as etcd answers a method it does not know.

    Bad input gets etcd's answer before the handler runs: a request that does
    not parse ends the call with INTERNAL, as grpc-go does. A handler that
    returns the wrong message class ends the call with INTERNAL, naming it.

    Everything is checked before the server is touched: on error nothing is
    registered. Returns the names of the registered methods.
    """
    spec = service(service_name)
    behaviors: dict[str, Callable[..., Any]] = {}
    for method in spec.methods:
        behavior = getattr(handler, method.name, None)
        if behavior is None:
            continue
        if not callable(behavior):
            raise HandlerError(
                f"{type(handler).__qualname__}.{method.name} must be callable to serve "
                f"{method.path}, got {type(behavior).__name__}"
            )
        if method.kind is not MethodKind.UNARY_UNARY and not (
            inspect.isasyncgenfunction(behavior) or inspect.iscoroutinefunction(behavior)
        ):
            # grpc.aio would only find out at the first call, and then fail
            # it with UNKNOWN; a synchronous generator cannot stream here.
            raise HandlerError(
                f"{type(handler).__qualname__}.{method.name} serves the streaming method "
                f"{method.path}: it must be an async generator function or a coroutine "
                "function using context.write()"
            )
        behaviors[method.name] = behavior
    if not behaviors:
        raise HandlerError(
            f"{type(handler).__qualname__} implements none of {spec.full_name}'s methods "
            f"({', '.join(spec.method_names)})"
        )
    method_handlers = {
        name: _rpc_method_handler(spec.method(name), behavior)
        for name, behavior in behaviors.items()
    }
    server.add_registered_method_handlers(spec.full_name, method_handlers)
    return tuple(behaviors)


class _CheckedUnaryRequest:
    """A multi-callable that refuses a request of the wrong class up front."""

    __slots__ = ("_call", "_method")

    def __init__(self, call: Any, method: MethodSpec) -> None:
        self._call = call
        self._method = method

    def __call__(self, request: Message, **kwargs: Any) -> Any:
        if not isinstance(request, self._method.request_type):
            raise _type_error(self._method.request_type, request, self._method.path)
        return self._call(request, **kwargs)


class _CheckedStreamCall:
    """A streaming call whose ``write`` refuses a request of the wrong class."""

    __slots__ = ("_call", "_method")

    def __init__(self, call: Any, method: MethodSpec) -> None:
        self._call = call
        self._method = method

    async def write(self, request: Message) -> None:
        if not isinstance(request, self._method.request_type):
            raise _type_error(self._method.request_type, request, self._method.path)
        await self._call.write(request)

    def __aiter__(self) -> Any:
        return self._call.__aiter__()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)


class _CheckedStreamRequest:
    """A stream multi-callable whose requests, iterated or written, are type-checked."""

    __slots__ = ("_call", "_method")

    def __init__(self, call: Any, method: MethodSpec) -> None:
        self._call = call
        self._method = method

    def __call__(self, request_iterator: Any = None, **kwargs: Any) -> Any:
        if request_iterator is not None:
            request_iterator = self._checked(request_iterator)
        return _CheckedStreamCall(self._call(request_iterator, **kwargs), self._method)

    def _check(self, request: object) -> Any:
        if not isinstance(request, self._method.request_type):
            raise _type_error(self._method.request_type, request, self._method.path)
        return request

    def _checked(self, requests: Any) -> Any:
        if hasattr(requests, "__aiter__"):
            return self._checked_async(requests)
        return (self._check(request) for request in requests)

    async def _checked_async(self, requests: Any) -> AsyncIterator[Any]:
        async for request in requests:
            yield self._check(request)


_CALL_FACTORY_NAMES: Final[Mapping[MethodKind, str]] = {
    MethodKind.UNARY_UNARY: "unary_unary",
    MethodKind.UNARY_STREAM: "unary_stream",
    MethodKind.STREAM_STREAM: "stream_stream",
}


class ServiceStub:
    """Client callables for one etcd service: ``stub.Range(request)``.

    Each attribute wraps the channel's multi-callable for that method, so
    with a ``grpc.aio`` channel ``await stub.Put(request)`` answers a
    PutResponse, and ``stub.Watch()`` opens a stream to ``write`` and
    ``read`` (or ``stub.Watch(request_iterator)`` to iterate). A request of
    the wrong class raises TypeError before anything is sent; inside a
    request iterator it makes grpc.aio cancel the call, again before sending.
    """

    __slots__ = ("_calls", "_spec")

    def __init__(self, channel: Any, spec: ServiceSpec) -> None:
        self._spec = spec
        self._calls: dict[str, Any] = {}
        for method in spec.methods:
            factory = getattr(channel, _CALL_FACTORY_NAMES[method.kind])
            call = factory(
                method.path,
                request_serializer=_serializer(method.request_type),
                response_deserializer=method.response_type.FromString,
            )
            if method.kind is MethodKind.STREAM_STREAM:
                self._calls[method.name] = _CheckedStreamRequest(call, method)
            else:
                self._calls[method.name] = _CheckedUnaryRequest(call, method)

    @property
    def spec(self) -> ServiceSpec:
        return self._spec

    def method(self, name: str) -> Any:
        """The callable for ``name``; raises UnknownMethodError otherwise."""
        try:
            return self._calls[name]
        except KeyError:
            raise UnknownMethodError(self._spec.full_name, name, self._spec.method_names) from None

    def __getattr__(self, name: str) -> Any:
        # Reached only for names that are not slots, properties or methods.
        try:
            return self._calls[name]
        except KeyError:
            raise AttributeError(
                f"{self._spec.full_name} has no method {name!r}; "
                f"its methods are: {', '.join(self._spec.method_names)}"
            ) from None

    def __dir__(self) -> list[str]:
        return sorted({*object.__dir__(self), *self._calls})


def make_stub(channel: Any, service_name: str) -> ServiceStub:
    """Client callables for ``service_name`` over ``channel`` (``grpc`` or ``grpc.aio``)."""
    return ServiceStub(channel, service(service_name))
