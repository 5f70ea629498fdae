"""TLS for a member's two sides, from etcd's flags.

Clients: https client URLs are served with ``--cert-file``/``--key-file``;
with ``--client-cert-auth`` a client must present a certificate signed by
``--trusted-ca-file``. Peers: the same with the ``--peer-`` flags, for the
Raft stream and the peer requests (joining, membership changes). Every file
is read and checked when the member starts, so a wrong path or a key that
does not match its certificate stops it with a message naming the file,
before it listens anywhere.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from syndic.server.config import ServerConfig

# A certificate, key or CA bundle is a few kilobytes; refuse to read a file
# that cannot be one (a device, a log pointed at by mistake).
PEM_FILE_BYTES_MAX = 1024 * 1024


class TlsConfigError(ValueError):
    """A TLS file is missing, unreadable, or does not hold what its flag says."""


def _check_pem(path: str, flag: str) -> None:
    try:
        file = Path(path)
        if file.stat().st_size > PEM_FILE_BYTES_MAX:
            raise TlsConfigError(f"--{flag} {path}: over {PEM_FILE_BYTES_MAX} bytes")
        data = file.read_bytes()
    except OSError as exc:
        raise TlsConfigError(f"--{flag} {path}: {exc.strerror or exc}") from exc
    if b"-----BEGIN " not in data:
        raise TlsConfigError(f"--{flag} {path}: not a PEM file")


def _load_pair(
    contexts: tuple[ssl.SSLContext, ...], cert_file: str, key_file: str, prefix: str
) -> None:
    """Load the certificate and key into ``contexts``, naming the flag and file
    of a path that is wrong or a key that does not belong to its certificate."""
    _check_pem(cert_file, f"{prefix}cert-file")
    _check_pem(key_file, f"{prefix}key-file")
    try:
        for context in contexts:
            context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"--{prefix}cert-file {cert_file} and --{prefix}key-file {key_file} "
            f"are not a certificate and its key: {exc.reason or exc}"
        ) from exc


def _load_ca(contexts: tuple[ssl.SSLContext, ...], ca_file: str, flag: str) -> None:
    _check_pem(ca_file, flag)
    try:
        for context in contexts:
            context.load_verify_locations(ca_file)
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"--{flag} {ca_file}: not a CA certificate: {exc.reason or exc}"
        ) from exc


def client_context(config: ServerConfig) -> ssl.SSLContext | None:
    """The TLS context for the https client URLs; None when there are none.

    It offers HTTP/2 by ALPN, which gRPC clients require of a TLS server.
    """
    if not config.client_tls:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_pair((context,), config.cert_file, config.key_file, "")
    context.set_alpn_protocols(["h2"])
    if config.trusted_ca_file:
        _load_ca((context,), config.trusted_ca_file, "trusted-ca-file")
    context.verify_mode = ssl.CERT_REQUIRED if config.client_cert_auth else ssl.CERT_NONE
    return context


def peer_contexts(config: ServerConfig) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """(server, client) contexts for the peer port; (None, None) without peer TLS.

    A member presents its peer certificate both ways, as etcd's do. Without
    ``--peer-trusted-ca-file`` the link is encrypted but peers are not
    verified (etcd: the same, short of --peer-client-cert-auth).
    """
    if not config.peer_tls:
        return None, None
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _load_pair((server, client), config.peer_cert_file, config.peer_key_file, "peer-")
    ca = config.peer_trusted_ca_file
    if ca:
        _load_ca((server, client), ca, "peer-trusted-ca-file")
        client.check_hostname = True
        client.verify_mode = ssl.CERT_REQUIRED
    else:
        client.check_hostname = False
        client.verify_mode = ssl.CERT_NONE
    server.verify_mode = ssl.CERT_REQUIRED if config.peer_client_cert_auth else ssl.CERT_NONE
    return server, client
