"""Auth (password -> token, renewed when refused) and TLS/mTLS, on both stores."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from syndic.client import (
    AuthenticationError,
    Client,
    ClientError,
    InvalidRequestError,
    PermissionDeniedError,
)
from tests.server.processes import NEEDS_ETCDCTL, etcdctl
from tests.server.tls_certs import make_certificates
from tests.stores import Store, start_single

SETUP = [
    ["user", "add", "root:rootpw"],
    ["role", "add", "root"],
    ["user", "grant-role", "root", "root"],
    ["role", "add", "limited"],
    ["role", "grant-permission", "limited", "readwrite", "team/", "--prefix"],
    ["user", "add", "alice:alicepw"],
    ["user", "grant-role", "alice", "limited"],
    ["auth", "enable"],
]


def ctl(endpoint: str, *args: str) -> None:
    out = etcdctl(endpoint, *args)
    assert out.returncode == 0, (args, out.stdout, out.stderr[-500:])


@NEEDS_ETCDCTL
async def test_token_is_renewed_when_the_server_voids_it(own_store: Store) -> None:
    endpoint = own_store.endpoints[0]
    for step in SETUP:
        ctl(endpoint, *step)
    async with Client(own_store.endpoints, username="alice", password="alicepw") as client:
        await client.put("team/a", "1")
        first_token = client._transport.metadata
        # Disabling and enabling auth voids every token issued before.
        ctl(endpoint, "--user", "root:rootpw", "auth", "disable")
        ctl(endpoint, "auth", "enable")
        got = await client.get("team/a")
        assert got.kvs[0].value == b"1"
        assert client._transport.metadata != first_token
        with pytest.raises(PermissionDeniedError, match="etcdserver: permission denied"):
            await client.get("elsewhere")
    with pytest.raises(AuthenticationError, match="authentication failed"):
        await Client.connect(own_store.endpoints, username="alice", password="wrong")


@NEEDS_ETCDCTL
async def test_a_token_given_instead_of_a_password_acts_for_its_user(own_store: Store) -> None:
    endpoint = own_store.endpoints[0]
    for step in SETUP:
        ctl(endpoint, *step)
    async with Client(own_store.endpoints, username="alice", password="alicepw") as alice:
        await alice.put("team/a", "1")
        assert alice._transport.metadata is not None
        (_, token), *_ = alice._transport.metadata
    async with Client(own_store.endpoints, token=token) as acting:
        assert (await acting.get("team/a")).kvs[0].value == b"1"
        with pytest.raises(PermissionDeniedError, match="etcdserver: permission denied"):
            await acting.put("elsewhere", "x")
        # Voided tokens are not renewed: the client has no password to renew with.
        ctl(endpoint, "--user", "root:rootpw", "auth", "disable")
        ctl(endpoint, "auth", "enable")
        with pytest.raises(ClientError, match="invalid auth token"):
            await acting.get("team/a")
    with pytest.raises(InvalidRequestError, match="token"):
        Client(own_store.endpoints, username="alice", password="alicepw", token=token)
    with pytest.raises(InvalidRequestError, match="token"):
        Client(own_store.endpoints, token="")


@pytest.mark.parametrize("kind", ["syndic", pytest.param("etcd", marks=pytest.mark.etcd)])
async def test_mutual_tls(kind: str, tmp_path: Path) -> None:
    certs = make_certificates(tmp_path / "certs")
    credentials = grpc.ssl_channel_credentials(
        certs.ca.read_bytes(), certs.client_key.read_bytes(), certs.client_cert.read_bytes()
    )
    store = start_single(
        kind,
        tmp_path / "member",
        scheme="https",
        extra_flags=certs.member_flags(client_cert_auth=True),
        credentials=credentials,
    )
    try:
        endpoints = [f"https://{e}" for e in store.endpoints]
        async with Client(
            endpoints, ca_file=certs.ca, cert_file=certs.client_cert, key_file=certs.client_key
        ) as client:
            await client.put(b"tls", b"yes")
            assert (await client.get(b"tls")).kvs[0].value == b"yes"
        # Without a client certificate the member refuses the handshake.
        async with Client(endpoints, ca_file=certs.ca, timeout_s=3.0) as anonymous:
            with pytest.raises(Exception) as refused:
                await anonymous.get(b"tls")
            assert (
                "Unavailable" in type(refused.value).__name__
                or "Deadline" in type(refused.value).__name__
            )
    finally:
        store.stop()
