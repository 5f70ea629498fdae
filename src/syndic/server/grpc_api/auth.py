"""etcd's Auth service as a real etcd answers it with authentication disabled
and no users or roles created.

syndic has no user store yet, so it can truthfully answer what such an etcd
answers: status (disabled), disable (a no-op), enable (refused: there is no
root user), authenticate (refused: not enabled), empty user and role lists,
and "not found" for any named user or role. Creating users and roles
(UserAdd, RoleAdd) is not offered and gets gRPC's UNIMPLEMENTED, so a client
never believes it created one.
"""

# ruff: noqa: N802  (handlers carry etcd's method names: Range, Put, ...)

from __future__ import annotations

from typing import Any

from syndic.api.gen import rpc_pb2
from syndic.server.backend import Backend, ServerError
from syndic.server.grpc_api import convert


# etcd: rpctypes.ErrGRPCAuthNotEnabled, ErrGRPCRootUserNotExist,
# ErrGRPCUserNotFound, ErrGRPCRoleNotFound.
def auth_not_enabled() -> ServerError:
    return ServerError("FAILED_PRECONDITION", "etcdserver: authentication is not enabled")


def root_user_not_exist() -> ServerError:
    return ServerError("FAILED_PRECONDITION", "etcdserver: root user does not exist")


def user_not_found() -> ServerError:
    return ServerError("FAILED_PRECONDITION", "etcdserver: user name not found")


def role_not_found() -> ServerError:
    return ServerError("FAILED_PRECONDITION", "etcdserver: role name not found")


class AuthServicer:
    """Serves ``etcdserverpb.Auth`` for a member with authentication disabled."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def _header(self) -> rpc_pb2.ResponseHeader:
        return convert.header_pb(self._backend.header())

    async def AuthStatus(
        self, request: rpc_pb2.AuthStatusRequest, context: Any
    ) -> rpc_pb2.AuthStatusResponse:
        return rpc_pb2.AuthStatusResponse(header=self._header(), enabled=False, authRevision=0)

    async def AuthDisable(
        self, request: rpc_pb2.AuthDisableRequest, context: Any
    ) -> rpc_pb2.AuthDisableResponse:
        # etcd: disabling an already disabled auth store succeeds silently.
        return rpc_pb2.AuthDisableResponse(header=self._header())

    async def AuthEnable(self, request: rpc_pb2.AuthEnableRequest, context: Any) -> Any:
        raise root_user_not_exist()

    async def Authenticate(self, request: rpc_pb2.AuthenticateRequest, context: Any) -> Any:
        raise auth_not_enabled()

    async def UserList(
        self, request: rpc_pb2.AuthUserListRequest, context: Any
    ) -> rpc_pb2.AuthUserListResponse:
        return rpc_pb2.AuthUserListResponse(header=self._header())

    async def RoleList(
        self, request: rpc_pb2.AuthRoleListRequest, context: Any
    ) -> rpc_pb2.AuthRoleListResponse:
        return rpc_pb2.AuthRoleListResponse(header=self._header())

    async def UserGet(self, request: rpc_pb2.AuthUserGetRequest, context: Any) -> Any:
        raise user_not_found()

    async def UserDelete(self, request: rpc_pb2.AuthUserDeleteRequest, context: Any) -> Any:
        raise user_not_found()

    async def UserChangePassword(
        self, request: rpc_pb2.AuthUserChangePasswordRequest, context: Any
    ) -> Any:
        raise user_not_found()

    async def UserGrantRole(self, request: rpc_pb2.AuthUserGrantRoleRequest, context: Any) -> Any:
        raise user_not_found()

    async def UserRevokeRole(self, request: rpc_pb2.AuthUserRevokeRoleRequest, context: Any) -> Any:
        raise user_not_found()

    async def RoleGet(self, request: rpc_pb2.AuthRoleGetRequest, context: Any) -> Any:
        raise role_not_found()

    async def RoleDelete(self, request: rpc_pb2.AuthRoleDeleteRequest, context: Any) -> Any:
        raise role_not_found()

    async def RoleGrantPermission(
        self, request: rpc_pb2.AuthRoleGrantPermissionRequest, context: Any
    ) -> Any:
        raise role_not_found()

    async def RoleRevokePermission(
        self, request: rpc_pb2.AuthRoleRevokePermissionRequest, context: Any
    ) -> Any:
        raise role_not_found()
