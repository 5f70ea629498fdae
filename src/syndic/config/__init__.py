"""syndic.config: the configuration centre, on the etcd v3 API.

Publishing side: :class:`ConfigStore` (compare-and-set publish, rollback,
gray release, settings, key rotation). Service side: :class:`ConfigClient`
(``get``, listeners, async iteration, typed loading, snapshots, failover),
and :func:`bind_policy` for traffic rules. See ``docs/config.md``.

Example::

    from syndic.client import Client
    from syndic.config import ConfigClient

    async with Client(["127.0.0.1:2379"]) as etcd:
        cfg = ConfigClient(etcd, namespace="prod", client_id="orders-7")
        pool = await cfg.load("orders", "pool.yaml", PoolSettings)
"""

from syndic.config.errors import (
    CentreUnavailableError,
    ConfigError,
    ConfigNotFoundError,
    ConflictError,
    DecryptionError,
    InvalidInputError,
    SchemaViolationError,
)
from syndic.config.model import ConfigId, Entry, EntryKind, Format, Settings
from syndic.config.sdk import ConfigChange, ConfigClient, ConfigValue, Source, Subscription
from syndic.config.store import ConfigStore, StoreLimits
from syndic.config.sync import SyncConfigClient
from syndic.config.traffic import bind_policy

__all__ = [
    "CentreUnavailableError",
    "ConfigChange",
    "ConfigClient",
    "ConfigError",
    "ConfigId",
    "ConfigNotFoundError",
    "ConfigStore",
    "ConfigValue",
    "ConflictError",
    "DecryptionError",
    "Entry",
    "EntryKind",
    "Format",
    "InvalidInputError",
    "SchemaViolationError",
    "Settings",
    "Source",
    "StoreLimits",
    "Subscription",
    "SyncConfigClient",
    "bind_policy",
]
