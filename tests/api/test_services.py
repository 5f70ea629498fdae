"""The service table binds exactly etcd's method paths, shapes and types."""

from __future__ import annotations

from typing import Any

import pytest
from aetcd.rpc import rpc_pb2 as etcd_rpc
from aetcd.rpc import rpc_pb2_grpc as etcd_grpc

from syndic.api.gen import rpc_pb2
from syndic.api.services import (
    AUTH_SERVICE,
    CLUSTER_SERVICE,
    DEFAULT_MAX_REQUEST_BYTES,
    GRPC_OVERHEAD_BYTES,
    KV_SERVICE,
    LEASE_SERVICE,
    MAINTENANCE_SERVICE,
    SERVICES,
    WATCH_SERVICE,
    HandlerError,
    MethodKind,
    MethodSpec,
    ServiceSpec,
    UnknownMethodError,
    UnknownServiceError,
    add_servicer,
    grpc_server_options,
    make_stub,
    service,
)

_KIND_BY_FACTORY = {
    "unary_unary": MethodKind.UNARY_UNARY,
    "unary_stream": MethodKind.UNARY_STREAM,
    "stream_stream": MethodKind.STREAM_STREAM,
    "stream_unary": None,  # etcd has none; recorded so a mismatch shows
}


class RecordingChannel:
    """Stands in for a channel and records what each stub asks of it."""

    def __init__(self) -> None:
        self.paths: dict[str, tuple[MethodKind | None, str]] = {}

    def __getattr__(self, factory: str) -> Any:
        if factory not in _KIND_BY_FACTORY:
            raise AttributeError(factory)

        def record(path: str, *, response_deserializer: Any, **_: Any) -> str:
            # FromString is bound to its class: that names the response type.
            response_name = response_deserializer.__self__.DESCRIPTOR.name
            self.paths[path] = (_KIND_BY_FACTORY[factory], response_name)
            return path

        return record


_ETCD_STUBS = {
    KV_SERVICE: etcd_grpc.KVStub,
    WATCH_SERVICE: etcd_grpc.WatchStub,
    LEASE_SERVICE: etcd_grpc.LeaseStub,
    CLUSTER_SERVICE: etcd_grpc.ClusterStub,
    MAINTENANCE_SERVICE: etcd_grpc.MaintenanceStub,
    AUTH_SERVICE: etcd_grpc.AuthStub,
}


def test_services_are_etcds_six() -> None:
    assert set(SERVICES) == set(_ETCD_STUBS)
    assert {name.split(".")[0] for name in SERVICES} == {"etcdserverpb"}


@pytest.mark.parametrize("service_name", sorted(_ETCD_STUBS))
def test_stub_paths_kinds_and_responses_equal_the_etcd_clients(service_name: str) -> None:
    theirs = RecordingChannel()
    _ETCD_STUBS[service_name](theirs)
    ours = RecordingChannel()
    stub = make_stub(ours, service_name)
    assert ours.paths == theirs.paths
    assert set(service(service_name).method_names) <= set(dir(stub))


@pytest.mark.parametrize("service_name", sorted(_ETCD_STUBS))
def test_request_and_response_types_equal_etcds_descriptor(service_name: str) -> None:
    short = service_name.split(".")[1]
    etcd_methods = {m.name: m for m in etcd_rpc.DESCRIPTOR.services_by_name[short].methods}
    spec = service(service_name)
    assert spec.method_names == tuple(etcd_methods)
    for method in spec.methods:
        etcd_method = etcd_methods[method.name]
        assert method.request_type.DESCRIPTOR.name == etcd_method.input_type.name
        assert method.response_type.DESCRIPTOR.name == etcd_method.output_type.name
        assert method.path == f"/etcdserverpb.{short}/{method.name}"


