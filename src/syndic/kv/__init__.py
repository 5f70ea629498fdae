"""MVCC state machine of the coordination store (sans-IO).

etcd v3's data model, applied from committed log entries:

* :mod:`syndic.kv.mvcc` — :class:`~syndic.kv.mvcc.Store`: revisions, Range,
  Put, DeleteRange, Txn, Compact, leases, quota and alarms, HashKV;
* :mod:`syndic.kv.messages` — requests, responses and events shaped like
  etcd's protobufs (frozen dataclasses);
* :mod:`syndic.kv.errors` — typed errors carrying etcd's gRPC code and text;
* :mod:`syndic.kv.watch` — the watch hub and per-client watch streams;
* :mod:`syndic.kv.lease` — lease bookkeeping (expiry decided by the caller);
* :mod:`syndic.kv.snapshot` — versioned, checksummed snapshot bytes.

Nothing here reads a clock, a socket or a random source: time arrives as
``now_ms`` arguments, so every member applying the same log ends in the same
state (``Store.hash_kv`` compares them).
"""
