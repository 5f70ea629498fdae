"""syndic.client: the async etcd v3 client every upper layer uses.

It talks to a syndic cluster or to any etcd v3 cluster. See
``docs/client.md`` for a tour and :mod:`syndic.client.client` for the API.

Example::

    from syndic.client import Client

    async with Client(["127.0.0.1:2379"]) as client:
        await client.put(b"k", b"v")
        print((await client.get(b"k")).kvs[0].value)
"""

from syndic.client.client import Client
from syndic.client.config import ClientConfig, TlsOptions
from syndic.client.errors import (
    AlreadyExistsError,
    AuthenticationError,
    ClientError,
    ClosedError,
    CompactedError,
    DeadlineExceededError,
    FutureRevisionError,
    InvalidArgumentError,
    InvalidRequestError,
    LeaseExpiredError,
    NoSpaceError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    RequestTooLargeError,
    TokenExpiredError,
    UnavailableError,
    WatchCanceledError,
)
from syndic.client.lease import Lease
from syndic.client.sync import SyncClient
from syndic.client.txn import Compare, Comparison, Op
from syndic.client.types import (
    Alarm,
    AlarmType,
    DeleteResult,
    Event,
    EventType,
    GetResult,
    HashKV,
    KeyValue,
    LeaseGrant,
    LeaseKeepAlive,
    LeaseTimeToLive,
    Member,
    MemberAddResult,
    MemberListResult,
    PutResult,
    Status,
    TxnResult,
    WatchBatch,
)
from syndic.client.validate import InvalidTypeError, prefix_end
from syndic.client.watch import Watch

__all__ = [
    "Alarm",
    "AlarmType",
    "AlreadyExistsError",
    "AuthenticationError",
    "Client",
    "ClientConfig",
    "ClientError",
    "ClosedError",
    "CompactedError",
    "Compare",
    "Comparison",
    "DeadlineExceededError",
    "DeleteResult",
    "Event",
    "EventType",
    "FutureRevisionError",
    "GetResult",
    "HashKV",
    "InvalidArgumentError",
    "InvalidRequestError",
    "InvalidTypeError",
    "KeyValue",
    "Lease",
    "LeaseExpiredError",
    "LeaseGrant",
    "LeaseKeepAlive",
    "LeaseTimeToLive",
    "Member",
    "MemberAddResult",
    "MemberListResult",
    "NoSpaceError",
    "NotFoundError",
    "Op",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "PutResult",
    "RequestTooLargeError",
    "Status",
    "SyncClient",
    "TlsOptions",
    "TokenExpiredError",
    "TxnResult",
    "UnavailableError",
    "Watch",
    "WatchBatch",
    "WatchCanceledError",
    "prefix_end",
]
