"""The auth store alone: every operation and error, permission ranges, tokens,
password hashes, snapshots, and the AUTH entries of the state machine.

Expected codes and messages are etcd 3.4.23's, as etcdctl and raw gRPC
calls against Debian's etcd-server showed them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from syndic.kv.messages import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from syndic.kv.mvcc import StoreConfig
from syndic.server.auth import (
    NAME_BYTES_MAX,
    WRITE_OP,
    AuthInfo,
    AuthSnapshotError,
    AuthStore,
    Permission,
    PermType,
    TokenClaims,
    apply_auth_entry,
    hash_password,
    sign_token,
    verify_password,
    verify_token,
)
from syndic.server.auth.model import PERMISSIONS_PER_ROLE_MAX, ROLES_PER_USER_MAX
from syndic.server.auth.password import PasswordHashError, parse_hash
from syndic.server.auth.token import TOKEN_BYTES_MAX, TokenError
from syndic.server.backend import AuthError
from syndic.server.entry_codec import DecodedEntry, EntryKind, decode_entry, encode_entry
from syndic.server.state_machine import StateMachine, StateSnapshotError

# Cheap scrypt for tests; every hash records its own cost.
LOG2_N = 4
SALT = bytes(range(16))
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
PW_HASH = hash_password("pw", SALT, LOG2_N)
NOW_S = 1_700_000_000.0

R, W, RW = PermType.READ, PermType.WRITE, PermType.READWRITE


def no_leases(lease_id: int) -> tuple[bytes, ...]:
    return ()


def admin_store() -> AuthStore:
    """root (with the root role), role r1, user u1 holding r1; auth disabled."""
    store = AuthStore()
    for op in (
        ["user_add", "", "root", PW_HASH, False],
        ["user_grant_role", "", "root", "root"],
        ["role_add", "", "r1"],
        ["user_add", "", "u1", PW_HASH, False],
        ["user_grant_role", "", "u1", "r1"],
    ):
        store.apply(op)
    return store


def enabled_store() -> AuthStore:
    store = admin_store()
    store.apply(["auth_enable", "", KEY])
    return store


def expect(store: AuthStore, op: list[Any], code: str, message: str) -> None:
    """``op`` fails with etcd's (code, message) and changes nothing."""
    before = store.serialize()
    with pytest.raises(AuthError) as info:
        store.apply(op)
    assert (info.value.code, info.value.message) == (code, message)
    assert store.serialize() == before
    store.check_invariants()


NOT_FOUND_USER = ("FAILED_PRECONDITION", "etcdserver: user name not found")
NOT_FOUND_ROLE = ("FAILED_PRECONDITION", "etcdserver: role name not found")
INVALID_MGMT = ("INVALID_ARGUMENT", "etcdserver: invalid auth management")
DENIED = ("PERMISSION_DENIED", "etcdserver: permission denied")
USER_EMPTY = ("INVALID_ARGUMENT", "etcdserver: user name is empty")


# ------------------------------------------------------------ users and roles


def test_new_store_is_disabled_at_revision_one_and_empty() -> None:
    store = AuthStore()
    assert store.apply(["auth_status", ""]) == (False, 1)
    assert store.apply(["user_list", ""]) == ()
    assert store.apply(["role_list", ""]) == ()
    store.check_invariants()


def test_user_lifecycle_and_revisions() -> None:
    store = AuthStore()
    store.apply(["user_add", "", "bob", PW_HASH, False])
    assert store.revision == 2 and store.users["bob"].credential_revision == 2
    store.apply(["role_add", "", "r"])
    store.apply(["user_grant_role", "", "bob", "r"])
    assert store.apply(["user_get", "", "bob"]) == ("r",)
    rev = store.revision
    store.apply(["user_grant_role", "", "bob", "r"])  # again: no change, no new revision
    assert store.revision == rev
    new_hash = hash_password("pw2", SALT, LOG2_N)
    store.apply(["user_change_password", "", "bob", new_hash])
    assert store.users["bob"].password_hash == new_hash
    assert store.users["bob"].credential_revision == store.revision == rev + 1
    store.apply(["user_revoke_role", "", "bob", "r"])
    assert store.apply(["user_get", "", "bob"]) == ()
    store.apply(["user_delete", "", "bob"])
    assert store.apply(["user_list", ""]) == ()
    assert store.revision == rev + 3


