"""Bad input raises a typed error before anything is sent.

The client here points at a port where nothing listens: had any request
been sent, the error would be UnavailableError (after retries), not the
input error, so each assertion also proves nothing left the process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from syndic.client import (
    Client,
    ClientConfig,
    Compare,
    InvalidRequestError,
    InvalidTypeError,
    Op,
    RequestTooLargeError,
)
from syndic.client.validate import REQUEST_BYTES_MAX_DEFAULT
from tests.server.cluster_util import free_port


@pytest.fixture
async def nowhere() -> AsyncIterator[Client]:
    client = Client([f"127.0.0.1:{free_port()}"], timeout_s=30.0)
    try:
        yield client
    finally:
        await client.close()


BAD_CALLS: list[tuple[str, Any, type[Exception], str]] = [
    ("empty key", lambda c: c.get(b""), InvalidRequestError, "must not be empty"),
    ("int key", lambda c: c.get(5), InvalidTypeError, "key must be str or bytes"),
    ("None value", lambda c: c.put(b"k", None), InvalidTypeError, "value must be str or bytes"),
    ("negative limit", lambda c: c.get(b"k", limit=-1), InvalidRequestError, "limit"),
    ("bool limit", lambda c: c.get(b"k", limit=True), InvalidTypeError, "limit must be an int"),
    ("float revision", lambda c: c.get(b"k", revision=1.5), InvalidTypeError, "revision"),
    ("huge revision", lambda c: c.get(b"k", revision=2**63), InvalidRequestError, "revision"),
    ("sort order", lambda c: c.get(b"k", sort_order="up"), InvalidRequestError, "sort_order"),
    ("sort target", lambda c: c.get(b"k", sort_target="size"), InvalidRequestError, "sort_target"),
    (
        "prefix and range_end",
        lambda c: c.get(b"k", prefix=True, range_end=b"z"),
        InvalidRequestError,
        "at most one",
    ),
    ("reversed range", lambda c: c.get(b"z", range_end=b"a"), InvalidRequestError, "sort after"),
    ("prefix not bool", lambda c: c.delete(b"k", prefix=1), InvalidTypeError, "prefix"),
    (
        "oversized value",
        lambda c: c.put(b"k", b"x" * (REQUEST_BYTES_MAX_DEFAULT + 1)),
        RequestTooLargeError,
        "request limit",
    ),
    (
        "oversized txn",
        lambda c: c.txn(success=[Op.put(b"k%d" % i, b"x" * 600_000) for i in range(3)]),
        RequestTooLargeError,
        "over the limit",
    ),
    ("bool in compare", lambda c: c.txn(compare=[True]), InvalidRequestError, "Compare.version"),
    ("non-op", lambda c: c.txn(success=[b"put k v"]), InvalidRequestError, "Op values"),
    ("ttl zero", lambda c: c.grant(0), InvalidRequestError, "ttl_s"),
    ("ttl str", lambda c: c.grant("10"), InvalidTypeError, "ttl_s"),
    ("lease id zero", lambda c: c.revoke(0), InvalidRequestError, "lease_id"),
    ("compact zero", lambda c: c.compact(0), InvalidRequestError, "revision"),
    ("member id", lambda c: c.member_remove(-1), InvalidRequestError, "member_id"),
    ("peer urls str", lambda c: c.member_add("http://a:1"), InvalidTypeError, "peer_urls"),
    ("unknown endpoint", lambda c: c.status("10.0.0.1:1"), InvalidRequestError, "not one of"),
]


@pytest.mark.parametrize(
    ("call", "error", "text"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
async def test_bad_call_is_refused_before_sending(
    nowhere: Client, call: Any, error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        await call(nowhere)


def test_bad_builders_fail_where_written() -> None:
    with pytest.raises(InvalidTypeError):
        Compare.version(b"k") == "zero"  # noqa: B015 - the comparison is the call under test
    with pytest.raises(InvalidTypeError):
        Compare.value(b"k") == 3  # noqa: B015
    with pytest.raises(InvalidRequestError):
        Op.put(b"", b"v")
    with pytest.raises(InvalidRequestError, match="filter"):
        Client(["127.0.0.1:1"]).watch(b"k", filters=["noputs"])
    with pytest.raises(InvalidTypeError, match="filters"):
        Client(["127.0.0.1:1"]).watch(b"k", filters="noput")


@pytest.mark.parametrize(
    "settings",
    [
        {"endpoints": ()},
        {"endpoints": "127.0.0.1:2379"},
        {"endpoints": ("a:1",), "timeout_s": 0},
        {"endpoints": ("a:1",), "timeout_s": float("nan")},
        {"endpoints": ("a:1",), "username": "root"},
        {"endpoints": ("a:1",), "request_bytes_max": -1},
    ],
)
def test_bad_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequestError):
        ClientConfig(**settings)


def test_tls_files_must_exist(tmp_path: Any) -> None:
    with pytest.raises(InvalidRequestError, match="not a readable file"):
        Client(["127.0.0.1:1"], ca_file=tmp_path / "missing.pem")
    with pytest.raises(InvalidRequestError, match="both or neither"):
        Client(["127.0.0.1:1"], cert_file=tmp_path / "c.pem")
