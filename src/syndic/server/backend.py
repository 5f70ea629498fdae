"""What the gRPC services need from a member, as one protocol.

The services (``syndic.server.grpc_api``) translate etcd's protobuf messages
to and from ``syndic.kv`` requests and call a :class:`Backend`; the member
runtime (``syndic.server.node``) implements it on Raft. Keeping the seam
here lets the services be tested against a single in-process member and
lets the runtime change without touching the wire layer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from syndic.kv.messages import (
    HashKVResponse,
    LeaseLeasesResponse,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    RangeRequest,
    RangeResponse,
    TxnRequest,
    TxnResponse,
)
from syndic.kv.watch import WatchStream

if TYPE_CHECKING:
    from syndic.server.auth import AuthStore


@dataclass(frozen=True, slots=True)
class Header:
    """etcd's ResponseHeader: which cluster and member answered, at what revision and term."""

    cluster_id: int
    member_id: int
    revision: int
    raft_term: int


@dataclass(frozen=True, slots=True)
class Member:
    """A cluster member as etcd's Cluster API describes it."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool = False


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """What Maintenance.Status reports."""

    version: str
    db_size_bytes: int
    db_size_in_use_bytes: int
    leader_id: int
    raft_index: int
    raft_term: int
    raft_applied_index: int
    errors: tuple[str, ...]
    is_learner: bool


class Backend(Protocol):
    """A member, as the gRPC services see it.

    Every method raises ``syndic.kv.errors.KvError`` subclasses for the
    mistakes etcd reports (each carries the gRPC code and etcd's message),
    and :class:`ServerError` for the server-level ones.
    """

    def header(self) -> Header:
        """The header for a response produced now."""
        ...

    async def write(self, request: object) -> object:
        """Replicate and apply one mutating ``syndic.kv`` request.

        Accepts PutRequest, DeleteRangeRequest, TxnRequest, CompactionRequest,
        LeaseGrantRequest and LeaseRevokeRequest; returns the matching response
        once the request is committed and applied on this member.
        """
        ...

    async def range(self, request: RangeRequest) -> RangeResponse:
        """A Range: linearizable (ReadIndex) unless ``request.serializable``."""
        ...

    async def read_txn(self, request: TxnRequest) -> TxnResponse:
        """A Txn that :func:`txn_is_read_only` accepts, served like a Range, with
        no log entry: linearizable (ReadIndex) unless :func:`txn_is_serializable`."""
        ...

    async def lease_keep_alive(self, lease_id: int) -> int:
        """Renew a lease in the leader's memory (no log entry); the granted TTL
        in seconds. A follower hands the renewal to its leader."""
        ...

    def lease_time_to_live(self, request: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        """This member's own view: the granted TTL and keys are replicated,
        the remaining TTL is meaningful only on the leader."""
        ...

    async def lease_ttl(self, request: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        """TimeToLive as the leader sees it (etcd forwards it to the leader):
        only the leader's clock knows a lease's deadline."""
        ...

    def lease_leases(self) -> LeaseLeasesResponse: ...

    def open_watch_stream(self) -> WatchStream:
        """A new watch stream on this member's hub; close it when the gRPC stream ends."""
        ...

    def watch_listen(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake`` whenever watch streams may have new responses to pull
        (writes applied, a compaction, the hub replaced); returns the function
        that stops the calls."""
        ...

    def hash_kv(self, revision: int) -> HashKVResponse: ...

    def status(self) -> MemberStatus: ...

    def members(self) -> list[Member]: ...

    async def member_add(self, peer_urls: tuple[str, ...], is_learner: bool) -> Member: ...

    async def member_remove(self, member_id: int) -> None: ...

    async def member_update(self, member_id: int, peer_urls: tuple[str, ...]) -> None: ...

    async def member_promote(self, member_id: int) -> None: ...

    async def move_leader(self, target_id: int) -> None: ...

    def snapshot_bytes(self) -> bytes:
        """The member state as ``StateMachine.serialize()`` writes it (Maintenance.Snapshot)."""
        ...

    def alarms(self) -> list[tuple[int, str]]:
        """Active alarms as (member id, alarm name: NOSPACE or CORRUPT)."""
        ...

    async def alarm_activate(self, member_id: int, alarm: str) -> None:
        """Raise an alarm (NOSPACE or CORRUPT) through the log, on every member."""
        ...

    async def alarm_disarm(self, alarm: str) -> None: ...

    async def auth_apply(self, op: list[Any]) -> Any:
        """Replicate one auth operation (an AUTH log entry, see ``syndic.server.auth.ops``)
        and return what applying it returned on this member; raises its AuthError or KvError."""
        ...

    def auth_store(self) -> AuthStore:
        """This member's applied auth store; read it, never change it."""
        ...


def txn_is_read_only(request: TxnRequest) -> bool:
    """etcd: isTxnReadonly. Both branches hold Range ops alone (a nested Txn
    counts as a write, as in etcd), so the Txn changes nothing and needs no
    log entry; its compares only read."""
    return all(type(op) is RangeRequest for op in request.success) and all(
        type(op) is RangeRequest for op in request.failure
    )


def txn_is_serializable(request: TxnRequest) -> bool:
    """etcd: isTxnSerializable. Every op of a read-only Txn asks for a
    serializable read (an empty Txn too), so no ReadIndex round is needed."""
    return all(
        type(op) is RangeRequest and op.serializable for op in (*request.success, *request.failure)
    )


class ServerError(Exception):
    """A server-level failure with the gRPC status code name and etcd's message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# etcd: rpctypes errors raised by the server rather than the store.
def not_leader() -> ServerError:
    return ServerError("UNAVAILABLE", "etcdserver: no leader")


def request_timed_out() -> ServerError:
    return ServerError("UNAVAILABLE", "etcdserver: request timed out")


def too_many_requests() -> ServerError:
    # etcd: rpctypes.ErrGRPCTooManyRequests, refused before proposing.
    return ServerError("RESOURCE_EXHAUSTED", "etcdserver: too many requests")


def member_not_found() -> ServerError:
    return ServerError("NOT_FOUND", "etcdserver: member not found")


def unhealthy_cluster() -> ServerError:
    return ServerError("UNAVAILABLE", "etcdserver: unhealthy cluster")


def not_enough_started_members() -> ServerError:
    return ServerError(
        "FAILED_PRECONDITION",
        "etcdserver: re-configuration failed due to not enough started members",
    )


def peer_url_exists() -> ServerError:
    return ServerError("FAILED_PRECONDITION", "etcdserver: Peer URLs already exists")


def member_not_learner() -> ServerError:
    return ServerError("FAILED_PRECONDITION", "etcdserver: can only promote a learner member")


def learner_not_ready() -> ServerError:
    return ServerError(
        "FAILED_PRECONDITION",
        "etcdserver: can only promote a learner member which is in sync with leader",
    )


def member_bad_urls() -> ServerError:
    return ServerError("INVALID_ARGUMENT", "etcdserver: given member URLs are invalid")


def server_stopped() -> ServerError:
    return ServerError("UNAVAILABLE", "etcdserver: server stopped")


def request_too_large() -> ServerError:
    return ServerError("INVALID_ARGUMENT", "etcdserver: request is too large")


# ---------------------------------------------------------------- auth errors
#
# etcd: rpctypes.ErrGRPC* of the auth store (etcdserver/api/v3rpc/rpctypes,
# 3.4). The codes and messages are what etcdctl and clientv3 match on.


class AuthError(ServerError):
    """An error of the auth store, with etcd's status code and message."""


def root_user_not_exist() -> AuthError:
    return AuthError("FAILED_PRECONDITION", "etcdserver: root user does not exist")


def root_role_not_exist() -> AuthError:
    return AuthError("FAILED_PRECONDITION", "etcdserver: root user does not have root role")


def user_already_exist() -> AuthError:
    return AuthError("FAILED_PRECONDITION", "etcdserver: user name already exists")


def user_empty() -> AuthError:
    return AuthError("INVALID_ARGUMENT", "etcdserver: user name is empty")


def user_not_found() -> AuthError:
    return AuthError("FAILED_PRECONDITION", "etcdserver: user name not found")


def role_already_exist() -> AuthError:
    return AuthError("FAILED_PRECONDITION", "etcdserver: role name already exists")


def role_not_found() -> AuthError:
    return AuthError("FAILED_PRECONDITION", "etcdserver: role name not found")


def role_empty() -> AuthError:
    return AuthError("INVALID_ARGUMENT", "etcdserver: role name is empty")


def auth_failed() -> AuthError:
    return AuthError(
        "INVALID_ARGUMENT", "etcdserver: authentication failed, invalid user ID or password"
    )


def permission_denied() -> AuthError:
    return AuthError("PERMISSION_DENIED", "etcdserver: permission denied")


def role_not_granted() -> AuthError:
    return AuthError("FAILED_PRECONDITION", "etcdserver: role is not granted to the user")


def permission_not_granted() -> AuthError:
    return AuthError("FAILED_PRECONDITION", "etcdserver: permission is not granted to the role")


def auth_not_enabled() -> AuthError:
    return AuthError("FAILED_PRECONDITION", "etcdserver: authentication is not enabled")


def invalid_auth_token() -> AuthError:
    return AuthError("UNAUTHENTICATED", "etcdserver: invalid auth token")


def invalid_auth_mgmt() -> AuthError:
    return AuthError("INVALID_ARGUMENT", "etcdserver: invalid auth management")


def auth_old_revision() -> AuthError:
    return AuthError("INVALID_ARGUMENT", "etcdserver: revision of auth store is old")


def permission_not_given() -> AuthError:
    # etcd 3.5: ErrGRPCPermissionNotGiven (3.4 crashes on a grant without one).
    return AuthError("INVALID_ARGUMENT", "etcdserver: permission not given")


def no_password_user_auth() -> AuthError:
    # etcd 3.4 does not translate this one: clients see the store's own text
    # with gRPC's UNKNOWN code.
    return AuthError(
        "UNKNOWN", "auth: authentication failed, password was given for no password user"
    )


def auth_input_too_large(what: str, size_bytes: int, limit_bytes: int) -> AuthError:
    """A name, password or token past syndic's bound (etcd has none but the request size)."""
    return AuthError(
        "INVALID_ARGUMENT",
        f"etcdserver: {what} is too long ({size_bytes} bytes, at most {limit_bytes})",
    )


def auth_limit_reached(what: str, limit: int) -> AuthError:
    """The auth store holds as many users, roles or grants as syndic allows."""
    return AuthError("RESOURCE_EXHAUSTED", f"etcdserver: too many {what} (at most {limit})")
