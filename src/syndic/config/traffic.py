"""Traffic rules served by the configuration centre.

A data id whose settings say ``traffic_rules`` holds one rule document of
:mod:`syndic.traffic.rules`; the store validates every publish with that
parser, so a document a policy would refuse never reaches a client.
:func:`bind_policy` keeps a :class:`~syndic.traffic.policy.Policy` on the
content this client gets, gray releases included: a breaker setting
released to 10% of client ids reaches exactly those instances' policies.

Example::

    policy = Policy({})
    binding = await bind_policy(cfg, policy, "orders", "inventory-client.yaml")
    ...
    binding.cancel()
"""

from __future__ import annotations

import logging

from syndic.config.sdk import ConfigChange, ConfigClient, ConfigValue, Subscription
from syndic.traffic.errors import RuleError
from syndic.traffic.policy import Policy

log = logging.getLogger("syndic.config.traffic")


def _swap(policy: Policy, value: ConfigValue) -> None:
    try:
        policy.swap_rules(value.value())
    except (RuleError, ValueError) as exc:
        # Only a failover file or a missing local limiter gets here (the
        # centre refuses invalid rules); the policy keeps the rules it has.
        log.error(
            "traffic rules %s v%d refused, keeping the old ones: %s",
            value.config.path,
            value.version,
            exc,
        )


async def bind_policy(cfg: ConfigClient, policy: Policy, group: str, data_id: str) -> Subscription:
    """Apply the current rules now and every later change; cancel() the result to stop."""
    _swap(policy, await cfg.get(group, data_id))

    def on_change(change: ConfigChange) -> None:
        if change.new is not None:
            _swap(policy, change.new)

    return await cfg.add_listener(group, data_id, on_change)
