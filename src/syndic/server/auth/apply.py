"""Applying one AUTH log entry to the auth store and the MVCC store.

Besides the auth store's own operations, an AUTH entry carries the writes
of authenticated clients: ``["write", user, auth_revision, request]``. The
member that received the request checked its permissions already; applying
checks them again against the auth store as it stands at this point of the
log, and refuses with "revision of auth store is old" if the auth store
changed since the check (etcd: authApplierV3), so a revoked permission
cannot be used by a write that raced the revoke.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from syndic.kv.messages import LeaseTimeToLiveRequest
from syndic.kv.mvcc import Store
from syndic.server.auth.model import AuthInfo
from syndic.server.auth.store import AuthStore, malformed_op

WRITE_OP: Final = "write"


def apply_auth_entry(auth: AuthStore, store: Store, op: Sequence[Any], now_ms: int) -> Any:
    """Apply ``op``; returns its result, raises AuthError or the store's KvError."""
    if not (isinstance(op, list | tuple) and op and op[0] == WRITE_OP):
        return auth.apply(op)
    if len(op) != 4 or not isinstance(op[1], str) or type(op[2]) is not int:
        raise malformed_op("write takes a user, an auth revision and a request")
    _, user, revision, request = op

    def lease_keys(lease_id: int) -> tuple[bytes, ...]:
        return store.lease_time_to_live(LeaseTimeToLiveRequest(lease_id, keys=True), now_ms).keys

    auth.check_request(AuthInfo(user, revision), request, lease_keys)
    return store.apply(request, now_ms)