def test_user_errors() -> None:
    store = admin_store()
    expect(store, ["user_add", "", "", PW_HASH, False], *USER_EMPTY)
    expect(
        store,
        ["user_add", "", "u1", PW_HASH, False],
        "FAILED_PRECONDITION",
        "etcdserver: user name already exists",
    )
    for op in (
        ["user_get", "", "nobody"],
        ["user_delete", "", "nobody"],
        ["user_delete", "", ""],
        ["user_change_password", "", "nobody", PW_HASH],
        ["user_grant_role", "", "nobody", "r1"],
        ["user_revoke_role", "", "nobody", "r1"],
    ):
        expect(store, op, *NOT_FOUND_USER)
    expect(store, ["user_grant_role", "", "u1", "nope"], *NOT_FOUND_ROLE)
    expect(store, ["user_grant_role", "", "u1", ""], *NOT_FOUND_ROLE)
    expect(
        store,
        ["user_revoke_role", "", "root", "r1"],
        "FAILED_PRECONDITION",
        "etcdserver: role is not granted to the user",
    )


def test_root_role_may_be_granted_without_existing() -> None:
    # etcd: UserGrantRole skips the existence check for the root role.
    store = AuthStore()
    store.apply(["user_add", "", "x", PW_HASH, False])
    store.apply(["user_grant_role", "", "x", "root"])
    assert store.apply(["user_get", "", "x"]) == ("root",)
    assert store.apply(["role_list", ""]) == ()


def test_role_lifecycle_and_errors() -> None:
    store = admin_store()
    expect(store, ["role_add", "", ""], "INVALID_ARGUMENT", "etcdserver: role name is empty")
    expect(
        store, ["role_add", "", "r1"], "FAILED_PRECONDITION", "etcdserver: role name already exists"
    )
    for op in (
        ["role_get", "", "nope"],
        ["role_delete", "", "nope"],
        ["role_grant_permission", "", "nope", 0, b"a", b""],
        ["role_revoke_permission", "", "nope", b"a", b""],
    ):
        expect(store, op, *NOT_FOUND_ROLE)
    expect(
        store,
        ["role_revoke_permission", "", "r1", b"zz", b""],
        "FAILED_PRECONDITION",
        "etcdserver: permission is not granted to the role",
    )
    store.apply(["role_delete", "", "r1"])
    # etcd: deleting a role takes it from every user holding it.
    assert store.apply(["user_get", "", "u1"]) == ()
    assert store.apply(["role_list", ""]) == ()


def test_grant_permission_sorts_and_replaces_the_same_range() -> None:
    store = admin_store()
    for perm_type, key, end in (
        (R, b"/p/", b"/p0"),
        (W, b"/z", b"\x00"),
        (R, b"/a", b""),
        (W, b"/a", b""),  # same key and range: replaces READ by WRITE
    ):
        store.apply(["role_grant_permission", "", "r1", int(perm_type), key, end])
    assert store.apply(["role_get", "", "r1"]) == (
        Permission(W, b"/a"),
        Permission(R, b"/p/", b"/p0"),
        Permission(W, b"/z", b"\x00"),
    )
    store.apply(["role_revoke_permission", "", "r1", b"/p/", b"/p0"])
    assert [p.key for p in store.apply(["role_get", "", "r1"])] == [b"/a", b"/z"]


@pytest.mark.parametrize(
    ("perm_type", "key", "end"),
    [
        (3, b"a", b""),  # no such permission type
        (-1, b"a", b""),
        (0, b"", b""),  # empty key
        (0, b"b", b"a"),  # inverted range (etcd 3.5 refuses it; 3.4 stored it)
        (0, b"a", b"a"),  # empty range
        (0, b"k" * 5000, b""),
    ],
)
def test_grant_permission_refuses_malformed_permissions(
    perm_type: int, key: bytes, end: bytes
) -> None:
    store = admin_store()
    expect(store, ["role_grant_permission", "", "r1", perm_type, key, end], *INVALID_MGMT)


