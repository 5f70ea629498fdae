"""A throwaway certificate authority for TLS tests: one CA, a member
certificate valid for 127.0.0.1 and localhost (serving clients and peers, and
presented by members to each other), and a client certificate."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Certificates:
    ca: Path
    member_cert: Path
    member_key: Path
    client_cert: Path
    client_key: Path

    def member_flags(self, *, client_cert_auth: bool = True) -> tuple[str, ...]:
        """etcd's flags for a member serving clients and peers over TLS."""
        return (
            f"--cert-file={self.member_cert}",
            f"--key-file={self.member_key}",
            f"--trusted-ca-file={self.ca}",
            *(("--client-cert-auth",) if client_cert_auth else ()),
            f"--peer-cert-file={self.member_cert}",
            f"--peer-key-file={self.member_key}",
            f"--peer-trusted-ca-file={self.ca}",
            "--peer-client-cert-auth",
        )

    def etcdctl_flags(self) -> tuple[str, ...]:
        return (f"--cacert={self.ca}", f"--cert={self.client_cert}", f"--key={self.client_key}")


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def make_certificates(root: Path) -> Certificates:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("syndic test CA"))
        .issuer_name(_name("syndic test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )

    def issue(common_name: str, usages: list[x509.ObjectIdentifier]) -> tuple[bytes, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key_path = root / f"{common_name}-key.pem"
        _write_key(key_path, key)
        return cert.public_bytes(serialization.Encoding.PEM), key_path

    root.mkdir(parents=True, exist_ok=True)
    ca_path = root / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    member_pem, member_key = issue("member", both)
    client_pem, client_key = issue("client", [ExtendedKeyUsageOID.CLIENT_AUTH])
    (root / "member.pem").write_bytes(member_pem)
    (root / "client.pem").write_bytes(client_pem)
    return Certificates(ca_path, root / "member.pem", member_key, root / "client.pem", client_key)
