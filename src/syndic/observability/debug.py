"""Remote debugging: asyncio tasks and threads with stacks, a tracemalloc
summary on demand, and the member's running configuration with secrets masked."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import sys
import threading
import traceback
import tracemalloc
from typing import Any, Final

# A dump of thousands of watch tasks stays readable and bounded.
TASKS_MAX: Final = 2000
STACK_FRAMES_MAX: Final = 30
TRACEMALLOC_TOP_MAX: Final = 100
TRACEMALLOC_FRAMES: Final = 5
MASK: Final = "***"
# A field whose name contains one of these is a secret.
SECRET_WORDS: Final = ("password", "secret", "token", "key_file", "private", "master_key")


def task_dump(limit: int = TASKS_MAX) -> list[dict[str, Any]]:
    """Every asyncio task of the running loop, with its coroutine's stack."""
    out: list[dict[str, Any]] = []
    for task in list(asyncio.all_tasks())[:limit]:
        buf = io.StringIO()
        task.print_stack(limit=STACK_FRAMES_MAX, file=buf)
        out.append(
            {
                "name": task.get_name(),
                "coro": getattr(task.get_coro(), "__qualname__", repr(task.get_coro())),
                "done": task.done(),
                "stack": buf.getvalue().splitlines(),
            }
        )
    return out


def thread_dump() -> list[dict[str, Any]]:
    """Every thread with its current stack."""
    frames = sys._current_frames()
    out = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        stack = traceback.format_stack(frame, limit=STACK_FRAMES_MAX) if frame else []
        out.append(
            {
                "name": thread.name,
                "ident": thread.ident,
                "daemon": thread.daemon,
                "stack": [line.rstrip() for line in stack],
            }
        )
    return out


class MemoryTracer:
    """tracemalloc started on request (it slows allocation, so never by default)."""

    def start(self) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(TRACEMALLOC_FRAMES)

    def stop(self) -> None:
        tracemalloc.stop()

    def summary(self, top: int = 20) -> dict[str, Any]:
        if not 1 <= top <= TRACEMALLOC_TOP_MAX:
            raise ValueError(f"top must be in 1..{TRACEMALLOC_TOP_MAX}, got {top}")
        if not tracemalloc.is_tracing():
            return {"tracing": False, "top": []}
        current, peak = tracemalloc.get_traced_memory()
        stats = tracemalloc.take_snapshot().statistics("lineno")[:top]
        return {
            "tracing": True,
            "current_bytes": current,
            "peak_bytes": peak,
            "top": [
                {"where": str(s.traceback[0]), "size_bytes": s.size, "count": s.count}
                for s in stats
            ],
        }


def is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def masked_config(config: object) -> dict[str, Any]:
    """A dataclass config as JSON-ready values, every secret field masked."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError("masked_config needs a dataclass instance")
    out: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if is_secret(field.name) and value:
            out[field.name] = MASK
        elif isinstance(value, tuple | list):
            out[field.name] = [str(v) for v in value]
        elif isinstance(value, int | float | bool | str) or value is None:
            out[field.name] = value
        else:
            out[field.name] = str(value)
    return out
