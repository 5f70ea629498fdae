"""The client's decisions without a server: which failures may be retried,
how server errors map to types, and how a watch stream's responses become
batches (fragments joined, repeats after a resume dropped)."""

from __future__ import annotations

import grpc
import pytest

from syndic.api.gen import kv_pb2, rpc_pb2
from syndic.client import (
    AlreadyExistsError,
    ClientError,
    CompactedError,
    DeadlineExceededError,
    FutureRevisionError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    TokenExpiredError,
    UnavailableError,
    WatchCanceledError,
)
from syndic.client.config import ClientConfig
from syndic.client.errors import error_from_status
from syndic.client.transport import Transport
from syndic.client.validate import prefix_end
from syndic.client.watch import Watch
from syndic.client.watch_mux import WatchMux

REFUSED = "failed to connect to all addresses; last error: Connection refused"


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@pytest.mark.parametrize(
    ("code", "details", "idempotent", "expected", "retry_safe"),
    [
        (grpc.StatusCode.UNAVAILABLE, REFUSED, False, UnavailableError, True),
        (grpc.StatusCode.UNAVAILABLE, "Socket closed", True, UnavailableError, True),
        (grpc.StatusCode.UNAVAILABLE, "Socket closed", False, OutcomeUnknownError, False),
        (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader", False, UnavailableError, True),
        (
            grpc.StatusCode.UNAVAILABLE,
            "etcdserver: leader changed",
            False,
            OutcomeUnknownError,
            False,
        ),
        (
            grpc.StatusCode.UNAVAILABLE,
            "etcdserver: request timed out",
            True,
            UnavailableError,
            True,
        ),
        (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "Deadline Exceeded",
            True,
            DeadlineExceededError,
            False,
        ),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", False, OutcomeUnknownError, False),
        (
            grpc.StatusCode.NOT_FOUND,
            "etcdserver: requested lease not found",
            False,
            NotFoundError,
            False,
        ),
    ],
)
def test_failures_are_classified(
    code: grpc.StatusCode,
    details: str,
    idempotent: bool,
    expected: type[ClientError],
    retry_safe: bool,
) -> None:
    transport = Transport(ClientConfig(endpoints=("127.0.0.1:1", "127.0.0.1:2")))
    endpoint = transport.pick()
    error = transport.classify(rpc_error(code, details), endpoint, "Put", idempotent)
    assert type(error) is expected
    assert error.retry_safe is retry_safe
    member_failed = code is grpc.StatusCode.UNAVAILABLE
    assert (endpoint.failed_until_s > 0) is member_failed
    if member_failed:  # the next call goes to the other member
        assert transport.pick() is not endpoint


def test_invalid_token_is_renewable_only_with_credentials() -> None:
    bare = Transport(ClientConfig(endpoints=("a:1",)))
    error = rpc_error(grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
    assert not isinstance(bare.classify(error, bare.pick(), "Range", True), TokenExpiredError)
    authed = Transport(ClientConfig(endpoints=("a:1",), username="u", password="p"))
    assert isinstance(authed.classify(error, authed.pick(), "Range", True), TokenExpiredError)


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        (
            grpc.StatusCode.OUT_OF_RANGE,
            "etcdserver: mvcc: required revision has been compacted",
            CompactedError,
        ),
        (
            grpc.StatusCode.OUT_OF_RANGE,
            "etcdserver: mvcc: required revision is a future revision",
            FutureRevisionError,
        ),
        (
            grpc.StatusCode.FAILED_PRECONDITION,
            "etcdserver: lease already exists",
            AlreadyExistsError,
        ),
        (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied", PermissionDeniedError),
        (grpc.StatusCode.INTERNAL, "something new", ClientError),
    ],
)
def test_server_errors_keep_etcds_message(
    code: grpc.StatusCode, message: str, expected: type[ClientError]
) -> None:
    error = error_from_status(code, message)
    assert type(error) is expected
    assert error.message.startswith(message) and error.code is code


def test_prefix_end() -> None:
    assert prefix_end(b"a/") == b"a0"
    assert prefix_end(b"a\xff\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"


def put_event(key: bytes, revision: int) -> kv_pb2.Event:
    kv = kv_pb2.KeyValue(key=key, mod_revision=revision, create_revision=revision, version=1)
    return kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv)


def response(revision: int, *events: kv_pb2.Event, **fields: object) -> rpc_pb2.WatchResponse:
    return rpc_pb2.WatchResponse(
        header=rpc_pb2.ResponseHeader(revision=revision), events=list(events), **fields
    )


def new_watch(start_revision: int = 0) -> Watch:
    transport = Transport(ClientConfig(endpoints=("127.0.0.1:1",)))
    return Watch(
        WatchMux(transport),
        b"k",
        b"l",
        start_revision=start_revision,
        prev_kv=False,
        filters=[],
        progress_notify=False,
    )


def test_watch_from_now_starts_after_the_created_revision() -> None:
    watch = new_watch()
    assert watch._receive(response(41, created=True)) is None
    assert watch.next_revision == 42


def test_watch_drops_repeats_after_a_resume_and_joins_fragments() -> None:
    watch = new_watch(start_revision=10)
    batch = watch._receive(response(11, put_event(b"k1", 10), put_event(b"k2", 11)))
    assert batch is not None and [e.kv.mod_revision for e in batch.events] == [10, 11]
    assert watch.next_revision == 12
    # A member after a resume repeats revision 11 and adds 12, in two fragments.
    assert watch._receive(response(12, put_event(b"k2", 11), fragment=True)) is None
    joined = watch._receive(response(12, put_event(b"k3", 12)))
    assert joined is not None and [e.kv.key for e in joined.events] == [b"k3"]
    # Only repeats: nothing to deliver.
    assert watch._receive(response(12, put_event(b"k3", 12))) is None
    # A progress notice moves the resume point past its revision.
    progress = watch._receive(response(20))
    assert progress is not None and progress.is_progress_notify
    assert watch.next_revision == 21


def test_watch_cancellations_are_typed() -> None:
    compacted = new_watch(start_revision=3)
    with pytest.raises(CompactedError) as raised:
        compacted._receive(response(50, created=True, canceled=True, compact_revision=40))
    assert raised.value.compact_revision == 40
    canceled = new_watch(start_revision=3)
    with pytest.raises(WatchCanceledError, match="permission denied"):
        canceled._receive(response(50, canceled=True, cancel_reason="permission denied"))


def test_only_transactions_without_writes_count_as_reads() -> None:
    from syndic.client import Op
    from syndic.client.txn import txn_is_read_only, txn_request

    nested_read = Op.txn([], [Op.get("b")], [])
    assert txn_is_read_only(txn_request([], [Op.get("a"), nested_read], [Op.get("c")]))
    nested_write = Op.txn([], [Op.put("b", "v")], [])
    assert not txn_is_read_only(txn_request([], [Op.get("a"), nested_write], []))
    assert not txn_is_read_only(txn_request([], [], [Op.delete("a")]))
