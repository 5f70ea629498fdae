"""The etcd v3 client API: protobuf messages and gRPC service bindings.

``syndic.api.gen`` holds the messages generated from ``api/proto/*.proto``
(etcd 3.5's wire format under syndic's own package names);
``syndic.api.services`` binds them to etcd's gRPC method paths.

Example::

    from syndic.api import rpc_pb2
    from syndic.api.services import KV_SERVICE, make_stub

    stub = make_stub(channel, KV_SERVICE)
    response = await stub.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"))
"""

from syndic.api.gen import auth_pb2, kv_pb2, rpc_pb2

__all__ = ["auth_pb2", "kv_pb2", "rpc_pb2"]
