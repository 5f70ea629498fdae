"""The client's errors, as typed exceptions that carry etcd's message.

A failed call raises a subclass of :class:`ClientError`. Errors the server
sent keep its gRPC status code (``code``) and its message text, which for
etcd's own errors is the text etcd's ``rpctypes`` package defines
(``etcdserver: requested lease not found``), so a caller can match on the
type and still log what the server said. Errors found before any call is
sent (a bad key, an oversized value) are :class:`InvalidRequestError`.

Example::

    try:
        await client.revoke(lease_id)
    except NotFoundError as err:
        print(err.message)   # "etcdserver: requested lease not found"
"""

from __future__ import annotations

from typing import Final

import grpc


class ClientError(Exception):
    """Base of every error raised by syndic.client.

    ``code`` is the gRPC status code the server answered (None when the
    client refused the call itself); ``message`` is the server's text.
    ``retry_safe`` says the request was not applied, so repeating it (on
    another member) cannot apply it twice.
    """

    def __init__(self, message: str, *, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.retry_safe = False


class InvalidRequestError(ClientError, ValueError):
    """The request is malformed; it was refused before anything was sent."""


class InvalidArgumentError(ClientError):
    """The server refused a field of the request (INVALID_ARGUMENT)."""


class RequestTooLargeError(InvalidArgumentError):
    """etcd: ErrGRPCRequestTooLarge, or the client's own size check."""


class CompactedError(ClientError):
    """The requested revision was compacted; ``compact_revision`` is the oldest left."""

    def __init__(
        self,
        compact_revision: int = 0,
        message: str = "etcdserver: mvcc: required revision has been compacted",
        *,
        code: grpc.StatusCode | None = grpc.StatusCode.OUT_OF_RANGE,
    ) -> None:
        if compact_revision:
            message = f"{message} (compact revision {compact_revision})"
        super().__init__(message, code=code)
        self.compact_revision = compact_revision


class FutureRevisionError(ClientError):
    """etcd: ErrGRPCFutureRev, a range at a revision the store has not reached."""


class NotFoundError(ClientError):
    """A lease (or member, user, role) the call names does not exist."""


class AlreadyExistsError(ClientError):
    """A lease, member, user or role with that identity already exists."""


class PermissionDeniedError(ClientError):
    """Auth is enabled and the user may not do this (etcd: ErrGRPCPermissionDenied)."""


class AuthenticationError(ClientError):
    """The credentials or the token were refused (etcd: ErrGRPCAuthFailed, invalid token)."""


class TokenExpiredError(AuthenticationError):
    """The auth token is no longer valid (etcd: ErrGRPCInvalidAuthToken); the
    client renews it once with its credentials and repeats the call."""


class NoSpaceError(ClientError):
    """The store is over its quota or the NOSPACE alarm is raised."""


class UnavailableError(ClientError):
    """No endpoint could serve the call: all unreachable, or without a leader."""


class OutcomeUnknownError(ClientError):
    """A write was sent but its answer was lost: it may or may not have been applied.

    The client does not retry it, since applying a non-idempotent write twice
    is worse than asking the caller to look: read the key and decide.
    """

    def __init__(self, method: str, cause: str) -> None:
        super().__init__(
            f"outcome of {method} unknown: the request was sent but no answer came "
            f"back ({cause}); it may or may not have been applied, and was not retried",
            code=grpc.StatusCode.UNAVAILABLE,
        )
        self.method = method
        self.cause = cause


class DeadlineExceededError(ClientError):
    """The call's deadline passed before an answer came."""


class WatchCanceledError(ClientError):
    """The server canceled a watch (for a reason other than compaction)."""


class ClosedError(ClientError):
    """The client (or the lease keeper, or the watch) was closed."""


class LeaseExpiredError(ClientError):
    """A lease kept alive in the background expired or was revoked by someone else."""


# etcd: api/v3rpc/rpctypes/error.go. Exact texts whose meaning the code alone
# does not give (several share FAILED_PRECONDITION or INVALID_ARGUMENT).
_BY_MESSAGE: Final[dict[str, type[ClientError]]] = {
    "etcdserver: mvcc: required revision has been compacted": CompactedError,
    "etcdserver: mvcc: required revision is a future revision": FutureRevisionError,
    "etcdserver: request is too large": RequestTooLargeError,
    "etcdserver: requested lease not found": NotFoundError,
    "etcdserver: lease already exists": AlreadyExistsError,
    "etcdserver: member not found": NotFoundError,
    "etcdserver: member ID already exist": AlreadyExistsError,
    "etcdserver: Peer URLs already exists": AlreadyExistsError,
    "etcdserver: user name not found": NotFoundError,
    "etcdserver: role name not found": NotFoundError,
    "etcdserver: user name already exists": AlreadyExistsError,
    "etcdserver: role name already exists": AlreadyExistsError,
    "etcdserver: authentication failed, invalid user ID or password": AuthenticationError,
    "etcdserver: invalid auth token": AuthenticationError,
    "etcdserver: user name is empty": AuthenticationError,
    "etcdserver: permission denied": PermissionDeniedError,
    "etcdserver: mvcc: database space exceeded": NoSpaceError,
    "etcdserver: no leader": UnavailableError,
    "etcdserver: not leader": UnavailableError,
    "etcdserver: leader changed": UnavailableError,
    "etcdserver: request timed out": UnavailableError,
    "etcdserver: request timed out, possibly due to previous leader failure": UnavailableError,
    "etcdserver: request timed out, possibly due to connection lost": UnavailableError,
    "etcdserver: server stopped": UnavailableError,
    "etcdserver: too many requests": UnavailableError,
}

_BY_CODE: Final[dict[grpc.StatusCode, type[ClientError]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: NoSpaceError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
}

# Messages after which the request is known not to have been applied, so even
# a non-idempotent write may go to another member: etcd refuses before
# proposing when it has no leader (ErrNoLeader) or is stopping, and gRPC says
# "failed to connect" when the request never left the client.
NEVER_APPLIED_MESSAGES: Final = frozenset(
    {"etcdserver: no leader", "etcdserver: not leader", "etcdserver: too many requests"}
)


def error_from_status(code: grpc.StatusCode, message: str) -> ClientError:
    """The typed error for a gRPC status the server answered."""
    error_type = _BY_MESSAGE.get(message)
    if error_type is None:
        error_type = _BY_CODE.get(code, ClientError)
    if error_type is CompactedError:
        return CompactedError(0, message, code=code)
    if error_type is RequestTooLargeError and code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return RequestTooLargeError(message, code=code)
    return error_type(message, code=code)


def error_from_rpc(exc: grpc.aio.AioRpcError) -> ClientError:
    """The typed error for a failed grpc.aio call."""
    return error_from_status(exc.code(), exc.details() or "")