def test_names_past_the_bound_are_refused() -> None:
    store = admin_store()
    long_name = "n" * (NAME_BYTES_MAX + 1)
    too_long = f"({NAME_BYTES_MAX + 1} bytes, at most {NAME_BYTES_MAX})"
    expect(
        store,
        ["user_add", "", long_name, PW_HASH, False],
        "INVALID_ARGUMENT",
        f"etcdserver: user name is too long {too_long}",
    )
    expect(
        store,
        ["role_add", "", long_name],
        "INVALID_ARGUMENT",
        f"etcdserver: role name is too long {too_long}",
    )
    store.apply(["user_add", "", "n" * NAME_BYTES_MAX, PW_HASH, False])


def test_per_record_limits() -> None:
    store = admin_store()
    for i in range(ROLES_PER_USER_MAX - 1):  # u1 holds r1 already
        store.apply(["role_add", "", f"x{i}"])
        store.apply(["user_grant_role", "", "u1", f"x{i}"])
    store.apply(["role_add", "", "one-too-many"])
    expect(
        store,
        ["user_grant_role", "", "u1", "one-too-many"],
        "RESOURCE_EXHAUSTED",
        f"etcdserver: too many roles for one user (at most {ROLES_PER_USER_MAX})",
    )
    for i in range(PERMISSIONS_PER_ROLE_MAX):
        store.apply(["role_grant_permission", "", "r1", 0, b"k%05d" % i, b""])
    expect(
        store,
        ["role_grant_permission", "", "r1", 0, b"extra", b""],
        "RESOURCE_EXHAUSTED",
        f"etcdserver: too many permissions for one role (at most {PERMISSIONS_PER_ROLE_MAX})",
    )


@pytest.mark.parametrize(
    "op",
    [
        [],
        ["user_add"],
        "user_add",
        ["no_such_op", ""],
        [7, ""],
        ["user_add", "", "x", PW_HASH],  # missing an argument
        ["user_add", None, "x", PW_HASH, False],  # actor not a string
        ["user_add", "", b"x", PW_HASH, False],  # name as bytes
        ["role_grant_permission", "", "r1", True, b"a", b""],  # bool is not a type
        ["user_add", "", "x", "not-a-hash", False],
        ["user_add", "", "x", PW_HASH, True],  # no password yet a hash
        ["auth_enable", "", b"short"],
    ],
)
def test_malformed_operations_are_refused_without_change(op: Any) -> None:
    store = admin_store()
    before = store.serialize()
    with pytest.raises(AuthError) as info:
        store.apply(op)
    assert info.value.code == "INVALID_ARGUMENT"
    assert "malformed auth operation" in info.value.message
    assert store.serialize() == before


# ------------------------------------------------------------ enable and admin


def test_enable_needs_root_user_with_root_role() -> None:
    store = AuthStore()
    expect(
        store,
        ["auth_enable", "", KEY],
        "FAILED_PRECONDITION",
        "etcdserver: root user does not exist",
    )
    store.apply(["user_add", "", "root", PW_HASH, False])
    expect(
        store,
        ["auth_enable", "", KEY],
        "FAILED_PRECONDITION",
        "etcdserver: root user does not have root role",
    )
    store.apply(["user_grant_role", "", "root", "root"])
    rev = store.revision
    store.apply(["auth_enable", "", KEY])
    # etcd: enabling does not move the revision; enabling twice keeps the key.
    assert (store.enabled, store.revision, store.signing_key) == (True, rev, KEY)
    store.apply(["auth_enable", "root", OTHER_KEY])
    assert store.signing_key == KEY
    store.apply(["auth_disable", "root"])
    assert (store.enabled, store.revision, store.signing_key) == (False, rev + 1, b"")
    store.apply(["auth_disable", ""])  # disabling twice is a no-op
    assert store.revision == rev + 1


def test_root_is_protected_while_enabled() -> None:
    store = enabled_store()
    expect(store, ["user_delete", "root", "root"], *INVALID_MGMT)
    expect(store, ["user_revoke_role", "root", "root", "root"], *INVALID_MGMT)
    store.apply(["role_add", "root", "root"])
    expect(store, ["role_delete", "root", "root"], *INVALID_MGMT)
    store.apply(["auth_disable", "root"])
    store.apply(["user_revoke_role", "", "root", "root"])
    store.apply(["user_delete", "", "root"])


