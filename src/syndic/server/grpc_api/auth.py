"""etcd's Auth service, and the gate every other service asks before it serves a call.

:class:`AuthServicer` answers ``etcdserverpb.Auth``. Every change to users,
roles and permissions, and every read of them, is one AUTH log entry
(``backend.auth_apply``), as etcd sends them through Raft: all members
agree, and a read reflects every change acknowledged before it. Passwords
are hashed here, by the member that received the request, before the entry
is proposed; the salt and the token signing key are drawn here too, with
``secrets``, so applying stays deterministic and cheap.

:class:`AuthGate` is the one place the services check who a call comes from
and what it may do, with etcd 3.4's rules:

- a call's ``token`` metadata (what etcd clients send) names the user; a
  missing token is "user name is empty" once auth is enabled, a bad one is
  "invalid auth token" (even while auth is disabled, as etcd 3.4 answers);
- Range and Watch need READ on their range, Put and DeleteRange WRITE, a
  Txn both for each compare and operation, a lease revoke WRITE on every key
  attached to the lease; the root role passes every check;
- membership changes, MoveLeader, Hash, HashKV, Defragment and Snapshot
  need the root role; the maintenance ones answer like etcd 3.4 does, with
  gRPC UNKNOWN and the auth store's untranslated text.

Writes are checked here and again when their entry applies (see
``syndic.server.auth.apply``), so a permission revoked meanwhile is honoured.
"""

# ruff: noqa: N802  (handlers carry etcd's method names: Range, Put, ...)

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

from syndic.api.gen import auth_pb2, rpc_pb2
from syndic.kv.messages import LeaseTimeToLiveRequest, RangeRequest, RangeResponse
from syndic.server.auth import (
    TOKEN_TTL_S_DEFAULT,
    WRITE_OP,
    AuthInfo,
    AuthStore,
    PermType,
    TokenClaims,
    User,
    hash_password,
    sign_token,
    verify_password,
)
from syndic.server.auth.model import check_name_size, check_password_size
from syndic.server.auth.password import SALT_BYTES, SCRYPT_LOG2_N_DEFAULT
from syndic.server.auth.token import SIGNING_KEY_BYTES
from syndic.server.backend import (
    AuthError,
    Backend,
    auth_failed,
    auth_not_enabled,
    no_password_user_auth,
    permission_not_given,
    user_already_exist,
    user_empty,
    user_not_found,
)
from syndic.server.entry_codec import store_request
from syndic.server.grpc_api import convert

_T = TypeVar("_T")

# etcd: rpctypes.TokenFieldNameGRPC, and TokenFieldNameSwagger for the
# gateway; both carry the token.
TOKEN_METADATA_KEYS: Final = ("token", "authorization")
# Password hashes computed at once on one member. Each takes ~16 MiB and
# tens of milliseconds of a core; more callers wait rather than exhaust the
# member's memory (a flood of Authenticate calls is a cheap attack otherwise).
PASSWORD_HASHES_IN_FLIGHT_MAX: Final = 4

# etcd 3.4's maintenance server returns the auth store's own errors
# untranslated: gRPC UNKNOWN and the "auth:" text.
_UNTRANSLATED: Final = {
    "etcdserver: user name is empty": "auth: user name is empty",
    "etcdserver: user name not found": "auth: user not found",
    "etcdserver: permission denied": "auth: permission denied",
    "etcdserver: invalid auth token": "auth: invalid auth token",
}


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """How this member issues tokens and hashes passwords.

    ``scrypt_log2_n`` is scrypt's cost as a power of two; lower it only in
    tests (every hash records its own cost, so a member with another setting
    still verifies it).
    """

    token_ttl_s: int = TOKEN_TTL_S_DEFAULT
    scrypt_log2_n: int = SCRYPT_LOG2_N_DEFAULT

    def __post_init__(self) -> None:
        if type(self.token_ttl_s) is not int or self.token_ttl_s <= 0:
            raise ValueError(f"AuthSettings.token_ttl_s must be a positive int: {self.token_ttl_s}")
        if type(self.scrypt_log2_n) is not int or not 1 <= self.scrypt_log2_n <= 20:
            raise ValueError(f"AuthSettings.scrypt_log2_n must be in 1..20: {self.scrypt_log2_n}")


