"""Everything a publish must pass before anything is written.

In order: the size limit, the format (the content must parse), the JSON
Schema attached to the data id, and, for a data id that holds traffic
rules, syndic.traffic's own rule parser, so a rule document that a
:class:`~syndic.traffic.policy.Policy` would refuse never reaches a client.
Each failure raises :class:`~syndic.config.errors.InvalidInputError` (or its
subclass :class:`~syndic.config.errors.SchemaViolationError`) with the path
of the error.

>>> check_schema({"type": "object", "required": ["port"]})
>>> validate_against({"type": "object", "properties": {"port": {"type": "integer"}}},
...                  {"port": "80"})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
syndic.config.errors.SchemaViolationError: content: schema violation at $.port: ...
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from syndic.config.errors import InvalidInputError, SchemaViolationError
from syndic.config.formats import parse_content
from syndic.config.model import Format, Settings
from syndic.traffic.errors import RuleError
from syndic.traffic.rules import parse_rules

# Nacos's default content limit is 100 KiB; a config is a page of settings,
# and every client downloads it on each change.
CONTENT_BYTES_MAX = 100 * 1024
# A schema is smaller still; it is read on every publish.
SCHEMA_BYTES_MAX = 64 * 1024


def check_schema(schema: object) -> None:
    """Refuse a schema that is not a valid JSON Schema (for its declared draft)."""
    if not isinstance(schema, Mapping):
        raise InvalidInputError("schema", f"must be an object, got {type(schema).__name__}")
    cls = validator_for(schema)
    try:
        cls.check_schema(dict(schema))
    except SchemaError as exc:
        raise InvalidInputError("schema", f"not a valid JSON Schema: {exc.message}") from None


def _json_path(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate_against(schema: Mapping[str, Any], value: Any) -> None:
    cls = validator_for(schema)
    validator = cls(schema, format_checker=cls.FORMAT_CHECKER)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        raise SchemaViolationError(_json_path(error.absolute_path), error.message)


def check_size(text: str, content_bytes_max: int) -> None:
    size = len(text.encode())
    if size > content_bytes_max:
        raise InvalidInputError(
            "content", f"is {size} bytes, over the limit of {content_bytes_max} bytes"
        )


def validate_content(
    settings: Settings, fmt: Format, text: str, *, content_bytes_max: int = CONTENT_BYTES_MAX
) -> Any:
    """The parsed value of a content that passed every check."""
    check_size(text, content_bytes_max)
    if settings.traffic_rules and fmt not in (Format.YAML, Format.JSON):
        raise InvalidInputError("format", f"traffic rules are yaml or json, got {fmt.value}")
    value = parse_content(fmt, text)
    if settings.schema is not None:
        validate_against(settings.schema, value)
    if settings.traffic_rules:
        try:
            parse_rules(value)
        except RuleError as exc:
            raise InvalidInputError(f"content.{exc.path}", str(exc).split(": ", 1)[-1]) from None
    return value