def test_admin_operations_need_the_root_role_once_enabled() -> None:
    store = enabled_store()
    expect(store, ["user_list", ""], *USER_EMPTY)
    expect(store, ["user_list", "ghost"], *NOT_FOUND_USER)
    for op in (
        ["user_list", "u1"],
        ["role_list", "u1"],
        ["user_add", "u1", "x", PW_HASH, False],
        ["user_change_password", "u1", "u1", PW_HASH],
        ["role_add", "u1", "r2"],
        ["auth_disable", "u1"],
        ["auth_enable", "u1", KEY],
        ["user_get", "u1", "root"],
        ["role_get", "u1", "root"],
    ):
        expect(store, op, *DENIED)
    # etcd: a user may read itself and the roles it holds.
    assert store.apply(["user_get", "u1", "u1"]) == ("r1",)
    assert store.apply(["role_get", "u1", "r1"]) == ()
    assert store.apply(["auth_status", ""]) == (True, store.revision)
    store.apply(["role_add", "root", "r2"])


# ------------------------------------------------------------ permissions


def grant(store: AuthStore, role: str, perm_type: PermType, key: bytes, end: bytes = b"") -> None:
    store.apply(["role_grant_permission", "root", role, int(perm_type), key, end])


def allowed(store: AuthStore, user: str, key: bytes, end: bytes, wanted: PermType) -> bool:
    try:
        store.check_permission(AuthInfo(user, store.revision), key, end, wanted)
    except AuthError as exc:
        assert exc.message == "etcdserver: permission denied"
        return False
    return True


def test_point_prefix_and_open_ended_permissions() -> None:
    store = enabled_store()
    grant(store, "r1", R, b"/a")
    grant(store, "r1", RW, b"/p/", b"/p0")  # etcdctl --prefix /p/
    grant(store, "r1", W, b"/z", b"\x00")  # etcdctl --from-key /z
    cases = [
        (b"/a", b"", R, True),
        (b"/a", b"", W, False),
        (b"/a", b"/a\x00", R, True),  # the range holding only /a
        (b"/a", b"/b", R, False),
        (b"/p/x", b"", R, True),
        (b"/p/x", b"", W, True),
        (b"/p/", b"/p0", R, True),
        (b"/p/a", b"/p/b", W, True),
        (b"/p", b"/q", R, False),  # wider than the prefix
        (b"/p/", b"\x00", R, False),
        (b"/zz", b"", W, True),
        (b"/zz", b"", R, False),
        (b"/z", b"\x00", W, True),
        (b"\xff\xff", b"", W, True),
        (b"/y", b"\x00", W, False),
        (b"/q", b"", R, False),
        (b"\x00", b"\x00", R, False),  # etcdctl get "" --prefix: every key
    ]
    for key, end, wanted, expected in cases:
        assert allowed(store, "u1", key, end, wanted) is expected, (key, end, wanted)
    assert allowed(store, "root", b"\x00", b"\x00", W)


def test_adjacent_grants_from_several_roles_cover_a_range_together() -> None:
    store = enabled_store()
    store.apply(["role_add", "root", "r2"])
    store.apply(["user_grant_role", "root", "u1", "r2"])
    grant(store, "r1", R, b"a", b"c")
    grant(store, "r2", RW, b"c", b"e")
    assert allowed(store, "u1", b"a", b"e", R)
    assert not allowed(store, "u1", b"a", b"e", W)
    assert allowed(store, "u1", b"c", b"d", W)
    assert not allowed(store, "u1", b"a", b"f", R)
    store.apply(["role_delete", "root", "r2"])
    assert not allowed(store, "u1", b"a", b"e", R)


