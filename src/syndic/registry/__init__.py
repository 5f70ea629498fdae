"""Service registry on the etcd v3 API: the model, its key layout, the store layer and the SDK.

Everything here reaches the store only through :mod:`syndic.client`, so it
runs on a syndic cluster or on any etcd. The key layout is documented in
``docs/registry.md`` and in :mod:`syndic.registry.keys`.
"""
