"""syndic: one platform for scalable, reliable distributed services.

The layers and the decisions that hold them together are described in
``docs/design.md``; the etcd v3 API is the contract between the replicated
store and everything built on it.
"""

__version__ = "0.1.0"