@given(
    grants=st.lists(
        st.tuples(st.binary(min_size=1, max_size=2), st.binary(max_size=2)), max_size=4
    ),
    key=st.binary(min_size=1, max_size=2),
    end=st.binary(max_size=2),
)
def test_range_check_agrees_with_a_boundary_point_model(
    grants: list[tuple[bytes, bytes]], key: bytes, end: bytes
) -> None:
    """Coverage only changes where a granted interval starts or ends, so a range
    is covered iff each such boundary inside it (and its first key) is granted."""
    store = enabled_store()
    intervals: list[tuple[bytes, bytes | None]] = []
    for k, e in grants:
        try:
            grant(store, "r1", R, k, e)
        except AuthError:
            continue  # malformed ranges are refused, tested above
        intervals.append((k, None if e == b"\x00" else (e or k + b"\x00")))

    def granted(x: bytes) -> bool:
        return any(s <= x and (e is None or x < e) for s, e in intervals)

    stop: bytes | None
    if not end or (end != b"\x00" and end <= key):
        stop = key + b"\x00"  # one key
    else:
        stop = None if end == b"\x00" else end
    boundaries = {key} | {s for s, _ in intervals} | {e for _, e in intervals if e is not None}
    inside = [b for b in boundaries if key <= b and (stop is None or b < stop)]
    # Unbounded ranges need no extra case: were the last boundary granted
    # by a bounded interval, that interval's end would be a later boundary.
    assert allowed(store, "u1", key, end, R) is all(granted(b) for b in inside)


def test_permission_checks_refuse_missing_stale_and_vanished_users() -> None:
    store = enabled_store()
    grant(store, "r1", RW, b"k")
    with pytest.raises(AuthError) as info:
        store.check_permission(None, b"k", b"", R)
    assert info.value.message == "etcdserver: user name is empty"
    with pytest.raises(AuthError) as info:
        store.check_permission(AuthInfo("u1", store.revision - 1), b"k", b"", R)
    assert (info.value.code, info.value.message) == (
        "INVALID_ARGUMENT",
        "etcdserver: revision of auth store is old",
    )
    with pytest.raises(AuthError) as info:
        store.check_permission(AuthInfo("ghost", store.revision), b"k", b"", R)
    assert info.value.message == "etcdserver: permission denied"
    store.apply(["auth_disable", "root"])
    store.check_permission(None, b"anything", b"", W)  # disabled: no checks


def test_request_checks_follow_etcd_rules() -> None:
    store = enabled_store()
    grant(store, "r1", RW, b"/mine/", b"/mine0")
    grant(store, "r1", W, b"/wo")
    info = AuthInfo("u1", store.revision)
    leases = {7: (b"/mine/a",), 8: (b"/mine/a", b"/theirs")}

    def lease_keys(lease_id: int) -> tuple[bytes, ...]:
        return leases.get(lease_id, ())

    def ok(request: object) -> bool:
        try:
            store.check_request(info, request, lease_keys)
        except AuthError:
            return False
        return True

    assert ok(PutRequest(b"/mine/x", b"v", lease=7))
    assert not ok(PutRequest(b"/mine/x", b"v", lease=8))  # could not revoke that lease
    assert ok(PutRequest(b"/wo", b"v"))
    assert not ok(PutRequest(b"/wo", b"v", prev_kv=True))  # prev_kv reads
    assert ok(DeleteRangeRequest(b"/mine/", b"/mine0", prev_kv=True))
    assert not ok(DeleteRangeRequest(b"/mine/", b"/mine1"))
    assert ok(LeaseRevokeRequest(7))
    assert not ok(LeaseRevokeRequest(8))
    assert ok(LeaseGrantRequest(ttl_s=10))
    cmp_mine = Compare(b"/mine/a", CompareTarget.VERSION, CompareResult.EQUAL)
    cmp_wo = Compare(b"/wo", CompareTarget.VERSION, CompareResult.EQUAL)
    assert ok(TxnRequest((cmp_mine,), (PutRequest(b"/mine/b"),), (RangeRequest(b"/mine/c"),)))
    assert not ok(TxnRequest((cmp_wo,)))  # a compare reads
    assert not ok(TxnRequest((cmp_mine,), (), (RangeRequest(b"/wo"),)))  # failure ops count
    nested = TxnRequest((), (TxnRequest((), (PutRequest(b"/theirs"),)),))
    assert not ok(nested)


# ------------------------------------------------------------ tokens and passwords


