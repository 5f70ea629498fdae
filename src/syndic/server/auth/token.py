"""Signed auth tokens that every member can check without asking the others.

A token names its user, the auth revision at which it was issued and when
it expires, signed with HMAC-SHA256 under the cluster's signing key. The key
is drawn by the member that proposes AuthEnable and replicated in that
entry (and in snapshots), so a token issued by one member verifies on all.
Enabling auth again draws a new key, which voids every earlier token.

Form (dot-separated, URL-safe base64 without padding)::

    <b64(user)>.<revision>.<expires unix s>.<b64(hmac)>

etcd's default "simple" tokens live five minutes and are refreshed on use;
a stateless token cannot be refreshed, so syndic's tokens live
``TOKEN_TTL_S_DEFAULT`` from issue, like etcd's JWT tokens, and a client
authenticates again when it is told "invalid auth token" (clientv3 does so
itself).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Final

# etcd: --auth-token-ttl defaults to 300 seconds.
TOKEN_TTL_S_DEFAULT: Final = 300
SIGNING_KEY_BYTES: Final = 32
# A token is user name (<= 256 bytes, ~344 in base64) plus numbers and a
# MAC; anything longer is refused before any parsing.
TOKEN_BYTES_MAX: Final = 1024


class TokenError(ValueError):
    """A token that is malformed, forged or expired."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user: str
    revision: int
    expires_s: int


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> bytes:
    return hmac.new(key, body.encode(), hashlib.sha256).digest()


def sign_token(key: bytes, claims: TokenClaims) -> str:
    """The token for ``claims`` under ``key``."""
    if len(key) != SIGNING_KEY_BYTES:
        raise TokenError(f"signing key must be {SIGNING_KEY_BYTES} bytes")
    body = f"{_b64(claims.user.encode())}.{claims.revision}.{claims.expires_s}"
    return f"{body}.{_b64(_mac(key, body))}"


def verify_token(key: bytes, token: str, now_s: float) -> TokenClaims:
    """The claims of a genuine, unexpired token; TokenError otherwise."""
    if len(key) != SIGNING_KEY_BYTES:
        raise TokenError("no signing key: authentication is not enabled")
    if len(token) > TOKEN_BYTES_MAX:
        raise TokenError(f"token is longer than {TOKEN_BYTES_MAX} bytes")
    parts = token.split(".")
    if len(parts) != 4:
        raise TokenError("token does not have four parts")
    body = ".".join(parts[:3])
    try:
        mac = _unb64(parts[3])
    except (ValueError, binascii.Error):
        raise TokenError("token signature is not base64") from None
    if not hmac.compare_digest(mac, _mac(key, body)):
        raise TokenError("token signature does not match")
    # Signed by a member: the fields below were written by sign_token.
    user = _unb64(parts[0]).decode()
    claims = TokenClaims(user, int(parts[1]), int(parts[2]))
    if now_s >= claims.expires_s:
        raise TokenError(f"token expired at {claims.expires_s}")
    return claims