@pytest.mark.parametrize("service_name", sorted(_ETCD_STUBS))
def test_table_agrees_with_syndics_own_proto(service_name: str) -> None:
    short = service_name.split(".")[1]
    declared = rpc_pb2.DESCRIPTOR.services_by_name[short]
    spec = service(service_name)
    assert spec.method_names == tuple(m.name for m in declared.methods)
    for method, proto in zip(spec.methods, declared.methods, strict=True):
        assert method.request_type.DESCRIPTOR is proto.input_type
        assert method.response_type.DESCRIPTOR is proto.output_type
        kind = {
            (False, False): MethodKind.UNARY_UNARY,
            (False, True): MethodKind.UNARY_STREAM,
            (True, True): MethodKind.STREAM_STREAM,
        }[(proto.client_streaming, proto.server_streaming)]
        assert method.kind is kind


def test_lookup_errors_name_what_exists() -> None:
    with pytest.raises(UnknownServiceError, match=r"etcdserverpb\.KV"):
        service("syndic.api.v3.rpc.KV")
    with pytest.raises(UnknownServiceError):
        service("KV")
    with pytest.raises(UnknownServiceError):
        service(None)  # type: ignore[arg-type]
    with pytest.raises(UnknownMethodError, match="Range, Put"):
        service(KV_SERVICE).method("Get")
    stub = make_stub(RecordingChannel(), KV_SERVICE)
    with pytest.raises(AttributeError, match="no method 'Get'"):
        stub.Get  # noqa: B018
    with pytest.raises(UnknownMethodError):
        stub.method("Get")
    assert stub.method("Range") is stub.Range
    assert stub.spec is service(KV_SERVICE)


def test_specs_reject_malformed_names() -> None:
    with pytest.raises(Exception, match="etcdserverpb"):
        MethodSpec(
            "KV", "Range", MethodKind.UNARY_UNARY, rpc_pb2.RangeRequest, rpc_pb2.RangeResponse
        )
    with pytest.raises(Exception, match="identifier"):
        MethodSpec(
            KV_SERVICE,
            "Ra/nge",
            MethodKind.UNARY_UNARY,
            rpc_pb2.RangeRequest,
            rpc_pb2.RangeResponse,
        )
    method = service(KV_SERVICE).methods[0]
    with pytest.raises(Exception, match="twice"):
        ServiceSpec(KV_SERVICE, (method, method))
    with pytest.raises(Exception, match="does not belong"):
        ServiceSpec(WATCH_SERVICE, (method,))


class RecordingServer:
    def __init__(self) -> None:
        self.handlers: list[Any] = []

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self.handlers.extend(handlers)


class NotCallable:
    Range = "not a function"

    async def Put(self, request: Any, context: Any) -> Any:
        return rpc_pb2.PutResponse()


class SyncWatch:
    def Watch(self, request_iterator: Any, context: Any) -> Any:
        yield rpc_pb2.WatchResponse()


class NoMethods:
    async def Get(self, request: Any, context: Any) -> Any:
        raise AssertionError("never bound")


@pytest.mark.parametrize(
    ("service_name", "handler", "error", "match"),
    [
        ("etcdserverpb.Nope", NoMethods(), UnknownServiceError, "unknown etcd v3 service"),
        (KV_SERVICE, NoMethods(), HandlerError, "implements none"),
        (KV_SERVICE, NotCallable(), HandlerError, "must be callable"),
        (KV_SERVICE, None, HandlerError, "implements none"),
        (WATCH_SERVICE, SyncWatch(), HandlerError, "async generator"),
    ],
)
def test_add_servicer_refuses_and_registers_nothing(
    service_name: str, handler: object, error: type[Exception], match: str
) -> None:
    server = RecordingServer()
    with pytest.raises(error, match=match):
        add_servicer(server, service_name, handler)
    assert server.handlers == []


def test_server_options_follow_etcds_sizes() -> None:
    options = dict(grpc_server_options())
    assert DEFAULT_MAX_REQUEST_BYTES == 1536 * 1024
    assert options["grpc.max_receive_message_length"] == DEFAULT_MAX_REQUEST_BYTES + (
        GRPC_OVERHEAD_BYTES
    )
    assert options["grpc.max_send_message_length"] == 2**31 - 1
    assert dict(grpc_server_options(10))["grpc.max_receive_message_length"] == 10 + 512 * 1024


@pytest.mark.parametrize("bad", [0, -1, 2**31, True, 1.5, "1024"])
def test_server_options_refuse_nonsense_limits(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)):
        grpc_server_options(bad)
