"""Structured JSON logs carrying the request id and the trace id, and log
levels changed at runtime per logger.

``install_json_logging()`` puts a :class:`JsonFormatter` on the root handler;
each record gets ``request_id`` (from :data:`request_id_var`, set by the
admin app's middleware and the gRPC guard) and ``trace_id`` (from the current
OpenTelemetry span, when one is recording).
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from typing import Any, Final

from opentelemetry import trace

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar(
    "syndic_request_id", default=""
)

LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Logger names are dotted identifiers; anything longer is not one of ours.
LOGGER_NAME_CHARS_MAX: Final = 200

_RESERVED: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


def current_trace_id() -> str:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id, trace_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "request_id": getattr(record, "request_id", "") or request_id_var.get(),
            "trace_id": getattr(record, "trace_id", "") or current_trace_id(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def install_json_logging(level: str = "INFO", stream: Any = None) -> logging.Handler:
    """Make the root logger write JSON lines to ``stream`` (stderr)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(parse_level(level))
    return handler


class LogLevelError(ValueError):
    """A logger name or level the admin API refuses."""


def parse_level(level: object) -> int:
    if not isinstance(level, str) or level.upper() not in LEVELS:
        raise LogLevelError(f"level must be one of {', '.join(LEVELS)}, got {level!r:.40}")
    return int(logging.getLevelName(level.upper()))


def set_logger_level(name: object, level: object) -> dict[str, str]:
    """Set ``name``'s level ("" or "root" = the root logger); returns its new state."""
    if not isinstance(name, str) or len(name) > LOGGER_NAME_CHARS_MAX:
        raise LogLevelError(f"logger must be a name of at most {LOGGER_NAME_CHARS_MAX} chars")
    if name and not all(part.isidentifier() for part in name.split(".")):
        raise LogLevelError(f"logger {name!r} is not a dotted name")
    value = parse_level(level)
    logger = logging.getLogger(None if name in ("", "root") else name)
    logger.setLevel(value)
    return {"logger": logger.name, "level": logging.getLevelName(logger.level)}


def logger_levels() -> dict[str, str]:
    """Every configured logger of syndic (and the root) with its effective level."""
    levels = {"root": logging.getLevelName(logging.getLogger().getEffectiveLevel())}
    for name, logger in sorted(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (
            name.startswith("syndic") or logger.level != logging.NOTSET
        ):
            levels[name] = logging.getLevelName(logger.getEffectiveLevel())
    return levels
