"""etcd v3 authentication and authorization, as a pure state machine.

``AuthStore`` holds users, roles, permissions, the enabled flag, the auth
revision and the token signing key; AUTH log entries change it (see
``apply_auth_entry``), so every member agrees. ``password`` hashes
passwords (the proposer hashes, members only store), ``token`` signs and
checks the tokens clients send as ``token`` metadata. Nothing here reads a
clock or draws randomness: callers pass the time, salts and keys in.
"""

from syndic.server.auth.apply import WRITE_OP, apply_auth_entry
from syndic.server.auth.model import (
    NAME_BYTES_MAX,
    PASSWORD_BYTES_MAX,
    ROOT_ROLE,
    ROOT_USER,
    AuthInfo,
    Permission,
    PermType,
    Role,
    User,
)
from syndic.server.auth.password import hash_password, verify_password
from syndic.server.auth.store import OPERATIONS, AuthSnapshotError, AuthStore
from syndic.server.auth.token import TOKEN_TTL_S_DEFAULT, TokenClaims, sign_token, verify_token

__all__ = [
    "NAME_BYTES_MAX",
    "OPERATIONS",
    "PASSWORD_BYTES_MAX",
    "ROOT_ROLE",
    "ROOT_USER",
    "TOKEN_TTL_S_DEFAULT",
    "WRITE_OP",
    "AuthInfo",
    "AuthSnapshotError",
    "AuthStore",
    "PermType",
    "Permission",
    "Role",
    "TokenClaims",
    "User",
    "apply_auth_entry",
    "hash_password",
    "sign_token",
    "verify_password",
    "verify_token",
]
