"""The agent's settings: every limit named, with its unit and why."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

from syndic.registry.keys import DEFAULT_PREFIX
from syndic.registry.model import DEFAULT_NAMESPACE, ModelError, check_name

#: Consul's default HTTP address; ``syndic dev`` serves the API there.
DEFAULT_HTTP_ADDR = "127.0.0.1:8500"


def _default_node() -> str:
    name = socket.gethostname().split(".")[0] or "syndic"
    try:
        return check_name(name, "node")
    except ModelError:
        return "syndic"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """Settings of one agent, with Consul's defaults where Consul has one."""

    node_name: str = field(default_factory=_default_node)
    datacenter: str = "dc1"
    namespace: str = DEFAULT_NAMESPACE
    key_prefix: str = DEFAULT_PREFIX
    advertise_address: str = "127.0.0.1"
    http_addr: str = DEFAULT_HTTP_ADDR
    #: Consul: enable_script_checks is off by default (a registration could
    #: otherwise run any command on the agent's host).
    enable_script_checks: bool = False
    #: Anti-entropy: how often local registrations are compared with the store
    #: and rewritten where they differ (Consul syncs about once a minute; a
    #: pending write failed by a store outage is retried every ``retry_ms``).
    anti_entropy_interval_ms: float = 30_000.0
    anti_entropy_retry_ms: float = 1_000.0
    #: How often TTL expiries and deregister delays are checked, in ms.
    ttl_tick_ms: float = 500.0
    #: Most probes running at once: 1,000 HTTP checks at 10 s are 100/s, so
    #: 256 in flight leaves room for slow targets without unbounded sockets.
    probes_in_flight_max: int = 256
    #: Largest HTTP request body, in bytes (Consul's KV value limit is 512 KiB;
    #: a registration is far smaller).
    http_body_bytes_max: int = 512 * 1024
    #: Largest KV value, in bytes (Consul: kv_max_value_size, 512 KiB).
    kv_value_bytes_max: int = 512 * 1024
    #: Blocking queries: Consul's default wait is 5 minutes, its maximum 10.
    blocking_wait_ms_default: float = 300_000.0
    blocking_wait_ms_max: float = 600_000.0
    #: Most keys a recursive KV read returns (a bound on reply size).
    kv_keys_max: int = 10_000
    #: Session TTL bounds (Consul: 10 s to 24 h).
    session_ttl_ms_min: float = 10_000.0
    session_ttl_ms_max: float = 86_400_000.0
    #: Most services registered through one agent.
    local_services_max: int = 10_000

    def __post_init__(self) -> None:
        check_name(self.node_name, "node_name")
        check_name(self.datacenter, "datacenter")
        check_name(self.namespace, "namespace")
        for name in (
            "anti_entropy_interval_ms",
            "anti_entropy_retry_ms",
            "ttl_tick_ms",
            "blocking_wait_ms_default",
            "blocking_wait_ms_max",
        ):
            if not getattr(self, name) > 0:
                raise ModelError(name, "must be above 0")
        for name in ("probes_in_flight_max", "http_body_bytes_max", "kv_value_bytes_max"):
            if not getattr(self, name) > 0:
                raise ModelError(name, "must be above 0")
