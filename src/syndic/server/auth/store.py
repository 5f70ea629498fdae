"""The auth store: users, roles, permissions, the enabled flag and the auth revision.

A pure state machine, changed only by :meth:`AuthStore.apply` with one
operation of an AUTH log entry, so every member holds the same store after
the same entries. Each operation is a plain list ``[name, actor, *args]``;
``actor`` is the user the request came from (``""`` for none), checked here
at apply time as etcd's authApplierV3 does, so an admin whose root role is
revoked by an earlier entry cannot slip a change in after it.

The operations, their arguments and who may run them live in one table,
``OPERATIONS``; a name with no entry is refused. Every error is an
:class:`~syndic.server.backend.AuthError` with etcd's code and message, raised
before anything changes.

Example::

    store = AuthStore()
    store.apply(["user_add", "", "root", hash_password("pw", salt), False])
    store.apply(["user_grant_role", "", "root", "root"])
    store.apply(["auth_enable", "", signing_key])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from syndic.kv.messages import (
    DeleteRangeRequest,
    LeaseRevokeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    TxnRequest,
)
from syndic.server.auth import model
from syndic.server.auth.model import (
    OPEN_RANGE_END,
    ROOT_ROLE,
    ROOT_USER,
    AuthInfo,
    Permission,
    PermType,
    Role,
    User,
)
from syndic.server.auth.password import PasswordHashError, parse_hash
from syndic.server.auth.token import SIGNING_KEY_BYTES, TokenClaims, TokenError, verify_token
from syndic.server.backend import (
    AuthError,
    auth_failed,
    auth_limit_reached,
    auth_not_enabled,
    auth_old_revision,
    invalid_auth_mgmt,
    invalid_auth_token,
    permission_denied,
    permission_not_granted,
    role_already_exist,
    role_empty,
    role_not_found,
    role_not_granted,
    root_role_not_exist,
    root_user_not_exist,
    user_already_exist,
    user_empty,
    user_not_found,
)

# etcd: a new auth store commits revision 1, so 0 means "no auth info".
INITIAL_REVISION: Final = 1

LeaseKeys = Callable[[int], Iterable[bytes]]


class AuthSnapshotError(ValueError):
    """Serialized auth state that this version of syndic did not write."""


def malformed_op(detail: str) -> AuthError:
    # Only members write AUTH entries; a malformed one is refused, not applied.
    return AuthError("INVALID_ARGUMENT", f"etcdserver: malformed auth operation: {detail}")


# Who may run an operation when auth is enabled (etcd: needAdminPermission
# and authApplierV3.UserGet / RoleGet).
ADMIN: Final = "admin"  # a user with the root role
SELF_OR_ADMIN: Final = "self_or_admin"  # UserGet of oneself
HOLDER_OR_ADMIN: Final = "holder_or_admin"  # RoleGet of a role one holds
ANYONE: Final = "anyone"


@dataclass(frozen=True, slots=True)
class Operation:
    """One row of the operation table: argument types after the actor, and access."""

    arg_types: tuple[type, ...]
    access: str


OPERATIONS: Final[dict[str, Operation]] = {
    "auth_enable": Operation((bytes,), ADMIN),
    "auth_disable": Operation((), ADMIN),
    "auth_status": Operation((), ANYONE),
    # [name, password hash the proposer verified]: refused if it changed since.
    "authenticate": Operation((str, str), ANYONE),
    "user_add": Operation((str, str, bool), ADMIN),
    "user_get": Operation((str,), SELF_OR_ADMIN),
    "user_list": Operation((), ADMIN),
    "user_delete": Operation((str,), ADMIN),
    "user_change_password": Operation((str, str), ADMIN),
    "user_grant_role": Operation((str, str), ADMIN),
    "user_revoke_role": Operation((str, str), ADMIN),
    "role_add": Operation((str,), ADMIN),
    "role_get": Operation((str,), HOLDER_OR_ADMIN),
    "role_list": Operation((), ADMIN),
    "role_delete": Operation((str,), ADMIN),
    "role_grant_permission": Operation((str, int, bytes, bytes), ADMIN),
    "role_revoke_permission": Operation((str, bytes, bytes), ADMIN),
}


def _covers(intervals: list[tuple[bytes, bytes | None]], key: bytes, end: bytes | None) -> bool:
    """True if the union of ``intervals`` holds every key of ``[key, end)``."""
    reached = key
    for start, stop in sorted(intervals, key=lambda i: i[0]):
        if start > reached:
            return False  # a gap before the rest of the range
        if stop is None:
            return True
        reached = max(reached, stop)
        if end is not None and reached >= end:
            return True
    return False


class AuthStore:
    """etcd's auth store (auth/store.go), as a value every member holds alike."""

    def __init__(self) -> None:
        self.enabled = False
        self.revision = INITIAL_REVISION
        # Drawn by the member that proposed AuthEnable; empty while disabled.
        self.signing_key = b""
        self.users: dict[str, User] = {}
        self.roles: dict[str, Role] = {}

    # ------------------------------------------------------------ apply

    def apply(self, op: Sequence[Any]) -> Any:
        """Apply one operation ``[name, actor, *args]``; returns its result or raises AuthError."""
        if not isinstance(op, list | tuple) or len(op) < 2:
            raise malformed_op("not a [name, actor, ...] list")
        name, actor, *args = op
        row = OPERATIONS.get(name) if isinstance(name, str) else None
        if row is None:
            raise malformed_op(f"unknown operation {name!r:.40}")
        if not isinstance(actor, str) or len(args) != len(row.arg_types):
            raise malformed_op(f"{name} takes an actor and {len(row.arg_types)} arguments")
        for arg, kind in zip(args, row.arg_types, strict=True):
            # bool is an int: a permission type given as True is still refused.
            if type(arg) is not kind:
                raise malformed_op(f"{name} argument {arg!r:.40} is not {kind.__name__}")
        self._check_access(row.access, actor, args)
        handler: Callable[..., Any] = getattr(self, f"_op_{name}")
        return handler(*args)

    def check_operation(self, name: str, actor: str, args: list[Any]) -> None:
        """Raise what applying operation ``name`` would raise for lack of access."""
        self._check_access(OPERATIONS[name].access, actor, args)

    def _check_access(self, access: str, actor: str, args: list[Any]) -> None:
        if access == ANYONE or not self.enabled:
            return
        try:
            self.check_admin(actor)
        except AuthError:
            if access == SELF_OR_ADMIN and args[0] == actor:
                return
            user = self.users.get(actor)
            if access == HOLDER_OR_ADMIN and user is not None and args[0] in user.roles:
                return
            raise

    def _bump(self) -> None:
        self.revision += 1

    def _op_auth_enable(self, key: bytes) -> None:
        if self.enabled:
            return  # etcd: enabling twice succeeds and keeps the tokens valid
        root = self.users.get(ROOT_USER)
        if root is None:
            raise root_user_not_exist()
        if not root.has_root_role():
            raise root_role_not_exist()
        if len(key) != SIGNING_KEY_BYTES:
            raise malformed_op(f"signing key must be {SIGNING_KEY_BYTES} bytes")
        # etcd: AuthEnable does not move the revision.
        self.enabled = True
        self.signing_key = key

    def _op_auth_disable(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        self.signing_key = b""  # every token is void
        self._bump()

    def _op_auth_status(self) -> tuple[bool, int]:
        return self.enabled, self.revision

    def _op_authenticate(self, name: str, password_hash: str) -> int:
        if not self.enabled:
            raise auth_not_enabled()
        user = self.users.get(name)
        if user is None or user.no_password or user.password_hash != password_hash:
            raise auth_failed()
        return self.revision

    def _op_user_add(self, name: str, password_hash: str, no_password: bool) -> None:
        if not name:
            raise user_empty()
        model.check_name_size("user name", name)
        _check_hash(password_hash, no_password)
        if name in self.users:
            raise user_already_exist()
        if len(self.users) >= model.USERS_MAX:
            raise auth_limit_reached("users", model.USERS_MAX)
        self._bump()
        self.users[name] = User(name, password_hash, (), no_password, self.revision)

    def _op_user_get(self, name: str) -> tuple[str, ...]:
        return self._user(name).roles

    def _op_user_list(self) -> tuple[str, ...]:
        return tuple(sorted(self.users, key=str.encode))

    def _op_user_delete(self, name: str) -> None:
        if self.enabled and name == ROOT_USER:
            raise invalid_auth_mgmt()
        self._user(name)
        self._bump()
        del self.users[name]

    def _op_user_change_password(self, name: str, password_hash: str) -> None:
        user = self._user(name)
        # etcd keeps a no-password user's option across a password change.
        _check_hash(password_hash, False)
        self._bump()
        self.users[name] = replace(
            user, password_hash=password_hash, credential_revision=self.revision
        )

    def _op_user_grant_role(self, name: str, role: str) -> None:
        user = self._user(name)
        if role != ROOT_ROLE and role not in self.roles:
            raise role_not_found()
        if role in user.roles:
            return  # etcd: granting again succeeds and changes nothing
        if len(user.roles) >= model.ROLES_PER_USER_MAX:
            raise auth_limit_reached("roles for one user", model.ROLES_PER_USER_MAX)
        self._bump()
        roles = tuple(sorted((*user.roles, role), key=str.encode))
        self.users[name] = replace(user, roles=roles)

    def _op_user_revoke_role(self, name: str, role: str) -> None:
        if self.enabled and name == ROOT_USER and role == ROOT_ROLE:
            raise invalid_auth_mgmt()
        user = self._user(name)
        if role not in user.roles:
            raise role_not_granted()
        self._bump()
        self.users[name] = replace(user, roles=tuple(r for r in user.roles if r != role))

    def _op_role_add(self, name: str) -> None:
        if not name:
            raise role_empty()
        model.check_name_size("role name", name)
        if name in self.roles:
            raise role_already_exist()
        if len(self.roles) >= model.ROLES_MAX:
            raise auth_limit_reached("roles", model.ROLES_MAX)
        self._bump()
        self.roles[name] = Role(name)

    def _op_role_get(self, name: str) -> tuple[Permission, ...]:
        return self._role(name).permissions

    def _op_role_list(self) -> tuple[str, ...]:
        return tuple(sorted(self.roles, key=str.encode))

    def _op_role_delete(self, name: str) -> None:
        if self.enabled and name == ROOT_ROLE:
            raise invalid_auth_mgmt()
        self._role(name)
        self._bump()
        del self.roles[name]
        # etcd: the role is taken from every user that held it.
        for user in list(self.users.values()):
            if name in user.roles:
                roles = tuple(r for r in user.roles if r != name)
                self.users[user.name] = replace(user, roles=roles)

    def _op_role_grant_permission(
        self, name: str, perm_type: int, key: bytes, range_end: bytes
    ) -> None:
        # etcd 3.5's checks (3.4 stores any type and range, and then
        # misbehaves on them): a known type and a non-empty, ordered range.
        if perm_type not in PermType.__members__.values():
            raise invalid_auth_mgmt()
        if not key or len(key) > model.PERMISSION_KEY_BYTES_MAX:
            raise invalid_auth_mgmt()
        if len(range_end) > model.PERMISSION_KEY_BYTES_MAX:
            raise invalid_auth_mgmt()
        if range_end and range_end != OPEN_RANGE_END and range_end <= key:
            raise invalid_auth_mgmt()
        role = self._role(name)
        granted = Permission(PermType(perm_type), key, range_end)
        kept = [p for p in role.permissions if (p.key, p.range_end) != (key, range_end)]
        if len(kept) >= model.PERMISSIONS_PER_ROLE_MAX:
            raise auth_limit_reached("permissions for one role", model.PERMISSIONS_PER_ROLE_MAX)
        # etcd: a grant on the same key and range_end replaces the old type.
        perms = tuple(sorted((*kept, granted), key=lambda p: (p.key, p.range_end)))
        self._bump()
        self.roles[name] = replace(role, permissions=perms)

    def _op_role_revoke_permission(self, name: str, key: bytes, range_end: bytes) -> None:
        role = self._role(name)
        kept = tuple(p for p in role.permissions if (p.key, p.range_end) != (key, range_end))
        if len(kept) == len(role.permissions):
            raise permission_not_granted()
        self._bump()
        self.roles[name] = replace(role, permissions=kept)

    def _user(self, name: str) -> User:
        user = self.users.get(name)
        if user is None:
            raise user_not_found()
        return user

    def _role(self, name: str) -> Role:
        role = self.roles.get(name)
        if role is None:
            raise role_not_found()
        return role

    # ------------------------------------------------------------ checks

    def check_admin(self, actor: str) -> None:
        """etcd: IsAdminPermitted. Passes while auth is disabled."""
        if not self.enabled:
            return
        if not actor:
            raise user_empty()
        user = self.users.get(actor)
        if user is None:
            raise user_not_found()
        if not user.has_root_role():
            raise permission_denied()

    def authenticate_token(self, token: str, now_s: float) -> AuthInfo:
        """Who ``token`` speaks for, at the current auth revision; invalid_auth_token if
        it is forged, expired, its user is gone, or it predates the user's password."""
        return AuthInfo(self.token_claims(token, now_s).user, self.revision)

    def token_claims(self, token: str, now_s: float) -> TokenClaims:
        """A valid token's claims (its user, login revision and expiry), checked
        as :meth:`authenticate_token` checks them."""
        try:
            claims = verify_token(self.signing_key, token, now_s)
        except TokenError:
            raise invalid_auth_token() from None
        user = self.users.get(claims.user)
        if user is None or claims.revision < user.credential_revision:
            raise invalid_auth_token()
        return claims

    def check_permission(
        self, info: AuthInfo | None, key: bytes, range_end: bytes, wanted: PermType
    ) -> None:
        """etcd: isOpPermitted. ``wanted`` is READ or WRITE on ``[key, range_end)``
        (one key if ``range_end`` is empty, every key from ``key`` on if it is "\\0")."""
        if not self.enabled:
            return
        if info is None or not info.user:
            raise user_empty()
        if info.revision < self.revision:
            raise auth_old_revision()
        user = self.users.get(info.user)
        if user is None:
            raise permission_denied()
        if user.has_root_role():
            return
        intervals = [
            perm.interval()
            for role_name in user.roles
            if (role := self.roles.get(role_name)) is not None
            for perm in role.permissions
            if perm.perm_type.allows(wanted)
        ]
        if not _covers(intervals, key, _request_end(key, range_end)):
            raise permission_denied()

    def check_request(self, info: AuthInfo | None, request: object, lease_keys: LeaseKeys) -> None:
        """The permissions a store request needs (etcd: authApplierV3, checkTxnAuth)."""
        if not self.enabled:
            return
        read, write = PermType.READ, PermType.WRITE
        if type(request) is RangeRequest:
            self.check_permission(info, request.key, request.range_end, read)
        elif type(request) is PutRequest:
            self.check_permission(info, request.key, b"", write)
            # A user may not attach a key to a lease it could not revoke.
            for key in lease_keys(request.lease) if request.lease else ():
                self.check_permission(info, key, b"", write)
            if request.prev_kv:
                self.check_permission(info, request.key, b"", read)
        elif type(request) is DeleteRangeRequest:
            self.check_permission(info, request.key, request.range_end, write)
            if request.prev_kv:
                self.check_permission(info, request.key, request.range_end, read)
        elif type(request) is TxnRequest:
            for cmp in request.compare:
                self.check_permission(info, cmp.key, cmp.range_end, read)
            for op in _txn_ops(request):
                self.check_request(info, op, lease_keys)
        elif type(request) is LeaseRevokeRequest:
            for key in lease_keys(request.id):
                self.check_permission(info, key, b"", write)
        # Compaction, lease grant and keep-alive need no permission (etcd 3.4).

    # ------------------------------------------------------------ snapshots

    def serialize(self) -> list[Any]:
        """Plain msgpack-able data; :meth:`restore` reads it back."""
        users = [
            [u.name, u.password_hash, list(u.roles), u.no_password, u.credential_revision]
            for u in sorted(self.users.values(), key=lambda u: u.name)
        ]
        roles = [
            [r.name, [[int(p.perm_type), p.key, p.range_end] for p in r.permissions]]
            for r in sorted(self.roles.values(), key=lambda r: r.name)
        ]
        return [self.enabled, self.revision, self.signing_key, users, roles]

    @classmethod
    def restore(cls, data: Any) -> AuthStore:
        """Rebuild a store from :meth:`serialize` output; AuthSnapshotError if invalid."""
        store = cls()
        try:
            enabled, revision, signing_key, users, roles = data
            store.enabled = enabled is True
            store.revision = int(revision)
            store.signing_key = bytes(signing_key)
            for name, pw_hash, user_roles, no_password, cred_rev in users:
                store.users[name] = User(
                    str(name), str(pw_hash), tuple(user_roles), no_password is True, int(cred_rev)
                )
            for name, perms in roles:
                store.roles[name] = Role(
                    str(name),
                    tuple(Permission(PermType(t), bytes(k), bytes(e)) for t, k, e in perms),
                )
            store.check_invariants()
        except (AssertionError, TypeError, ValueError) as exc:
            raise AuthSnapshotError(f"auth state is not syndic's: {exc!r}") from exc
        return store

    def check_invariants(self) -> None:
        """Assert what every operation preserves."""
        assert self.revision >= INITIAL_REVISION, self.revision
        assert (len(self.signing_key) == SIGNING_KEY_BYTES) == self.enabled
        if self.enabled:
            # Neither root nor its root role can be removed while enabled.
            root = self.users.get(ROOT_USER)
            assert root is not None and root.has_root_role()
        assert len(self.users) <= model.USERS_MAX and len(self.roles) <= model.ROLES_MAX
        for name, user in self.users.items():
            assert name == user.name and name
            assert list(user.roles) == sorted(set(user.roles), key=str.encode), user.roles
            assert all(r in self.roles or r == ROOT_ROLE for r in user.roles), user.roles
            assert user.credential_revision <= self.revision
            if user.password_hash:
                parse_hash(user.password_hash)
            else:
                assert user.no_password, f"user {name} has neither password nor no_password"
        for name, role in self.roles.items():
            assert name == role.name and name
            spans = [(p.key, p.range_end) for p in role.permissions]
            assert spans == sorted(set(spans)), spans
            assert len(spans) <= model.PERMISSIONS_PER_ROLE_MAX


def _request_end(key: bytes, range_end: bytes) -> bytes | None:
    """The end of a requested range as ``_covers`` reads it; None is unbounded."""
    if not range_end:
        return key + b"\x00"  # one key
    if range_end == OPEN_RANGE_END:
        return None
    if range_end <= key:
        # An empty range reads nothing; check its first key as etcd's point check does.
        return key + b"\x00"
    return range_end


def _txn_ops(request: TxnRequest) -> tuple[RequestOp, ...]:
    return request.success + request.failure


def _check_hash(password_hash: str, no_password: bool) -> None:
    if no_password:
        if password_hash:
            raise malformed_op("a user with no password has no password hash")
        return
    try:
        parse_hash(password_hash)
    except PasswordHashError as exc:
        raise malformed_op(str(exc)) from None
