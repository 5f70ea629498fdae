"""The configuration centre's errors: typed, each naming what it refused.

Every error raised by ``syndic.config`` derives from :class:`ConfigError`.
A refused publish changes nothing in the store, so a caller can fix the
input and try again.
"""

from __future__ import annotations


class ConfigError(Exception):
    """Base of every error raised by syndic.config."""


class InvalidInputError(ConfigError, ValueError):
    """A name, label, format, size or document is malformed; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class SchemaViolationError(InvalidInputError):
    """The content does not satisfy the JSON Schema attached to its data id.

    ``path`` is the JSON path of the offending value (``$.breaker.failure_ratio``).
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__("content", f"schema violation at {path}: {message}")
        self.path = path


class ConflictError(ConfigError):
    """A compare-and-set publish lost: the config moved past the version the editor saw."""

    def __init__(self, config: str, expected_version: int, current_version: int) -> None:
        super().__init__(
            f"{config}: publish expected version {expected_version}, "
            f"but the current version is {current_version}; reload and retry"
        )
        self.config = config
        self.expected_version = expected_version
        self.current_version = current_version


class ConfigNotFoundError(ConfigError, LookupError):
    """No such config, version or gray rule."""


class CorruptEntryError(ConfigError):
    """A stored value under the centre's prefix is not an entry it wrote (hand-edited?)."""


class DecryptionError(ConfigError):
    """Encrypted content could not be opened: no key for it, or it was tampered with."""


class CentreUnavailableError(ConfigError):
    """The store could not be reached and no local snapshot or failover file exists."""
