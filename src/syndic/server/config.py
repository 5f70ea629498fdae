"""A member's configuration, named and defaulted as etcd names and defaults it.

A script written for etcd should start syndic unchanged, so every setting that
means the same thing in both takes etcd's flag name (``--data-dir``), its
environment variable (``ETCD_DATA_DIR``; ``SYNDIC_DATA_DIR`` wins over it) and
its configuration-file key (``data-dir``). Precedence, lowest first: defaults,
configuration file, environment, flags.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from syndic.server.auth.token import TOKEN_TTL_S_DEFAULT

# etcd 3.4's defaults, so a bare ``syndic serve`` listens where ``etcd`` would.
DEFAULT_CLIENT_URL = "http://localhost:2379"
DEFAULT_PEER_URL = "http://localhost:2380"
# etcd: DefaultMaxRequestBytes = 1.5 MiB.
MAX_REQUEST_BYTES_DEFAULT = 1536 * 1024
# etcd: DefaultQuotaBytes = 2 GiB; MaxQuotaBytes = 8 GiB.
QUOTA_BACKEND_BYTES_DEFAULT = 2 * 1024**3
QUOTA_BACKEND_BYTES_MAX = 8 * 1024**3
# etcd 3.4: DefaultSnapshotCount = 100,000 entries between snapshots.
SNAPSHOT_COUNT_DEFAULT = 100_000
HEARTBEAT_INTERVAL_MS_DEFAULT = 100
ELECTION_TIMEOUT_MS_DEFAULT = 1000
# etcd refuses election timeouts above 50 s ("election-timeout ... too long").
ELECTION_TIMEOUT_MS_MAX = 50_000
# HTTP/2 streams per client connection (etcd's --max-concurrent-streams, a
# uint32 whose default means unbounded): syndic's default is that of
# ServerLimits.concurrent_streams_max, what a Python member can afford.
MAX_CONCURRENT_STREAMS_DEFAULT = 256
MAX_CONCURRENT_STREAMS_MAX = 2**32 - 1
# Overload bounds (docs/operations.md, "Overload"): past them a member refuses
# a request at once with etcd's "too many requests" (RESOURCE_EXHAUSTED),
# which clients back off from, instead of queueing it until the request
# timeout. Writes waiting on this member to be applied, and their bytes: a
# thousand clients each with a few requests in flight fit, and so do 170
# requests at etcd's 1.5 MiB request limit.
MAX_PENDING_PROPOSALS_DEFAULT = 10_000
MAX_PENDING_PROPOSAL_BYTES_DEFAULT = 256 * 1024 * 1024
# etcd: maxGapBetweenApplyAndCommitIndex. Committed entries not yet applied
# mean the apply loop is behind; new proposals would only wait longer.
MAX_APPLY_GAP_ENTRIES_DEFAULT = 5000
# Linearizable reads waiting for their ReadIndex round.
MAX_PENDING_READS_DEFAULT = 10_000


class ConfigError(ValueError):
    """A setting is missing, malformed or inconsistent; the message names it."""


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Every setting of one member; field names are etcd's flags in snake case."""

    name: str = "default"
    data_dir: str = ""
    listen_client_urls: tuple[str, ...] = (DEFAULT_CLIENT_URL,)
    advertise_client_urls: tuple[str, ...] = (DEFAULT_CLIENT_URL,)
    listen_peer_urls: tuple[str, ...] = (DEFAULT_PEER_URL,)
    initial_advertise_peer_urls: tuple[str, ...] = (DEFAULT_PEER_URL,)
    initial_cluster: str = ""
    initial_cluster_state: str = "new"
    initial_cluster_token: str = "etcd-cluster"
    listen_metrics_urls: tuple[str, ...] = ()
    snapshot_count: int = SNAPSHOT_COUNT_DEFAULT
    quota_backend_bytes: int = 0
    max_request_bytes: int = MAX_REQUEST_BYTES_DEFAULT
    max_concurrent_streams: int = MAX_CONCURRENT_STREAMS_DEFAULT
    # Seconds a token from Authenticate (or the console's login) is valid.
    auth_token_ttl: int = TOKEN_TTL_S_DEFAULT
    # syndic's own: the overload bounds, in etcd's naming style.
    max_pending_proposals: int = MAX_PENDING_PROPOSALS_DEFAULT
    max_pending_proposal_bytes: int = MAX_PENDING_PROPOSAL_BYTES_DEFAULT
    max_apply_gap_entries: int = MAX_APPLY_GAP_ENTRIES_DEFAULT
    max_pending_reads: int = MAX_PENDING_READS_DEFAULT
    heartbeat_interval_ms: int = HEARTBEAT_INTERVAL_MS_DEFAULT
    election_timeout_ms: int = ELECTION_TIMEOUT_MS_DEFAULT
    # TLS for clients (https client URLs) and between members (https peer
    # URLs), with etcd's flags; *_client_cert_auth asks for a certificate
    # signed by the trusted CA.
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_trusted_ca_file: str = ""
    peer_client_cert_auth: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("--name must not be empty")
        if self.initial_cluster_state not in ("new", "existing"):
            raise ConfigError(
                "--initial-cluster-state must be 'new' or 'existing', "
                f"got {self.initial_cluster_state!r}"
            )
        for flag in (
            "listen_client_urls",
            "advertise_client_urls",
            "listen_peer_urls",
            "initial_advertise_peer_urls",
            "listen_metrics_urls",
        ):
            for url in getattr(self, flag):
                parse_url(url, flag)
        _check_positive("snapshot-count", self.snapshot_count)
        _check_positive("auth-token-ttl", self.auth_token_ttl)
        _check_positive("max-request-bytes", self.max_request_bytes)
        _check_positive("max-concurrent-streams", self.max_concurrent_streams)
        if self.max_concurrent_streams > MAX_CONCURRENT_STREAMS_MAX:
            raise ConfigError(
                f"--max-concurrent-streams must be at most {MAX_CONCURRENT_STREAMS_MAX}, "
                f"got {self.max_concurrent_streams}"
            )
        self._check_overload_bounds()
        _check_positive("heartbeat-interval", self.heartbeat_interval_ms)
        _check_positive("election-timeout", self.election_timeout_ms)
        if self.quota_backend_bytes < 0 or self.quota_backend_bytes > QUOTA_BACKEND_BYTES_MAX:
            raise ConfigError(
                f"--quota-backend-bytes must be in [0, {QUOTA_BACKEND_BYTES_MAX}], "
                f"got {self.quota_backend_bytes}"
            )
        # etcd: the election timeout must be at least 5x the heartbeat interval.
        if self.election_timeout_ms < 5 * self.heartbeat_interval_ms:
            raise ConfigError(
                f"--election-timeout[{self.election_timeout_ms}ms] should be at least "
                f"as 5 times as --heartbeat-interval[{self.heartbeat_interval_ms}ms]"
            )
        if self.election_timeout_ms > ELECTION_TIMEOUT_MS_MAX:
            raise ConfigError(
                f"--election-timeout[{self.election_timeout_ms}ms] is too long, "
                f"and should be set less than {ELECTION_TIMEOUT_MS_MAX}ms"
            )
        self.cluster_peers()
        self._check_tls("client", self.listen_client_urls, "", self.client_cert_auth)
        self._check_tls("peer", self.listen_peer_urls, "peer-", self.peer_client_cert_auth)

    def _check_overload_bounds(self) -> None:
        for flag in (
            "max-pending-proposals",
            "max-pending-proposal-bytes",
            "max-apply-gap-entries",
            "max-pending-reads",
        ):
            _check_positive(flag, getattr(self, flag.replace("-", "_")))
        # Below one request's size, every request at the limit would be
        # refused as "too many requests" on an idle member.
        if self.max_pending_proposal_bytes < self.max_request_bytes:
            raise ConfigError(
                f"--max-pending-proposal-bytes[{self.max_pending_proposal_bytes}] must be at "
                f"least --max-request-bytes[{self.max_request_bytes}]"
            )

    def _check_tls(self, side: str, urls: tuple[str, ...], prefix: str, cert_auth: bool) -> None:
        """etcd's rules: https needs a certificate and key; asking clients for
        certificates needs the CA that signs them."""
        cert, key, ca = (
            getattr(self, f"{prefix.replace('-', '_')}{name}")
            for name in ("cert_file", "key_file", "trusted_ca_file")
        )
        secure = [u for u in urls if urlsplit(u).scheme in ("https", "unixs")]
        if secure and not (cert and key):
            raise ConfigError(
                f"--{prefix}cert-file and --{prefix}key-file are needed to serve "
                f"{side} TLS on {secure[0]}"
            )
        if bool(cert) != bool(key):
            raise ConfigError(f"--{prefix}cert-file and --{prefix}key-file go together")
        if cert_auth and not ca:
            raise ConfigError(f"--{prefix}client-cert-auth needs --{prefix}trusted-ca-file")

    @property
    def client_tls(self) -> bool:
        return any(urlsplit(u).scheme in ("https", "unixs") for u in self.listen_client_urls)

    @property
    def peer_tls(self) -> bool:
        return any(urlsplit(u).scheme in ("https", "unixs") for u in self.listen_peer_urls)

    @property
    def data_path(self) -> Path:
        """etcd's default data directory is ``<name>.etcd`` in the working directory."""
        return Path(self.data_dir or f"{self.name}.etcd")

    @property
    def quota_bytes(self) -> int:
        """0 means etcd's default quota."""
        return self.quota_backend_bytes or QUOTA_BACKEND_BYTES_DEFAULT

    @property
    def election_timeout_ticks(self) -> int:
        """The Raft core counts heartbeats; the runtime ticks once per heartbeat."""
        return max(2, math.ceil(self.election_timeout_ms / self.heartbeat_interval_ms))

    def cluster_peers(self) -> dict[str, tuple[str, ...]]:
        """``--initial-cluster`` as name -> peer URLs (a name may appear more than once)."""
        spec = self.initial_cluster or ",".join(
            f"{self.name}={url}" for url in self.initial_advertise_peer_urls
        )
        peers: dict[str, list[str]] = {}
        for item in spec.split(","):
            name, sep, url = item.strip().partition("=")
            if not sep or not name or not url:
                raise ConfigError(
                    f"--initial-cluster: {item!r} is not of the form name=http://host:port"
                )
            parse_url(url, "initial_cluster")
            peers.setdefault(name, []).append(url)
        if self.name not in peers:
            raise ConfigError(
                f"couldn't find local name {self.name!r} in the initial cluster configuration"
            )
        return {name: tuple(urls) for name, urls in peers.items()}

    def member_ids(self) -> dict[str, int]:
        """A member's id is derived from its peer URLs and the cluster token, as etcd's
        is, so every member computes the same ids from the same flags."""
        return {
            name: member_id(urls, self.initial_cluster_token)
            for name, urls in self.cluster_peers().items()
        }


