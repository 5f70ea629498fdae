"""Service registry on the etcd v3 API: the model, its key layout, the store layer and the SDK.

Everything here reaches the store only through :mod:`syndic.client`, so it
runs on a syndic cluster or on any etcd. The key layout is documented in
``docs/registry.md`` and in :mod:`syndic.registry.keys`.

Example::

    from syndic.registry import Instance, Registry

    async with Client(["127.0.0.1:2379"]) as client:
        registry = Registry(client)
        async with await registry.register(Instance("default", "web", "web-1", "10.0.0.1", 80)):
            live = await registry.discover("web")
"""

from syndic.registry.calls import ServiceCaller
from syndic.registry.keys import DEFAULT_PREFIX, KeyLayout
from syndic.registry.model import (
    CheckDefinition,
    CheckKind,
    CheckState,
    HealthStatus,
    Instance,
    ModelError,
    ServiceSettings,
)
from syndic.registry.sdk import LiveEndpoints, Registration, Registry, endpoints_of
from syndic.registry.store import RegistryStore

__all__ = [
    "DEFAULT_PREFIX",
    "CheckDefinition",
    "CheckKind",
    "CheckState",
    "HealthStatus",
    "Instance",
    "KeyLayout",
    "LiveEndpoints",
    "ModelError",
    "Registration",
    "Registry",
    "RegistryStore",
    "ServiceCaller",
    "ServiceSettings",
    "endpoints_of",
]
