"""Watch responses as wire bytes, with what many streams share encoded once.

A write watched by a thousand streams gives a thousand responses that differ
only in ``watch_id``. Protobuf lets a message be written as the
concatenation of its fields (https://protobuf.dev/programming-guides/encoding/
#optional, "concatenation"), so each response is built from parts: the
header (the same for every response of one revision), the small per-watcher
fields, and the events, each encoded once (the hub hands every watcher of one
change the same :class:`~syndic.kv.messages.Event` object). The bytes are
those ``rpc_pb2.WatchResponse.SerializeToString()`` writes, fields in number
order; a test checks that.

Fragments (etcd: v3rpc ``sendFragments``): a watcher created with
``fragment=true`` whose response is ``fragment_bytes_max`` or more and holds
two events or more gets it in several responses, each filled with events
until adding one more would reach the limit, all but the last marked
``fragment=true``.

Example::

    encoder = WatchWireEncoder()
    payloads = encoder.encode(response, header, fragment_bytes_max=None)
"""

from __future__ import annotations

from typing import Final

from syndic.kv.messages import Event
from syndic.kv.watch import WatchResponse
from syndic.protowire import varint
from syndic.server.backend import Header
from syndic.server.grpc_api.convert import event_to_pb

# Field numbers of etcdserverpb.WatchResponse and ResponseHeader (rpc.proto).
_WIRE_VARINT: Final = 0
_WIRE_LEN: Final = 2
_HEADER: Final = 1
_WATCH_ID: Final = 2
_CREATED: Final = 3
_CANCELED: Final = 4
_COMPACT_REVISION: Final = 5
_CANCEL_REASON: Final = 6
_FRAGMENT: Final = 7
_EVENTS: Final = 11
_HEADER_CLUSTER_ID: Final = 1
_HEADER_MEMBER_ID: Final = 2
_HEADER_REVISION: Final = 3
_HEADER_RAFT_TERM: Final = 4
# Events kept encoded between calls. Every stream's responses of one revision
# hit the same few entries; the bound only stops a burst of distinct events
# (a long catch-up) from growing the cache: it is emptied when full.
ENCODED_EVENTS_MAX: Final = 4096
# watch_id fields kept encoded; ids are small per stream and repeat across
# streams, so a few thousand cover a member; emptied when full.
ENCODED_WATCH_IDS_MAX: Final = 4096
_FRAGMENT_FIELD: Final = bytes([(_FRAGMENT << 3) | _WIRE_VARINT, 1])


def varint_field(number: int, value: int) -> bytes:
    """A varint field, or nothing for 0 (proto3 leaves default values out)."""
    if not value:
        return b""
    return varint((number << 3) | _WIRE_VARINT) + varint(value)


def len_field(number: int, payload: bytes) -> bytes:
    return varint((number << 3) | _WIRE_LEN) + varint(len(payload)) + payload