def member_id(peer_urls: tuple[str, ...], cluster_token: str) -> int:
    """A stable non-zero 64-bit id from sorted peer URLs and the cluster token."""
    digest = hashlib.sha1(("".join(sorted(peer_urls)) + cluster_token).encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def parse_url(url: str, flag: str) -> tuple[str, int]:
    """``http://host:port`` -> (host, port), with the flag named in any error."""
    parts = urlsplit(url)
    flag_name = "--" + flag.replace("_", "-")
    if parts.scheme not in ("http", "https", "unix", "unixs"):
        raise ConfigError(f"{flag_name}: URL scheme must be http, https, unix or unixs: {url!r}")
    if not parts.hostname:
        raise ConfigError(f"{flag_name}: URL has no host: {url!r}")
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{flag_name}: bad port in {url!r}") from exc
    if port is None:
        raise ConfigError(f"{flag_name}: URL has no port: {url!r}")
    return parts.hostname, port


def _check_positive(flag: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"--{flag} must be a positive integer, got {value!r}")


_URL_LIST_FIELDS = frozenset(
    {
        "listen_client_urls",
        "advertise_client_urls",
        "listen_peer_urls",
        "initial_advertise_peer_urls",
        "listen_metrics_urls",
    }
)
_INT_FIELDS = frozenset(
    {
        "snapshot_count",
        "auth_token_ttl",
        "quota_backend_bytes",
        "max_request_bytes",
        "max_concurrent_streams",
        "max_pending_proposals",
        "max_pending_proposal_bytes",
        "max_apply_gap_entries",
        "max_pending_reads",
        "heartbeat_interval_ms",
        "election_timeout_ms",
    }
)
BOOL_FIELDS = frozenset({"client_cert_auth", "peer_client_cert_auth"})
# The flags etcd does not have, with what they mean; every other flag is etcd's.
SYNDIC_FLAG_HELP = {
    "max-pending-proposals": "writes waiting on this member past which a new one is "
    f"refused with 'too many requests' (default {MAX_PENDING_PROPOSALS_DEFAULT})",
    "max-pending-proposal-bytes": "bytes of writes waiting on this member past which a new "
    f"one is refused (default {MAX_PENDING_PROPOSAL_BYTES_DEFAULT})",
    "max-apply-gap-entries": "committed entries not yet applied past which a new write is "
    f"refused (default {MAX_APPLY_GAP_ENTRIES_DEFAULT})",
    "max-pending-reads": "linearizable reads waiting for their ReadIndex round past which a "
    f"new one is refused (default {MAX_PENDING_READS_DEFAULT})",
}
# etcd's flag names where they differ from the field (etcd's intervals are in ms).
_FLAG_FOR_FIELD = {
    "heartbeat_interval_ms": "heartbeat-interval",
    "election_timeout_ms": "election-timeout",
}
FIELD_FOR_FLAG = {
    _FLAG_FOR_FIELD.get(f.name, f.name.replace("_", "-")): f.name
    for f in dataclasses.fields(ServerConfig)
    if f.name != "extra"
}


def _coerce(field_name: str, raw: Any, source: str) -> Any:
    flag = _FLAG_FOR_FIELD.get(field_name, field_name.replace("_", "-"))
    if field_name in _URL_LIST_FIELDS:
        items = raw if isinstance(raw, list | tuple) else str(raw).split(",")
        return tuple(str(item).strip() for item in items if str(item).strip())
    if field_name in BOOL_FIELDS:
        if isinstance(raw, bool):
            return raw
        if str(raw).lower() in ("true", "1"):
            return True
        if str(raw).lower() in ("false", "0"):
            return False
        raise ConfigError(f"{source}: {flag} must be true or false, got {raw!r}")
    if field_name in _INT_FIELDS:
        if isinstance(raw, bool):
            raise ConfigError(f"{source}: {flag} must be an integer, got {raw!r}")
        try:
            return int(raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {flag} must be an integer, got {raw!r}") from exc
    if not isinstance(raw, str | int):
        raise ConfigError(f"{source}: {flag} must be a string, got {raw!r}")
    return str(raw)


def load_config(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config_file: Path | None = None,
) -> ServerConfig:
    """Merge defaults, a YAML file, ``ETCD_*``/``SYNDIC_*`` variables and flags.

    ``flags`` holds only the flags given on the command line (etcd names, e.g.
    ``{"data-dir": "/var/lib/x"}``).
    """
    values: dict[str, Any] = {}
    if config_file is not None:
        values.update(_read_config_file(config_file))
    for flag, field_name in FIELD_FOR_FLAG.items():
        env_suffix = flag.upper().replace("-", "_")
        for prefix in ("ETCD_", "SYNDIC_"):
            if prefix + env_suffix in environ:
                values[field_name] = _coerce(
                    field_name, environ[prefix + env_suffix], prefix + env_suffix
                )
    for flag, raw in flags.items():
        if flag not in FIELD_FOR_FLAG:
            raise ConfigError(f"unknown flag --{flag}")
        values[FIELD_FOR_FLAG[flag]] = _coerce(FIELD_FOR_FLAG[flag], raw, f"--{flag}")
    # etcd: without --advertise-client-urls, clients are told the listen URLs.
    if "listen_client_urls" in values and "advertise_client_urls" not in values:
        values["advertise_client_urls"] = values["listen_client_urls"]
    if "listen_peer_urls" in values and "initial_advertise_peer_urls" not in values:
        values["initial_advertise_peer_urls"] = values["listen_peer_urls"]
    return ServerConfig(**values)


# A config file is small; refuse to parse something that is clearly not one.
CONFIG_FILE_BYTES_MAX = 1024 * 1024


def _read_config_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--config-file {path}: {exc.strerror}") from exc
    if len(raw) > CONFIG_FILE_BYTES_MAX:
        raise ConfigError(f"--config-file {path}: larger than {CONFIG_FILE_BYTES_MAX} bytes")
    try:
        document = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config-file {path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise ConfigError(f"--config-file {path}: expected a mapping of setting: value")
    values: dict[str, Any] = {}
    for key, raw_value in document.items():
        if key not in FIELD_FOR_FLAG:
            raise ConfigError(f"--config-file {path}: unknown setting {key!r}")
        values[FIELD_FOR_FLAG[key]] = _coerce(FIELD_FOR_FLAG[key], raw_value, f"{path}: {key}")
    return values
