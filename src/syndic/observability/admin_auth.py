"""Who an admin-API request speaks for, using the member's own auth store.

With auth off every request passes. With auth on, the console logs in with a
user and password (checked and recorded as the gRPC ``Authenticate`` does)
and sends the token it gets in ``Authorization``, as etcd clients do; key
reads and writes are checked against the user's role, and the debug and
alert endpoints need the root role.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from syndic.server.auth.model import AuthInfo, PermType
from syndic.server.auth.password import verify_password
from syndic.server.auth.store import AuthStore
from syndic.server.auth.token import TOKEN_TTL_S_DEFAULT, TokenClaims, sign_token

# Password and user names longer than this are refused before any hashing.
CREDENTIAL_CHARS_MAX = 256


def _token_of(request: web.Request) -> str:
    # EventSource (the console's live views) cannot send headers.
    return request.headers.get("Authorization", "") or request.query.get("token", "")


class AdminAuth:
    def __init__(self, node: Any, token_ttl_s: int = TOKEN_TTL_S_DEFAULT) -> None:
        self.node = node
        self.token_ttl_s = token_ttl_s

    @property
    def enabled(self) -> bool:
        return bool(self.node.auth_store().enabled)

    async def login(self, user: object, password: object) -> str:
        """A token for ``user``; HTTPUnauthorized if the credentials are wrong."""
        if not isinstance(user, str) or not isinstance(password, str):
            raise web.HTTPBadRequest(text="user and password must be strings")
        if len(user) > CREDENTIAL_CHARS_MAX or len(password) > CREDENTIAL_CHARS_MAX:
            raise web.HTTPBadRequest(
                text=f"user and password are at most {CREDENTIAL_CHARS_MAX} chars"
            )
        store = self.node.auth_store()
        if not store.enabled:
            raise web.HTTPBadRequest(text="auth is not enabled")
        record = store.users.get(user)
        if record is None or record.no_password:
            raise web.HTTPUnauthorized(text="authentication failed")
        if not await asyncio.to_thread(verify_password, password, record.password_hash):
            raise web.HTTPUnauthorized(text="authentication failed")
        revision = await self.node.auth_apply(["authenticate", "", user, record.password_hash])
        store = self.node.auth_store()
        expires_s = int(time.time()) + self.token_ttl_s
        return sign_token(store.signing_key, TokenClaims(user, revision, expires_s))

    def renew(self, request: web.Request) -> str:
        """A fresh token for the caller of a valid token, ``token_ttl_s`` from
        now: the console renews its user's token while it is open, as etcd
        clients authenticate again. The new token keeps the old one's
        revision, so a password changed or a user deleted since the login
        voids it as it voids the old one; an expired token renews nothing."""
        store = self.node.auth_store()
        if not store.enabled:
            raise web.HTTPBadRequest(text="auth is not enabled")
        now_s = time.time()
        claims = self._claims(store, request, now_s)
        expires_s = int(now_s) + self.token_ttl_s
        return sign_token(store.signing_key, TokenClaims(claims.user, claims.revision, expires_s))

    def token(self, request: web.Request) -> str | None:
        """The caller's checked token, to call the member's APIs as the caller;
        None with auth off. HTTPUnauthorized without a valid token."""
        if self.info(request) is None:
            return None
        return _token_of(request)

    def info(self, request: web.Request) -> AuthInfo | None:
        """The caller; None with auth off. HTTPUnauthorized without a valid token."""
        store = self.node.auth_store()
        if not store.enabled:
            return None
        return AuthInfo(self._claims(store, request, time.time()).user, store.revision)

    @staticmethod
    def _claims(store: AuthStore, request: web.Request, now_s: float) -> TokenClaims:
        token = _token_of(request)
        if not token:
            raise web.HTTPUnauthorized(text="log in first: auth is enabled")
        try:
            return store.token_claims(token, now_s)
        except Exception:
            raise web.HTTPUnauthorized(text="invalid or expired token") from None

    def require_admin(self, request: web.Request) -> None:
        info = self.info(request)
        if info is None:
            return
        try:
            self.node.auth_store().check_admin(info.user)
        except Exception:
            raise web.HTTPForbidden(text="the root role is needed") from None

    def allowed(self, info: AuthInfo | None, key: bytes, range_end: bytes, write: bool) -> bool:
        try:
            self.node.auth_store().check_permission(
                info, key, range_end, PermType.WRITE if write else PermType.READ
            )
        except Exception:
            return False
        return True

    def require(
        self, request: web.Request, key: bytes, range_end: bytes, write: bool, what: str = ""
    ) -> None:
        info = self.info(request)
        if not self.allowed(info, key, range_end, write):
            user = info.user if info is not None else ""
            access = "write" if write else "read"
            target = what or key.decode("utf-8", errors="replace")[:80]
            raise web.HTTPForbidden(
                text=f"permission denied: user {user!r} may not {access} {target}"
            )

    def is_admin(self, info: AuthInfo | None) -> bool:
        if info is None:
            return True
        try:
            self.node.auth_store().check_admin(info.user)
        except Exception:
            return False
        return True
