"""Go duration strings (``"10s"``, ``"1m30s"``, ``"120000ms"``), as Consul reads them.

>>> parse_duration_ms("1m30s")
90000.0
>>> parse_duration_ms("120000ms")
120000.0
"""

from __future__ import annotations

import re

#: Longest duration text accepted, in characters: a Go duration never needs
#: more, and a bound keeps hostile input from costing regex time.
DURATION_TEXT_LENGTH_MAX = 64

_UNIT_MS = {
    "ns": 1e-6,
    "us": 1e-3,
    "µs": 1e-3,
    "μs": 1e-3,
    "ms": 1.0,
    "s": 1000.0,
    "m": 60_000.0,
    "h": 3_600_000.0,
}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


class DurationError(ValueError):
    """A duration string Go's ``time.ParseDuration`` would refuse, or a negative one."""


def parse_duration_ms(text: str) -> float:
    """Parse a non-negative Go duration into milliseconds (Go: time.ParseDuration)."""
    if not isinstance(text, str):
        raise DurationError(f"duration must be a string, got {type(text).__name__}")
    if len(text) > DURATION_TEXT_LENGTH_MAX:
        raise DurationError(f"duration is longer than {DURATION_TEXT_LENGTH_MAX} characters")
    if text == "0":
        return 0.0
    if text.startswith("-"):
        raise DurationError(f"time: negative duration {text!r}")
    body = text[1:] if text.startswith("+") else text
    if not body:
        raise DurationError(f"time: invalid duration {text!r}")
    total = 0.0
    pos = 0
    for match in _PART.finditer(body):
        if match.start() != pos:
            raise DurationError(f"time: invalid duration {text!r}")
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if pos != len(body):
        # Go: a bare number other than 0 has no unit and is refused.
        raise DurationError(f"time: missing unit in duration {text!r}")
    return total


def format_duration_ms(ms: float) -> str:
    """Milliseconds as a Go duration string (``"1m30s"``, ``"250ms"``, ``"0s"``)."""
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms:g}ms"
    seconds = ms / 1000.0
    hours, rest = divmod(seconds, 3600.0)
    minutes, seconds = divmod(rest, 60.0)
    out = ""
    if hours:
        out += f"{int(hours)}h"
    if hours or minutes:
        out += f"{int(minutes)}m"
    return out + f"{seconds:g}s"
