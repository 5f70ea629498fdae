"""Readings the sampler takes from the store itself (local, serializable reads)."""

from __future__ import annotations

from typing import Any, Final

from syndic.kv.messages import RangeRequest, prefix_end
from syndic.registry.keys import KeyLayout
from syndic.registry.model import HealthStatus, ModelError, decode_check_state

# Check records read per probe; a registry larger than this is counted in part.
PROBE_KEYS_MAX: Final = 20_000


async def instances_critical(node: Any, layout: KeyLayout | None = None) -> int:
    """Registered instances with at least one critical check (Consul's health state)."""
    layout = layout or KeyLayout()
    prefix = (layout.prefix + "svc/").encode()
    resp = await node.range(
        RangeRequest(
            key=prefix, range_end=prefix_end(prefix), serializable=True, limit=PROBE_KEYS_MAX
        )
    )
    critical: set[tuple[str, str, str]] = set()
    for kv in resp.kvs:
        parsed = layout.parse(kv.key)
        if parsed is None or parsed.kind != "check":
            continue
        try:
            state = decode_check_state(kv.value)
        except ModelError:
            continue
        if state.status is HealthStatus.CRITICAL:
            critical.add((parsed.namespace, parsed.service, parsed.instance_id))
    return len(critical)