class WatchWireEncoder:
    """Encodes watch responses, caching the header and events shared by many streams.

    One encoder serves every stream of a member: its caches hold bytes of
    the latest header and of recently seen events, never per-stream state.
    """

    __slots__ = ("_events", "_header", "_header_key", "_header_of", "_last", "_watch_ids")

    def __init__(self) -> None:
        self._header_key: tuple[int, int, int, int] | None = None
        self._header = b""
        # The Header object and revision the cached header bytes were made
        # from: the servicer passes one Header object per write, so most
        # calls match by identity without building a key.
        self._header_of: tuple[Header | None, int] = (None, -1)
        self._watch_ids: dict[int, bytes] = {}
        # id(event) -> (event, its WatchResponse.events field); the event is
        # held so that its id is not reused by another object meanwhile.
        self._events: dict[int, tuple[Event, bytes]] = {}
        # The last response encoded, with its header and fragment limit, and
        # its bytes: watchers with the same id share one response (see
        # WatchHub.on_revision), and the streams of one write are encoded in
        # a row, so most encodes are this one lookup.
        self._last: tuple[WatchResponse, Header, int | None, list[bytes]] | None = None

    def encode(
        self, resp: WatchResponse, header: Header, fragment_bytes_max: int | None
    ) -> list[bytes]:
        """The wire bytes of ``resp``: one message, or its fragments in order.

        ``fragment_bytes_max`` is None unless the watcher asked for fragments.
        The list may be shared with other callers: do not change it.
        """
        last = self._last
        if (
            last is not None
            and last[0] is resp
            and last[1] is header
            and last[2] == fragment_bytes_max
        ):
            return last[3]
        payloads = self._encode(resp, header, fragment_bytes_max)
        self._last = (resp, header, fragment_bytes_max, payloads)
        return payloads

    def _encode(
        self, resp: WatchResponse, header: Header, fragment_bytes_max: int | None
    ) -> list[bytes]:
        head = self._header_field(header, resp.revision)
        if resp.created or resp.canceled or resp.compact_revision or resp.cancel_reason:
            head += self._own_fields(resp)
        else:
            head += self._watch_id_field(resp.watch_id)
        if len(resp.events) < 2:  # nothing to fragment: the common case
            return [head + b"".join([self._event_field(ev) for ev in resp.events])]
        events = [self._event_field(ev) for ev in resp.events]
        size = len(head) + sum(map(len, events))
        if fragment_bytes_max is None or size < fragment_bytes_max or len(events) < 2:
            return [head + b"".join(events)]
        return _fragments(head, events, fragment_bytes_max)

    def _header_field(self, header: Header, revision: int) -> bytes:
        # etcd: a watch response's header revision is the response's revision.
        of = self._header_of
        if of[0] is header and of[1] == revision:
            return self._header
        self._header_of = (header, revision)
        key = (header.cluster_id, header.member_id, revision, header.raft_term)
        if key != self._header_key:
            body = (
                varint_field(_HEADER_CLUSTER_ID, header.cluster_id)
                + varint_field(_HEADER_MEMBER_ID, header.member_id)
                + varint_field(_HEADER_REVISION, revision)
                + varint_field(_HEADER_RAFT_TERM, header.raft_term)
            )
            self._header = len_field(_HEADER, body)
            self._header_key = key
        return self._header

    def _watch_id_field(self, watch_id: int) -> bytes:
        field = self._watch_ids.get(watch_id)
        if field is None:
            if len(self._watch_ids) >= ENCODED_WATCH_IDS_MAX:
                self._watch_ids.clear()
            field = self._watch_ids[watch_id] = varint_field(_WATCH_ID, watch_id)
        return field

    @staticmethod
    def _own_fields(resp: WatchResponse) -> bytes:
        out = varint_field(_WATCH_ID, resp.watch_id)
        if resp.created or resp.canceled or resp.compact_revision or resp.cancel_reason:
            out += (
                varint_field(_CREATED, int(resp.created))
                + varint_field(_CANCELED, int(resp.canceled))
                + varint_field(_COMPACT_REVISION, resp.compact_revision)
            )
            if resp.cancel_reason:
                out += len_field(_CANCEL_REASON, resp.cancel_reason.encode())
        return out

    def _event_field(self, event: Event) -> bytes:
        hit = self._events.get(id(event))
        if hit is not None and hit[0] is event:
            return hit[1]
        if len(self._events) >= ENCODED_EVENTS_MAX:
            self._events.clear()
        field = len_field(_EVENTS, event_to_pb(event).SerializeToString())
        self._events[id(event)] = (event, field)
        return field


def _fragments(head: bytes, events: list[bytes], fragment_bytes_max: int) -> list[bytes]:
    """etcd's sendFragments: sizes are counted with ``fragment=true`` set, and a
    fragment takes events until one more would make it ``fragment_bytes_max``
    or more (always at least one event)."""
    base = len(head) + len(_FRAGMENT_FIELD)
    out: list[bytes] = []
    start = 0
    while start < len(events):
        size = base + len(events[start])
        end = start + 1
        while end < len(events) and size + len(events[end]) < fragment_bytes_max:
            size += len(events[end])
            end += 1
        last = end == len(events)
        out.append(head + (b"" if last else _FRAGMENT_FIELD) + b"".join(events[start:end]))
        start = end
    return out
