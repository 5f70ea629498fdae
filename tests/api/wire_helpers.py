"""Helpers for comparing syndic's messages with an etcd client's, field by field."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

# Nesting depth at which fill() stops descending: RequestOp -> TxnRequest ->
# RequestOp recurses forever otherwise, and two levels already cover it.
FILL_DEPTH_MAX = 3

_T = FieldDescriptor


def _scalar(field: FieldDescriptor, salt: int) -> Any:
    """A non-default value of the field's type that also exercises its range:
    negative int64s, uint64s above 2**63, non-ASCII strings, bytes with NUL.
    """
    number = field.number + salt
    kind = field.type
    if kind in (_T.TYPE_INT64, _T.TYPE_SINT64, _T.TYPE_SFIXED64):
        return -(2**62) - number
    if kind in (_T.TYPE_UINT64, _T.TYPE_FIXED64):
        return 2**63 + number
    if kind in (_T.TYPE_INT32, _T.TYPE_SINT32, _T.TYPE_SFIXED32):
        return -(2**30) - number
    if kind in (_T.TYPE_UINT32, _T.TYPE_FIXED32):
        return 2**31 + number
    if kind == _T.TYPE_BOOL:
        return True
    if kind == _T.TYPE_STRING:
        return f"{field.name}-é-{number}"
    if kind == _T.TYPE_BYTES:
        return b"\x00\xff" + field.name.encode() + bytes([number % 256])
    if kind == _T.TYPE_ENUM:
        values = field.enum_type.values
        return values[(number % (len(values) - 1)) + 1].number if len(values) > 1 else 0
    raise AssertionError(f"unhandled field type {kind} of {field.full_name}")


def _chosen_oneof_members(descriptor: Descriptor, choice: int) -> set[str]:
    return {
        oneof.fields[choice % len(oneof.fields)].name for oneof in descriptor.oneofs if oneof.fields
    }


def fill(message: Message, choice: int = 0, depth: int = 0) -> Message:
    """Set every field of ``message`` (one member per oneof, picked by
    ``choice``) to a non-default value, recursively; returns ``message``.
    """
    descriptor = message.DESCRIPTOR
    chosen = _chosen_oneof_members(descriptor, choice)
    for field in descriptor.fields:
        if field.containing_oneof is not None and field.name not in chosen:
            continue
        if field.type == _T.TYPE_MESSAGE:
            if depth >= FILL_DEPTH_MAX:
                continue
            if field.is_repeated:
                container = getattr(message, field.name)
                for salt in range(2):
                    fill(container.add(), choice + salt, depth + 1)
            else:
                child = getattr(message, field.name)
                child.SetInParent()
                fill(child, choice, depth + 1)
        elif field.is_repeated:
            getattr(message, field.name).extend(_scalar(field, salt) for salt in range(2))
        else:
            setattr(message, field.name, _scalar(field, choice))
    return message


def as_dict(message: Message) -> dict[str, Any]:
    """Field values by field name, independent of the message's package."""
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def oneof_choices(descriptor: Descriptor) -> int:
    """How many fill() choices cover every member of every oneof."""
    return max((len(oneof.fields) for oneof in descriptor.oneofs), default=1)