def test_tokens_verify_on_any_store_with_the_key() -> None:
    store = enabled_store()
    token = sign_token(KEY, TokenClaims("u1", store.revision, int(NOW_S) + 300))
    assert store.authenticate_token(token, NOW_S) == AuthInfo("u1", store.revision)
    replica = AuthStore.restore(msgpack.unpackb(msgpack.packb(store.serialize())))
    assert replica.authenticate_token(token, NOW_S) == AuthInfo("u1", store.revision)
    # The info carries the revision at use, not at issue (etcd: simple tokens).
    store.apply(["role_add", "root", "later"])
    assert store.authenticate_token(token, NOW_S).revision == store.revision


def invalid(store: AuthStore, token: str, now_s: float = NOW_S) -> bool:
    try:
        store.authenticate_token(token, now_s)
    except AuthError as exc:
        assert (exc.code, exc.message) == ("UNAUTHENTICATED", "etcdserver: invalid auth token")
        return True
    return False


def test_tokens_are_refused_when_forged_expired_or_superseded() -> None:
    store = enabled_store()
    issued = store.revision
    token = sign_token(KEY, TokenClaims("u1", issued, int(NOW_S) + 300))
    assert not invalid(store, token)
    assert invalid(store, token, NOW_S + 300)  # expired
    assert invalid(store, sign_token(OTHER_KEY, TokenClaims("u1", issued, int(NOW_S) + 300)))
    assert invalid(store, sign_token(KEY, TokenClaims("root", issued, int(NOW_S) + 300))[:-2])
    body, mac = token.rsplit(".", 1)
    assert invalid(store, body.replace(str(issued), str(issued + 9)) + "." + mac)
    for garbage in ("", "a.b", "a.b.c.d", "....", "x" * (TOKEN_BYTES_MAX + 1), "a.1.2.!!!"):
        assert invalid(store, garbage)
    # A password change voids earlier tokens; so do deleting and re-creating.
    store.apply(["user_change_password", "root", "u1", hash_password("new", SALT, LOG2_N)])
    assert invalid(store, token)
    fresh = sign_token(KEY, TokenClaims("u1", store.revision, int(NOW_S) + 300))
    assert not invalid(store, fresh)
    store.apply(["user_delete", "root", "u1"])
    assert invalid(store, fresh)
    store.apply(["user_add", "root", "u1", PW_HASH, False])
    assert invalid(store, fresh)
    # Disabling voids every token; enabling again draws a new key.
    root_token = sign_token(KEY, TokenClaims("root", store.revision, int(NOW_S) + 300))
    store.apply(["auth_disable", "root"])
    assert invalid(store, root_token)
    store.apply(["auth_enable", "", OTHER_KEY])
    assert invalid(store, root_token)


def test_verify_token_rejects_without_a_key() -> None:
    with pytest.raises(TokenError):
        verify_token(b"", "a.1.2.b", NOW_S)
    with pytest.raises(TokenError):
        sign_token(b"short", TokenClaims("u", 1, 2))


def test_password_hashes_are_salted_and_verify() -> None:
    other = hash_password("pw", bytes(16), LOG2_N)
    assert other != PW_HASH and parse_hash(other).log2_n == LOG2_N
    assert verify_password("pw", PW_HASH) and verify_password("pw", other)
    assert not verify_password("wrong", PW_HASH)
    assert not verify_password("pw", "garbage")
    assert hash_password("pw", SALT).startswith("scrypt$14$8$1$")


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "bcrypt$1$2$3$4$5",
        "scrypt$x$8$1$AAAA$AAAA",
        "scrypt$40$8$1$" + "A" * 24 + "$" + "A" * 44,  # cost past the bound
        "scrypt$4$8$1$%%%$AAAA",
        "scrypt$4$8$1$AAAA$AAAA",  # wrong lengths
    ],
)
def test_malformed_hashes_are_refused(encoded: str) -> None:
    with pytest.raises(PasswordHashError):
        parse_hash(encoded)
    assert not verify_password("pw", encoded)


def test_hash_password_refuses_bad_parameters() -> None:
    with pytest.raises(PasswordHashError):
        hash_password("pw", b"short", LOG2_N)
    with pytest.raises(PasswordHashError):
        hash_password("pw", SALT, 40)


# ------------------------------------------------------------ snapshots and entries


