"""The syndic server runtime: one asyncio loop per member driving the pure
Raft and MVCC cores, serving etcd's v3 gRPC API and an HTTP admin API."""
