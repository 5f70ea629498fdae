"""What every member applies, in log order: the MVCC store, the member table
and the auth store.

All three must be identical on every member after the same entries, and
all travel in a snapshot, so they live together here. Applying never
raises for a request's own mistakes: the store's error is the result,
handed back to the caller that proposed it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from syndic.kv.errors import KvError
from syndic.kv.messages import AlarmType
from syndic.kv.mvcc import Store, StoreConfig
from syndic.kv.snapshot import dump_frozen_parts, freeze
from syndic.server.auth import AuthSnapshotError, AuthStore, apply_auth_entry
from syndic.server.backend import AuthError
from syndic.server.entry_codec import DecodedEntry, EntryKind

SNAPSHOT_FORMAT_VERSION = 1


class StateSnapshotError(ValueError):
    """Snapshot bytes that this version of syndic did not write."""


@dataclass(frozen=True, slots=True)
class MemberAttrs:
    """A member's published identity; replicated so every member lists the same."""

    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]


def _bin_header(size: int) -> bytes:
    # msgpack's bin 8/16/32 header (the msgpack package packs bytes whole).
    if size < 1 << 8:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 1 << 16:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def _unpack_state(data: bytes) -> tuple[Any, Any, Any, Any]:
    """``msgpack.unpackb(data)`` of what :meth:`StateMachine.capture` packs, with
    the store's bytes as a view of ``data``: unpacking copies a bin, and a
    large store's is hundreds of MiB."""
    view = memoryview(data)
    start = 2  # the array header and the version, each one byte when well formed
    head = data[:start]
    widths = {0xC4: 1, 0xC5: 2, 0xC6: 4}
    well_formed = head[:1] == b"\x94" and head[1:] < b"\x80"  # fixarray of 4, fixint version
    if not well_formed or len(data) <= start or data[start] not in widths:
        return tuple(msgpack.unpackb(data))
    width = widths[data[start]]
    size = int.from_bytes(view[start + 1 : start + 1 + width], "big")
    begin = start + 1 + width
    end = begin + size
    if end > len(data):
        raise ValueError(f"the store's bytes run past the end ({end} > {len(data)})")
    unpacker = msgpack.Unpacker()
    unpacker.feed(view[end:])
    members, auth = unpacker.unpack(), unpacker.unpack()
    if unpacker.tell() != len(data) - end:
        raise ValueError("extra bytes after the state")
    return msgpack.unpackb(head[1:]), view[begin:end], members, auth


# A decoded snapshot, ready for StateMachine.install.
DecodedState = tuple[Store, dict[int, MemberAttrs], AuthStore]


class StateMachine:
    """The store, the member table and the auth store, advanced only by committed entries."""

    def __init__(
        self,
        store_config: StoreConfig,
        members: dict[int, MemberAttrs],
        clock_ms: Callable[[], int] = lambda: 0,
    ) -> None:
        self.store_config = store_config
        # The applying member's own monotonic clock, in ms. Entries carry no
        # time; the store reads this only while its lessor is primary (the
        # leader starting a granted lease's TTL), so what every member
        # replicates never depends on it.
        self.clock_ms = clock_ms
        self.store = Store(store_config)
        self.members = dict(members)
        self.auth = AuthStore()

    def apply(self, entry: DecodedEntry) -> Any:
        """Apply one decoded entry; returns the store's response or its KvError."""
        if entry.kind is EntryKind.STORE:
            try:
                return self.store.apply(entry.payload, self.clock_ms())
            except KvError as exc:
                return exc
        if entry.kind is EntryKind.MEMBER_ATTRS:
            member_id, name, peer_urls, client_urls = entry.payload
            self.members[member_id] = MemberAttrs(name, tuple(peer_urls), tuple(client_urls))
            return None
        if entry.kind is EntryKind.ALARM:
            active, alarm = entry.payload
            if active:
                self.store.alarm_activate(AlarmType(alarm))
            else:
                self.store.alarm_deactivate(AlarmType(alarm))
            return None
        if entry.kind is EntryKind.AUTH:
            try:
                return apply_auth_entry(self.auth, self.store, entry.payload, self.clock_ms())
            except (AuthError, KvError) as exc:
                return exc
        raise AssertionError(f"unhandled entry kind {entry.kind}")

    def serialize(self) -> bytes:
        return b"".join(self.serialized_parts())

    def serialized_parts(self) -> list[bytes]:
        """:meth:`serialize`'s bytes as pieces, for a writer that needs no
        joined copy (a snapshot's child writes them to its file one by one).

        A running member calls it in a child forked at the applied index
        (``syndic.server.forked_serialization``): the fork, not this method,
        keeps the state still while it reads."""
        members = [
            [mid, a.name, list(a.peer_urls), list(a.client_urls)]
            for mid, a in sorted(self.members.items())
        ]
        store = dump_frozen_parts(freeze(self.store))
        packer = msgpack.Packer()
        # msgpack.packb([version, store bytes, members, auth]) in pieces: the
        # store's own pieces are never joined on their own.
        return [
            packer.pack_array_header(4),
            packer.pack(SNAPSHOT_FORMAT_VERSION),
            _bin_header(sum(map(len, store))),
            *store,
            packer.pack(members),
            packer.pack(self.auth.serialize()),
        ]

    def restore(self, data: bytes) -> None:
        """Replace everything with a snapshot's state; nothing changes if it is invalid."""
        self.install(self.decode(data))

    def install(self, decoded: DecodedState) -> None:
        """Put a decoded snapshot in place (cheap: three assignments)."""
        store, members, auth = decoded
        if self.store.lease_primary:
            # A restored store knows no deadlines; a primary one keeps its
            # role and starts every lease afresh, as a new leader would.
            store.lease_promote(self.clock_ms())
        self.members = members
        self.store = store
        self.auth = auth

    def decode(self, data: bytes) -> DecodedState:
        """A snapshot's state, checked and built without touching this one;
        may run in a worker thread (decoding a large store takes seconds)."""
        try:
            version, store_bytes, members, auth_bytes = _unpack_state(data)
        except Exception as exc:
            raise StateSnapshotError(f"snapshot data is not a syndic state: {exc}") from exc
        if version != SNAPSHOT_FORMAT_VERSION:
            raise StateSnapshotError(
                f"snapshot format {version!r} is not {SNAPSHOT_FORMAT_VERSION}"
            )
        try:
            auth = AuthStore.restore(auth_bytes)
        except AuthSnapshotError as exc:
            raise StateSnapshotError(str(exc)) from exc
        store = Store.restore(store_bytes, self.store_config)
        table = {
            mid: MemberAttrs(name, tuple(peers), tuple(clients))
            for mid, name, peers, clients in members
        }
        return store, table, auth
