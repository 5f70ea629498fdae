"""TLS on real processes: 3 members serving clients and peers over TLS with
client certificates required, driven by etcdctl with certificates, against
syndic and Debian's etcd alike; and the mistakes an operator makes with TLS
files stop a member with a message naming the file, before it writes anything."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.processes import (
    NEEDS_ETCDCTL,
    etcdctl,
    mask_ids_and_addresses,
    require_etcd,
    start_cluster,
    wait_healthy,
)
from tests.server.tls_certs import Certificates, make_certificates

pytestmark = [
    pytest.mark.etcd,
    NEEDS_ETCDCTL,
]

Step = tuple[int, str, bool]  # (exit code, normalized stdout, failed)


def normalize(text: str) -> str:
    text = mask_ids_and_addresses(text)
    # Members are listed in id order, and ids differ between the systems.
    return "".join(sorted(text.splitlines(keepends=True))) if "started" in text else text


def run_tls_script(kind: str, root: Path, certs: Certificates) -> list[Step]:
    members = start_cluster(kind, root, 3, scheme="https", extra_flags=certs.member_flags())
    tls = certs.etcdctl_flags()
    try:
        wait_healthy(members, ctl_flags=tls)
        endpoints = ",".join(m.endpoint for m in members)
        steps: list[Step] = []
        for args in (
            [*tls, "put", "/tls", "secret"],
            [*tls, "get", "/tls"],
            [*tls, "member", "list"],
            # No client certificate, or no CA to check the server with: refused.
            [f"--cacert={certs.ca}", "get", "/tls"],
            ["get", "/tls"],
        ):
            out = etcdctl(endpoints, *args)
            steps.append((out.returncode, normalize(out.stdout), out.returncode != 0))
        # Plain text on a TLS port: refused.
        plain = etcdctl(endpoints.replace("127.0.0.1", "http://127.0.0.1"), "get", "/tls")
        steps.append((plain.returncode, normalize(plain.stdout), plain.returncode != 0))
        return steps
    finally:
        for m in members:
            m.kill()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def etcd_steps(
    tmp_path_factory: pytest.TempPathFactory, certs: Certificates
) -> Iterator[list[Step]]:
    require_etcd()
    yield run_tls_script("etcd", tmp_path_factory.mktemp("etcd"), certs)


def test_tls_clients_and_peers_behave_as_etcds(
    etcd_steps: list[Step], certs: Certificates, tmp_path: Path
) -> None:
    syndic_steps = run_tls_script("syndic", tmp_path, certs)
    assert syndic_steps == etcd_steps
    assert syndic_steps[1][1] == "/tls\nsecret\n"
    assert [failed for _, _, failed in syndic_steps] == [False, False, False, True, True, True]


def serve(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "syndic",
            "serve",
            "--name=m1",
            f"--data-dir={tmp_path / 'data'}",
            "--listen-client-urls=https://127.0.0.1:1",
            "--listen-peer-urls=http://127.0.0.1:1",
            *flags,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ((), "--cert-file and --key-file are needed to serve client TLS"),
        (("--cert-file={member_cert}",), "--cert-file and --key-file"),
        (("--cert-file=/nonexistent.pem", "--key-file={member_key}"), "/nonexistent.pem"),
        (("--cert-file={member_key}", "--key-file={member_key}"), "not a certificate and its key"),
        (("--cert-file={ca}", "--key-file={member_key}"), "not a certificate and its key"),
        (("--cert-file=/dev/null", "--key-file={member_key}"), "not a PEM file"),
        (
            ("--cert-file={member_cert}", "--key-file={member_key}", "--client-cert-auth"),
            "--client-cert-auth needs --trusted-ca-file",
        ),
        (
            ("--cert-file={member_cert}", "--key-file={member_key}", "--client-cert-auth=maybe"),
            "must be true or false",
        ),
    ],
)
def test_tls_mistakes_stop_the_member_before_it_writes(
    tmp_path: Path, certs: Certificates, flags: tuple[str, ...], message: str
) -> None:
    paths = {
        "member_cert": certs.member_cert,
        "member_key": certs.member_key,
        "ca": certs.ca,
    }
    out = serve(tmp_path, *(flag.format(**paths) for flag in flags))
    assert out.returncode != 0
    assert message in out.stderr, out.stderr
    assert not (tmp_path / "data").exists()
