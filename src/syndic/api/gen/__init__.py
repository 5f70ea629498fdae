"""Generated protobuf modules for syndic's etcd v3 API; do not edit.

Regenerate with ``scripts/gen-protos`` after changing
``src/syndic/api/proto/*.proto``.
"""
