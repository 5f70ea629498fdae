"""The small replicated key-value state machine the simulated members apply.

Commands travel as msgpack in ``Entry.data``: ``put`` and ``cas`` go through the
log; reads are served from the applied state after a ReadIndex round.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

# Keys and values the workload writes are short; a command past this size is a
# corrupt entry, not a big value.
MAX_COMMAND_BYTES = 4096


class CommandError(ValueError):
    """An entry's data is not a well-formed command."""


@dataclass(frozen=True, slots=True)
class Command:
    """``op`` is ``"put"`` or ``"cas"``; ``expected`` is the cas condition (None: absent)."""

    request_id: str
    op: str
    key: str
    value: str
    expected: str | None = None

    def encode(self) -> bytes:
        return msgpack.packb([self.request_id, self.op, self.key, self.value, self.expected])

    @classmethod
    def decode(cls, data: bytes) -> Command:
        if len(data) > MAX_COMMAND_BYTES:
            raise CommandError(f"command of {len(data)} bytes exceeds {MAX_COMMAND_BYTES}")
        try:
            fields = msgpack.unpackb(data)
        except Exception as exc:
            raise CommandError(f"undecodable command: {exc}") from exc
        if not isinstance(fields, list) or len(fields) != 5:
            raise CommandError("a command is a 5-element array")
        request_id, op, key, value, expected = fields
        if op not in ("put", "cas"):
            raise CommandError(f"unknown command op {op!r}")
        if not all(isinstance(x, str) for x in (request_id, key, value)):
            raise CommandError("request id, key and value must be strings")
        if expected is not None and not isinstance(expected, str):
            raise CommandError("cas expectation must be a string or nil")
        return cls(request_id, op, key, value, expected)


class KVStateMachine:
    """A dict, plus the index of the last entry applied to it.

    >>> sm = KVStateMachine()
    >>> sm.apply(1, Command("r1", "put", "x", "a").encode())
    ('r1', True)
    >>> sm.apply(2, Command("r2", "cas", "x", "b", expected="z").encode())
    ('r2', False)
    >>> sm.get("x"), sm.applied_index
    ('a', 2)
    """

    __slots__ = ("applied_index", "data")

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.applied_index = 0

    def get(self, key: str) -> str | None:
        return self.data.get(key)

    def apply(self, index: int, payload: bytes) -> tuple[str, bool] | None:
        """Apply one committed entry; returns (request id, succeeded) for commands,
        None for the empty entries a new leader appends."""
        if index != self.applied_index + 1:
            raise CommandError(f"apply out of order: index {index} after {self.applied_index}")
        cmd = Command.decode(payload) if payload else None
        self.applied_index = index
        if cmd is None:
            return None
        if cmd.op == "put":
            self.data[cmd.key] = cmd.value
            return cmd.request_id, True
        if self.data.get(cmd.key) == cmd.expected:
            self.data[cmd.key] = cmd.value
            return cmd.request_id, True
        return cmd.request_id, False

    def skip(self, index: int) -> None:
        """Advance past an entry that carries no command (a configuration change)."""
        if index != self.applied_index + 1:
            raise CommandError(f"apply out of order: index {index} after {self.applied_index}")
        self.applied_index = index

    def snapshot_bytes(self) -> bytes:
        return msgpack.packb([self.applied_index, sorted(self.data.items())])

    @classmethod
    def restore(cls, data: bytes) -> KVStateMachine:
        try:
            applied, items = msgpack.unpackb(data)
        except Exception as exc:
            raise CommandError(f"undecodable snapshot: {exc}") from exc
        sm = cls()
        sm.applied_index = int(applied)
        sm.data = {str(k): str(v) for k, v in items}
        return sm