def token_of(context: Any) -> str | None:
    """The auth token a call carries in its metadata, or None."""
    metadata = context.invocation_metadata() or ()
    for key in TOKEN_METADATA_KEYS:
        for item in metadata:
            if item[0] == key:
                value = item[1]
                return value if isinstance(value, str) else bytes(value).decode("latin-1")
    return None


class AuthGate:
    """Resolves a call's user and checks its permissions; shared by every servicer.

    ``wall_clock_s`` (Unix seconds) times token expiry; members compare it
    with expiry times written by other members, so it is the wall clock.
    """

    def __init__(
        self,
        backend: Backend,
        settings: AuthSettings | None = None,
        wall_clock_s: Callable[[], float] = time.time,
    ) -> None:
        self._backend = backend
        self.settings = settings if settings is not None else AuthSettings()
        self._wall_clock_s = wall_clock_s

    @property
    def store(self) -> AuthStore:
        return self._backend.auth_store()

    def now_s(self) -> float:
        return self._wall_clock_s()

    def info(self, context: Any) -> AuthInfo | None:
        """The caller named by the call's token, None without one; raises invalid_auth_token."""
        token = token_of(context)
        if token is None:
            return None
        return self.store.authenticate_token(token, self.now_s())

    def actor(self, context: Any) -> str:
        info = self.info(context)
        return info.user if info is not None else ""

    def _lease_keys(self, lease_id: int) -> tuple[bytes, ...]:
        return self._backend.lease_time_to_live(LeaseTimeToLiveRequest(lease_id, keys=True)).keys

    async def synced(self, check: Callable[[], _T]) -> _T:
        """``check()``; if it fails, again once this member has caught up with the log.

        A member that has not yet applied a change acknowledged by another
        (a new user, a grant, auth just enabled) must not refuse what the
        cluster already allows; a linearizable read is the Backend's
        barrier (ReadIndex, no log entry). A refusal costs that one round.
        """
        try:
            return check()
        except AuthError:
            await self._backend.range(RangeRequest(key=b"\x00", count_only=True))
            return check()

    async def range(self, context: Any, request: RangeRequest) -> RangeResponse:
        """``backend.range`` for a caller allowed to read the range."""

        def check() -> None:
            info = self.info(context)
            self.store.check_permission(info, request.key, request.range_end, PermType.READ)

        if request.serializable:
            # Served from this member's state, checked against the same state.
            check()
            return await self._backend.range(request)
        # etcd: the permission check follows the ReadIndex round, so it sees
        # every auth change acknowledged before the read.
        response = await self._backend.range(request)
        check()
        return response

    async def write(self, context: Any, request: object) -> object:
        """``backend.write``, or once auth is enabled, the write as an AUTH entry that
        applying checks again. A :class:`WireRequest` (a client's write with its
        protobuf bytes) is checked and, under auth, logged as its decoded request."""
        plain = store_request(request)

        def check() -> AuthInfo | None:
            info = self.info(context)
            # Refused here, a denied request costs no log entry.
            self.store.check_request(info, plain, self._lease_keys)
            return info

        try:
            info = check()  # the common case awaits nothing
        except AuthError:
            info = await self.synced(check)
        if not self.store.enabled:
            return await self._backend.write(request)
        user, revision = (info.user, info.revision) if info is not None else ("", 0)
        return await self._backend.auth_apply([WRITE_OP, user, revision, plain])

    async def require_admin(self, context: Any) -> None:
        """etcd: checkMembershipOperationPermission (the root role, once auth is enabled)."""
        await self.synced(lambda: self.store.check_admin(self.actor(context)))

    async def require_admin_untranslated(self, context: Any) -> None:
        """:meth:`require_admin` as etcd 3.4's maintenance server answers it."""
        try:
            await self.require_admin(context)
        except AuthError as exc:
            message = _UNTRANSLATED.get(exc.message, exc.message)
            raise AuthError("UNKNOWN", message) from None

    async def check_token(self, context: Any) -> None:
        """Refuse a bad token (etcd checks one on every proposal, even those needing
        no permission)."""
        await self.synced(lambda: self.info(context))

    async def watch_permitted(self, context: Any, key: bytes, range_end: bytes) -> bool:
        """etcd: isWatchPermitted. Any failure (no token, bad token) is a denial."""
        try:
            await self.synced(
                lambda: self.store.check_permission(
                    self.info(context), key, range_end, PermType.READ
                )
            )
        except AuthError:
            return False
        return True


