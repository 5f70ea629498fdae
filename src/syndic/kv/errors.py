"""Errors of the MVCC store, as typed exceptions.

Each error carries the gRPC status code name (``grpc_code``) and the exact
message text a real etcd returns for the same condition, so the gRPC layer
can answer ``status.Status(code, message)`` without a lookup table.

Source of codes and texts: etcd ``api/v3rpc/rpctypes/error.go`` (3.4/3.5).

Example::

    try:
        store.range(RangeRequest(key=b"a", revision=1))
    except CompactedError as err:
        assert err.grpc_code == "OUT_OF_RANGE"
"""

from __future__ import annotations


class KvError(Exception):
    """Base of every error raised by syndic.kv.

    ``grpc_code`` is the name of a ``grpc.StatusCode`` member; ``message`` is
    the status message; ``detail`` adds syndic-side context (the key, the
    revision, the field) and is not part of the wire message.
    """

    grpc_code = "UNKNOWN"
    message = "etcdserver: unknown error"

    def __init__(self, detail: str = "") -> None:
        self.detail = detail
        super().__init__(f"{self.message} ({detail})" if detail else self.message)


class InvalidArgumentError(KvError):
    """A request field has the wrong type or is outside its domain.

    etcd cannot receive these over protobuf (a field is always typed and
    int64-sized); syndic's Python callers can, so they get INVALID_ARGUMENT.
    """

    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: invalid argument"


class EmptyKeyError(KvError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: key is not provided"  # etcd: ErrGRPCEmptyKey


class KeyNotFoundError(KvError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: key not found"  # etcd: ErrGRPCKeyNotFound


class ValueProvidedError(KvError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: value is provided"  # etcd: ErrGRPCValueProvided


class LeaseProvidedError(KvError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: lease is provided"  # etcd: ErrGRPCLeaseProvided


class TooManyOpsError(KvError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: too many operations in txn request"  # etcd: ErrGRPCTooManyOps


class DuplicateKeyError(KvError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: duplicate key given in txn request"  # etcd: ErrGRPCDuplicateKey


class InvalidSortOptionError(KvError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: invalid sort option"  # etcd: ErrGRPCInvalidSortOption


class RequestTooLargeError(KvError):
    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: request is too large"  # etcd: ErrGRPCRequestTooLarge


class CompactedError(KvError):
    grpc_code = "OUT_OF_RANGE"
    message = "etcdserver: mvcc: required revision has been compacted"  # etcd: ErrGRPCCompacted


class FutureRevisionError(KvError):
    grpc_code = "OUT_OF_RANGE"
    message = "etcdserver: mvcc: required revision is a future revision"  # etcd: ErrGRPCFutureRev


class NoSpaceError(KvError):
    """The write would push the store past its quota, or the NOSPACE alarm is active.

    The runtime should propose ``AlarmType.NOSPACE`` activation (as etcd's
    server does) so every member refuses writes until an operator compacts,
    defragments and disarms the alarm.
    """

    grpc_code = "RESOURCE_EXHAUSTED"
    message = "etcdserver: mvcc: database space exceeded"  # etcd: ErrGRPCNoSpace


class LeaseNotFoundError(KvError):
    grpc_code = "NOT_FOUND"
    message = "etcdserver: requested lease not found"  # etcd: ErrGRPCLeaseNotFound


class LeaseExistsError(KvError):
    grpc_code = "FAILED_PRECONDITION"
    message = "etcdserver: lease already exists"  # etcd: ErrGRPCLeaseExist


class LeaseTTLTooLargeError(KvError):
    grpc_code = "OUT_OF_RANGE"
    message = "etcdserver: too large lease TTL"  # etcd: ErrGRPCLeaseTTLTooLarge


class SnapshotCorruptError(KvError):
    """Snapshot bytes failed the version, checksum or structure check on restore."""

    grpc_code = "DATA_LOSS"
    message = "etcdserver: corrupt cluster"  # etcd: ErrGRPCCorrupt


class WatchError(KvError):
    """A watch stream request names an unknown or duplicate watch id, or is past a bound."""

    grpc_code = "INVALID_ARGUMENT"
    message = "etcdserver: invalid watch request"
