"""syndic's descriptors equal etcd's in everything the wire sees, and coexist
with an etcd client's in one process.

etcd's definitions are taken from aetcd's generated modules, which embed
etcd's own rpc.proto, kv.proto and auth.proto.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from aetcd.rpc import auth_pb2 as etcd_auth
from aetcd.rpc import kv_pb2 as etcd_kv
from aetcd.rpc import rpc_pb2 as etcd_rpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import FileDescriptor

from syndic.api.gen import auth_pb2, kv_pb2, rpc_pb2

# Package renames that make the two sides comparable.
_OUR_PACKAGES = {
    "syndic.api.v3.rpc": "rpc",
    "syndic.api.v3.mvcc": "mvcc",
    "syndic.api.v3.auth": "auth",
}
_ETCD_PACKAGES = {"etcdserverpb": "rpc", "mvccpb": "mvcc", "authpb": "auth"}

_PAIRS = [
    pytest.param(rpc_pb2.DESCRIPTOR, etcd_rpc.DESCRIPTOR, id="rpc"),
    pytest.param(kv_pb2.DESCRIPTOR, etcd_kv.DESCRIPTOR, id="kv"),
    pytest.param(auth_pb2.DESCRIPTOR, etcd_auth.DESCRIPTOR, id="auth"),
]


def _rename(type_name: str, packages: dict[str, str]) -> str:
    for package, short in sorted(packages.items(), key=lambda item: -len(item[0])):
        prefix = f".{package}."
        if type_name.startswith(prefix):
            return f".{short}.{type_name[len(prefix) :]}"
    return type_name


def _messages(
    messages: Any, packages: dict[str, str], scope: str = ""
) -> dict[str, dict[str, Any]]:
    """Every message (nested ones too) by dotted name, reduced to wire facts."""
    out: dict[str, dict[str, Any]] = {}
    for message in messages:
        name = f"{scope}{message.name}"
        oneofs = [oneof.name for oneof in message.oneof_decl]
        out[name] = {
            "fields": {
                field.number: (
                    field.name,
                    field.type,
                    field.label,
                    _rename(field.type_name, packages),
                    oneofs[field.oneof_index] if field.HasField("oneof_index") else None,
                )
                for field in message.field
            },
            "enums": _enums(message.enum_type),
            "reserved": [(r.start, r.end) for r in message.reserved_range],
        }
        out.update(_messages(message.nested_type, packages, f"{name}."))
    return out


def _enums(enums: Any) -> dict[str, dict[str, int]]:
    return {enum.name: {value.name: value.number for value in enum.value} for enum in enums}


def _services(services: Any, packages: dict[str, str]) -> dict[str, Any]:
    return {
        service.name: {
            method.name: (
                _rename(method.input_type, packages),
                _rename(method.output_type, packages),
                method.client_streaming,
                method.server_streaming,
            )
            for method in service.method
        }
        for service in services
    }


def _wire_facts(file: FileDescriptor, packages: dict[str, str]) -> dict[str, Any]:
    proto = descriptor_pb2.FileDescriptorProto()
    file.CopyToProto(proto)
    assert proto.syntax == "proto3"
    return {
        "messages": _messages(proto.message_type, packages),
        "enums": _enums(proto.enum_type),
        "services": _services(proto.service, packages),
    }


@pytest.mark.parametrize(("ours", "etcds"), _PAIRS)
def test_every_message_field_enum_and_method_matches_etcd(
    ours: FileDescriptor, etcds: FileDescriptor
) -> None:
    our_facts = _wire_facts(ours, _OUR_PACKAGES)
    etcd_facts = _wire_facts(etcds, _ETCD_PACKAGES)
    assert our_facts["messages"].keys() == etcd_facts["messages"].keys()
    for name, facts in etcd_facts["messages"].items():
        assert our_facts["messages"][name] == facts, name
    assert our_facts["enums"] == etcd_facts["enums"]
    assert our_facts["services"] == etcd_facts["services"]


def test_the_comparison_sees_a_renumbered_field() -> None:
    # Negative control: a single renumbered field must break equality.
    proto = descriptor_pb2.FileDescriptorProto()
    kv_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.message_type[0].field[0].number = 99
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    assert _wire_facts(pool.FindFileByName(proto.name), _OUR_PACKAGES) != _wire_facts(
        etcd_kv.DESCRIPTOR, _ETCD_PACKAGES
    )


def test_file_names_and_packages_are_distinct_from_etcds() -> None:
    ours = {d.name: d.package for d in (rpc_pb2.DESCRIPTOR, kv_pb2.DESCRIPTOR, auth_pb2.DESCRIPTOR)}
    etcds = {
        d.name: d.package for d in (etcd_rpc.DESCRIPTOR, etcd_kv.DESCRIPTOR, etcd_auth.DESCRIPTOR)
    }
    assert not set(ours) & set(etcds)
    assert not set(ours.values()) & set(etcds.values())
    assert set(ours.values()) == set(_OUR_PACKAGES)


def test_both_descriptor_sets_live_in_the_default_pool() -> None:
    pool = descriptor_pool.Default()
    assert (
        pool.FindMessageTypeByName("etcdserverpb.RangeRequest") is etcd_rpc.RangeRequest.DESCRIPTOR
    )
    assert pool.FindMessageTypeByName("syndic.api.v3.rpc.RangeRequest") is (
        rpc_pb2.RangeRequest.DESCRIPTOR
    )
    assert pool.FindFileByName("rpc.proto") is etcd_rpc.DESCRIPTOR
    assert pool.FindFileByName("syndic/api/gen/rpc.proto") is rpc_pb2.DESCRIPTOR


@pytest.mark.parametrize(
    "order",
    [
        "import aetcd, aetcd.rpc\nimport syndic.api, syndic.api.services",
        "import syndic.api, syndic.api.services\nimport aetcd, aetcd.rpc",
    ],
    ids=["etcd-client-first", "syndic-first"],
)
def test_fresh_process_imports_both_in_either_order(order: str) -> None:
    # A fresh interpreter, because this test process has already imported
    # both and a conflict would only show on first registration.
    script = "\n".join(
        [
            "import warnings",
            "warnings.simplefilter('error')",
            *order.splitlines(),
            "from syndic.api.gen import rpc_pb2",
            "print(rpc_pb2.DESCRIPTOR.name)",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "syndic/api/gen/rpc.proto"