class AuthServicer:
    """Serves ``etcdserverpb.Auth``."""

    def __init__(self, backend: Backend, gate: AuthGate) -> None:
        self._backend = backend
        self._gate = gate
        self._hashing: asyncio.Semaphore | None = None

    def _header(self) -> rpc_pb2.ResponseHeader:
        return convert.header_pb(self._backend.header())

    async def _apply(self, context: Any, name: str, *args: Any) -> Any:
        """Check access here (a refusal costs no entry), then replicate the operation."""

        def check() -> str:
            actor = self._gate.actor(context)
            self._gate.store.check_operation(name, actor, list(args))
            return actor

        actor = await self._gate.synced(check)
        return await self._backend.auth_apply([name, actor, *args])

    async def _hash(self, password: str) -> str:
        check_password_size(password)
        if self._hashing is None:
            self._hashing = asyncio.Semaphore(PASSWORD_HASHES_IN_FLIGHT_MAX)
        salt = secrets.token_bytes(SALT_BYTES)
        async with self._hashing:
            return await asyncio.to_thread(
                hash_password, password, salt, self._gate.settings.scrypt_log2_n
            )

    async def _verify(self, password: str, encoded: str) -> bool:
        if self._hashing is None:
            self._hashing = asyncio.Semaphore(PASSWORD_HASHES_IN_FLIGHT_MAX)
        async with self._hashing:
            return await asyncio.to_thread(verify_password, password, encoded)

    async def AuthEnable(
        self, request: rpc_pb2.AuthEnableRequest, context: Any
    ) -> rpc_pb2.AuthEnableResponse:
        await self._apply(context, "auth_enable", secrets.token_bytes(SIGNING_KEY_BYTES))
        return rpc_pb2.AuthEnableResponse(header=self._header())

    async def AuthDisable(
        self, request: rpc_pb2.AuthDisableRequest, context: Any
    ) -> rpc_pb2.AuthDisableResponse:
        await self._apply(context, "auth_disable")
        return rpc_pb2.AuthDisableResponse(header=self._header())

    async def AuthStatus(
        self, request: rpc_pb2.AuthStatusRequest, context: Any
    ) -> rpc_pb2.AuthStatusResponse:
        enabled, revision = await self._apply(context, "auth_status")
        return rpc_pb2.AuthStatusResponse(
            header=self._header(), enabled=enabled, authRevision=revision
        )

    async def Authenticate(
        self, request: rpc_pb2.AuthenticateRequest, context: Any
    ) -> rpc_pb2.AuthenticateResponse:
        check_name_size("user name", request.name)
        check_password_size(request.password)

        def lookup() -> User:
            store = self._gate.store
            if not store.enabled:
                raise auth_not_enabled()
            user = store.users.get(request.name)
            if user is None:
                raise auth_failed()
            return user

        user = await self._gate.synced(lookup)
        if user.no_password:
            raise no_password_user_auth()
        # etcd: CheckPassword runs before the request is proposed; the entry
        # then fails if the password changed in between.
        if not await self._verify(request.password, user.password_hash):
            raise auth_failed()
        revision = await self._backend.auth_apply(
            ["authenticate", "", request.name, user.password_hash]
        )
        store = self._gate.store
        if not store.enabled:
            raise auth_not_enabled()
        expires_s = int(self._gate.now_s()) + self._gate.settings.token_ttl_s
        token = sign_token(store.signing_key, TokenClaims(request.name, revision, expires_s))
        return rpc_pb2.AuthenticateResponse(header=self._header(), token=token)

    async def UserAdd(
        self, request: rpc_pb2.AuthUserAddRequest, context: Any
    ) -> rpc_pb2.AuthUserAddResponse:
        if not request.name:
            raise user_empty()
        check_name_size("user name", request.name)

        def check() -> None:
            # Every cheap refusal comes before the slow hash.
            actor = self._gate.actor(context)
            self._gate.store.check_operation("user_add", actor, [request.name, "", False])
            if request.name in self._gate.store.users:
                raise user_already_exist()

        await self._gate.synced(check)
        no_password = request.options.no_password
        # etcd 3.4 ignores hashedPassword (a 3.5 field): the member hashes.
        password_hash = "" if no_password else await self._hash(request.password)
        await self._apply(context, "user_add", request.name, password_hash, no_password)
        return rpc_pb2.AuthUserAddResponse(header=self._header())

    async def UserGet(
        self, request: rpc_pb2.AuthUserGetRequest, context: Any
    ) -> rpc_pb2.AuthUserGetResponse:
        roles = await self._apply(context, "user_get", request.name)
        return rpc_pb2.AuthUserGetResponse(header=self._header(), roles=list(roles))

    async def UserList(
        self, request: rpc_pb2.AuthUserListRequest, context: Any
    ) -> rpc_pb2.AuthUserListResponse:
        users = await self._apply(context, "user_list")
        return rpc_pb2.AuthUserListResponse(header=self._header(), users=list(users))

    async def UserDelete(
        self, request: rpc_pb2.AuthUserDeleteRequest, context: Any
    ) -> rpc_pb2.AuthUserDeleteResponse:
        await self._apply(context, "user_delete", request.name)
        return rpc_pb2.AuthUserDeleteResponse(header=self._header())

    async def UserChangePassword(
        self, request: rpc_pb2.AuthUserChangePasswordRequest, context: Any
    ) -> rpc_pb2.AuthUserChangePasswordResponse:
        def check() -> None:
            actor = self._gate.actor(context)
            self._gate.store.check_operation("user_change_password", actor, [request.name, ""])
            if request.name not in self._gate.store.users:
                raise user_not_found()  # before the slow hash; the entry would refuse it too

        await self._gate.synced(check)
        password_hash = await self._hash(request.password)
        await self._apply(context, "user_change_password", request.name, password_hash)
        return rpc_pb2.AuthUserChangePasswordResponse(header=self._header())

    async def UserGrantRole(
        self, request: rpc_pb2.AuthUserGrantRoleRequest, context: Any
    ) -> rpc_pb2.AuthUserGrantRoleResponse:
        await self._apply(context, "user_grant_role", request.user, request.role)
        return rpc_pb2.AuthUserGrantRoleResponse(header=self._header())

    async def UserRevokeRole(
        self, request: rpc_pb2.AuthUserRevokeRoleRequest, context: Any
    ) -> rpc_pb2.AuthUserRevokeRoleResponse:
        await self._apply(context, "user_revoke_role", request.name, request.role)
        return rpc_pb2.AuthUserRevokeRoleResponse(header=self._header())

    async def RoleAdd(
        self, request: rpc_pb2.AuthRoleAddRequest, context: Any
    ) -> rpc_pb2.AuthRoleAddResponse:
        await self._apply(context, "role_add", request.name)
        return rpc_pb2.AuthRoleAddResponse(header=self._header())

    async def RoleGet(
        self, request: rpc_pb2.AuthRoleGetRequest, context: Any
    ) -> rpc_pb2.AuthRoleGetResponse:
        perms = await self._apply(context, "role_get", request.role)
        return rpc_pb2.AuthRoleGetResponse(
            header=self._header(),
            perm=[
                auth_pb2.Permission(
                    permType=p.perm_type.name,
                    key=p.key,
                    range_end=p.range_end,
                )
                for p in perms
            ],
        )

    async def RoleList(
        self, request: rpc_pb2.AuthRoleListRequest, context: Any
    ) -> rpc_pb2.AuthRoleListResponse:
        roles = await self._apply(context, "role_list")
        return rpc_pb2.AuthRoleListResponse(header=self._header(), roles=list(roles))

    async def RoleDelete(
        self, request: rpc_pb2.AuthRoleDeleteRequest, context: Any
    ) -> rpc_pb2.AuthRoleDeleteResponse:
        await self._apply(context, "role_delete", request.role)
        return rpc_pb2.AuthRoleDeleteResponse(header=self._header())

    async def RoleGrantPermission(
        self, request: rpc_pb2.AuthRoleGrantPermissionRequest, context: Any
    ) -> rpc_pb2.AuthRoleGrantPermissionResponse:
        if not request.HasField("perm"):
            raise permission_not_given()
        perm = request.perm
        await self._apply(
            context,
            "role_grant_permission",
            request.name,
            int(perm.permType),
            bytes(perm.key),
            bytes(perm.range_end),
        )
        return rpc_pb2.AuthRoleGrantPermissionResponse(header=self._header())

    async def RoleRevokePermission(
        self, request: rpc_pb2.AuthRoleRevokePermissionRequest, context: Any
    ) -> rpc_pb2.AuthRoleRevokePermissionResponse:
        await self._apply(
            context,
            "role_revoke_permission",
            request.role,
            bytes(request.key),
            bytes(request.range_end),
        )
        return rpc_pb2.AuthRoleRevokePermissionResponse(header=self._header())
