"""The records of the auth store and the bounds on them.

Users, roles and permissions are frozen values: the store replaces a record
to change it, so a failed operation never leaves one half-edited.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from syndic.server.backend import auth_input_too_large

# etcd: auth.rootUser / auth.rootRole. The root role bypasses every key check
# and alone may administer auth, membership and maintenance.
ROOT_USER: Final = "root"
ROOT_ROLE: Final = "root"

# etcd bounds names only by the request size; syndic bounds them so one
# entry cannot grow every member's auth store (and each snapshot) by MiBs.
# 256 bytes holds any DNS name or Kubernetes object name.
NAME_BYTES_MAX: Final = 256
# scrypt digests any length in the same time, but a client should not make
# the proposer hash a megabyte; 1 KiB is far above any sane password.
PASSWORD_BYTES_MAX: Final = 1024
# Keys in permissions obey etcd's own key bound (the request size); this
# tighter one keeps one role's record small.
PERMISSION_KEY_BYTES_MAX: Final = 4096
# A limit on everything: the store stays small enough to check on every
# request and to ship in every snapshot.
USERS_MAX: Final = 10_000
ROLES_MAX: Final = 10_000
ROLES_PER_USER_MAX: Final = 256
PERMISSIONS_PER_ROLE_MAX: Final = 1024

# etcd: a range_end of a single zero byte means "every key from ``key`` on".
OPEN_RANGE_END: Final = b"\x00"


class PermType(enum.IntEnum):
    """authpb.Permission.Type: what a permission allows on its keys."""

    READ = 0
    WRITE = 1
    READWRITE = 2

    def allows(self, wanted: PermType) -> bool:
        """True if this grant covers ``wanted`` (READ or WRITE)."""
        return self is PermType.READWRITE or self is wanted


@dataclass(frozen=True, slots=True)
class Permission:
    """A grant on one key (``range_end`` empty) or on ``[key, range_end)``."""

    perm_type: PermType
    key: bytes
    range_end: bytes = b""

    def interval(self) -> tuple[bytes, bytes | None]:
        """The half-open key interval granted; ``None`` as the end means unbounded."""
        if not self.range_end:
            # etcd: adt.NewStringAffinePoint, the interval [key, key + "\0").
            return self.key, self.key + b"\x00"
        if self.range_end == OPEN_RANGE_END:
            return self.key, None
        return self.key, self.range_end


@dataclass(frozen=True, slots=True)
class User:
    """A user: its password hash (``""`` when created with no password) and roles, sorted.

    ``credential_revision`` is the auth revision at which the user was created
    or its password last changed; tokens issued before it are refused (etcd
    drops a user's simple tokens on both).
    """

    name: str
    password_hash: str
    roles: tuple[str, ...]
    no_password: bool
    credential_revision: int

    def has_root_role(self) -> bool:
        return ROOT_ROLE in self.roles


@dataclass(frozen=True, slots=True)
class Role:
    """A role and its permissions, sorted by (key, range_end) as etcd lists them."""

    name: str
    permissions: tuple[Permission, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """Who a request comes from, and the auth revision it was authorized at.

    Writes carry both into the log; applying refuses them when the auth store
    moved on in between (etcd: AuthInfo, ErrAuthOldRevision).
    """

    user: str
    revision: int


def check_name_size(what: str, name: str) -> None:
    """Raise etcd-style INVALID_ARGUMENT if ``name`` is past NAME_BYTES_MAX."""
    size_bytes = len(name.encode())
    if size_bytes > NAME_BYTES_MAX:
        raise auth_input_too_large(what, size_bytes, NAME_BYTES_MAX)


def check_password_size(password: str) -> None:
    size_bytes = len(password.encode())
    if size_bytes > PASSWORD_BYTES_MAX:
        raise auth_input_too_large("password", size_bytes, PASSWORD_BYTES_MAX)
