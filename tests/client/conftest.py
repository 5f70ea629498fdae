"""Client tests run against syndic and Debian's etcd with the same code."""

from tests.stores import key_prefix, own_store, store, store_kind  # noqa: F401