def test_serialize_round_trips_through_msgpack() -> None:
    store = enabled_store()
    grant(store, "r1", RW, b"/p/", b"/p0")
    store.apply(["user_add", "root", "np", "", True])
    restored = AuthStore.restore(msgpack.unpackb(msgpack.packb(store.serialize())))
    assert restored.serialize() == store.serialize()
    assert restored.users == store.users and restored.roles == store.roles
    assert (restored.enabled, restored.revision, restored.signing_key) == (
        True,
        store.revision,
        KEY,
    )


@pytest.mark.parametrize(
    "mangle",
    [
        lambda d: None,
        lambda d: d[:4],
        lambda d: [True, 1, b"", [], []],  # enabled without a key or root
        lambda d: [*d[:3], [["u", "bad-hash", [], False, 1]], d[4]],
        lambda d: [*d[:3], [["u", "", ["ghost"], True, 1]], d[4]],
        lambda d: [*d[:4], [["r", [[9, b"a", b""]]]]],
        lambda d: [d[0], 0, *d[2:]],
    ],
)
def test_restore_refuses_foreign_data(mangle: Callable[[list[Any]], Any]) -> None:
    with pytest.raises(AuthSnapshotError):
        AuthStore.restore(mangle(admin_store().serialize()))


def entry(op: list[Any]) -> DecodedEntry:
    return decode_entry(encode_entry(EntryKind.AUTH, 1, 1, op))


def test_state_machine_applies_auth_entries_and_snapshots_them() -> None:
    sm = StateMachine(StoreConfig(), {})
    for op in (
        ["user_add", "", "root", PW_HASH, False],
        ["user_grant_role", "", "root", "root"],
        ["role_add", "", "r1"],
        ["role_grant_permission", "", "r1", 2, b"/p/", b"/p0"],
        ["user_add", "", "u1", PW_HASH, False],
        ["user_grant_role", "", "u1", "r1"],
        ["auth_enable", "", KEY],
    ):
        assert sm.apply(entry(op)) is None
    rev = sm.auth.revision
    put = sm.apply(entry([WRITE_OP, "u1", rev, PutRequest(b"/p/x", b"1")]))
    assert put.revision == 2
    denied = sm.apply(entry([WRITE_OP, "u1", rev, PutRequest(b"/q", b"1")]))
    assert isinstance(denied, AuthError) and denied.code == "PERMISSION_DENIED"
    stale = sm.apply(entry([WRITE_OP, "u1", rev - 1, PutRequest(b"/p/y", b"1")]))
    assert isinstance(stale, AuthError) and "revision of auth store is old" in stale.message
    failed = sm.apply(entry(["user_delete", "u1", "root"]))
    assert isinstance(failed, AuthError) and failed.code == "PERMISSION_DENIED"
    assert sm.store.revision == 2
    copy = StateMachine(StoreConfig(), {})
    copy.restore(sm.serialize())
    assert copy.auth.serialize() == sm.auth.serialize()
    assert copy.store.hash_kv().hash == sm.store.hash_kv().hash


def test_write_entries_apply_unchecked_while_auth_is_disabled() -> None:
    auth = AuthStore()
    sm = StateMachine(StoreConfig(), {})
    resp = apply_auth_entry(auth, sm.store, (WRITE_OP, "", 0, PutRequest(b"k", b"v")), 0)
    assert resp.revision == 2  # type: ignore[attr-defined]
    with pytest.raises(AuthError):
        apply_auth_entry(auth, sm.store, (WRITE_OP, "", "0", PutRequest(b"k")), 0)


def test_snapshots_without_a_valid_auth_store_are_refused_and_change_nothing() -> None:
    sm = StateMachine(StoreConfig(), {})
    sm.auth = admin_store()
    before = sm.auth.serialize()
    with pytest.raises(StateSnapshotError):
        sm.restore(msgpack.packb([1, sm.store.serialize(), []]))  # no auth part
    bad_auth = msgpack.packb([1, sm.store.serialize(), [], [True, 1, b"", [], []]])
    with pytest.raises(StateSnapshotError):
        sm.restore(bad_auth)
    with pytest.raises(StateSnapshotError):
        sm.restore(msgpack.packb([9, sm.store.serialize(), [], sm.auth.serialize()]))
    assert sm.auth.serialize() == before
