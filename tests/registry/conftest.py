from tests.stores import key_prefix, store, store_kind  # noqa: F401
