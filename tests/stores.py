"""The stores client-side tests run against: a syndic member and Debian's etcd.

Tests written on top of ``syndic.client`` take the ``store`` fixture and run
once per store, with the same code::

    # tests/<area>/conftest.py
    from tests.stores import store, store_kind, key_prefix  # noqa: F401

    async def test_something(store: Store, key_prefix: bytes) -> None:
        async with Client(store.endpoints) as client:
            await client.put(key_prefix + b"k", b"v")

``store`` is one running member per test session and kind ("syndic", or
"etcd" marked ``pytest.mark.etcd`` and skipped without Debian's etcd), so
tests share it and keep to their own ``key_prefix``. Tests that kill members
start their own cluster with :func:`start_store_cluster`; tests that want a
syndic member in the test's own event loop use :func:`syndic_in_process`.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from syndic.api.gen import rpc_pb2
from syndic.api.services import KV_SERVICE, make_stub
from tests.server.cluster_util import free_port
from tests.server.processes import MemberProcess, member_process, require_etcd, start_cluster

STORE_KINDS = ("syndic", "etcd")
# A member process answers within a second or two on an idle machine; eight
# engineers' tests sharing two cores can make it many times slower.
READY_TIMEOUT_S = 60.0


@dataclass
class Store:
    """Running members of one kind; ``endpoints`` are 'host:port' strings."""

    kind: str
    members: list[MemberProcess] = field(default_factory=list)
    root: Path | None = None

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members if m.process is not None]

    def all_endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def kill(self, index: int) -> MemberProcess:
        member = self.members[index]
        member.kill()
        return member

    def restart(self, index: int) -> None:
        """Start a killed member again on the same ports and data directory."""
        member = self.members[index]
        member.kill()
        member.start()

    def stop(self) -> None:
        for member in self.members:
            member.kill()

    def logs(self) -> str:
        return "\n".join(
            f"--- {m.name}\n{m.log_path.read_text()[-3000:]}"
            for m in self.members
            if m.log_path.exists()
        )


def wait_ready(
    endpoints: list[str],
    timeout_s: float = READY_TIMEOUT_S,
    *,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Until a linearizable read (which needs a leader) succeeds on every endpoint;
    ``credentials`` for a TLS member."""
    deadline = time.monotonic() + timeout_s
    for endpoint in endpoints:
        channel = (
            grpc.secure_channel(endpoint, credentials)
            if credentials is not None
            else grpc.insecure_channel(endpoint)
        )
        with channel:
            kv = make_stub(channel, KV_SERVICE)
            while True:
                try:
                    kv.Range(rpc_pb2.RangeRequest(key=b"ready"), timeout=2.0)
                    break
                except grpc.RpcError as exc:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"{endpoint} not ready in {timeout_s}s: {exc}"
                        ) from exc
                    time.sleep(0.1)


def start_store_cluster(
    kind: str, root: Path, size: int, *, election_timeout_ms: int = 500
) -> Store:
    """``size`` member processes of ``kind`` on free ports, ready to serve."""
    if kind == "etcd":
        require_etcd()
    root.mkdir(parents=True, exist_ok=True)
    members = start_cluster(
        kind,
        root,
        size,
        heartbeat_interval_ms=max(10, election_timeout_ms // 10),
        election_timeout_ms=election_timeout_ms,
    )
    store = Store(kind, members, root)
    try:
        wait_ready(store.endpoints)
    except BaseException:
        logs = store.logs()
        store.stop()
        raise AssertionError(f"{kind} cluster did not start:\n{logs}") from None
    return store


def start_single(
    kind: str,
    root: Path,
    *,
    scheme: str = "http",
    extra_flags: tuple[str, ...] = (),
    credentials: grpc.ChannelCredentials | None = None,
) -> Store:
    """One ready member of ``kind`` of its own, with extra etcd flags (TLS, say);
    ``credentials`` let the readiness check reach a TLS member."""
    if kind == "etcd":
        require_etcd()
    root.mkdir(parents=True, exist_ok=True)
    peer = free_port()
    member = member_process(
        kind,
        root,
        "m1",
        peer,
        f"m1={scheme}://127.0.0.1:{peer}",
        "new",
        scheme=scheme,
        extra_flags=extra_flags,
    )
    member.start()
    store = Store(kind, [member], root)
    try:
        wait_ready(store.endpoints, credentials=credentials)
    except BaseException:
        logs = store.logs()
        store.stop()
        raise AssertionError(f"{kind} member did not start:\n{logs}") from None
    return store


@pytest.fixture(params=["syndic", pytest.param("etcd", marks=pytest.mark.etcd)])
def own_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A member of each kind for this test alone (auth, alarms: state others must not see)."""
    handle = start_single(str(request.param), tmp_path / "own")
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(
    scope="session",
    params=[
        "syndic",
        pytest.param("etcd", marks=pytest.mark.etcd),
    ],
)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    """One running member of each kind for the session; see the module docstring."""
    kind = str(request.param)
    handle = start_store_cluster(kind, tmp_path_factory.mktemp(f"store-{kind}"), 1)
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def store_kind(store: Store) -> str:
    return store.kind


_prefixes = itertools.count()


@pytest.fixture
def key_prefix(request: pytest.FixtureRequest) -> bytes:
    """A key prefix no other test in the session uses."""
    return f"t/{next(_prefixes)}/{request.node.name[:60]}/".encode()


@contextlib.asynccontextmanager
async def syndic_in_process(root: Path) -> AsyncIterator[str]:
    """A single syndic member in the current event loop; yields its endpoint."""
    # Imported here: only these tests need the server's modules in-process.
    from syndic.server.app import MemberServer
    from syndic.server.config import load_config

    client_port, peer_port = free_port(), free_port()
    config = load_config(
        {
            "name": "m1",
            "data-dir": str(root / "m1"),
            "listen-client-urls": f"http://127.0.0.1:{client_port}",
            "listen-peer-urls": f"http://127.0.0.1:{peer_port}",
        },
        {},
    )
    async with MemberServer(config):
        yield f"127.0.0.1:{client_port}"
