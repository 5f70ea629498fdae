"""Gray release: which candidate version a client gets.

A gray rule carries a :class:`~syndic.config.model.Selector`: labels that
must all equal the client's (application version, zone, instance id or any
label the client declares) and/or a percentage of client ids. The bucket
of a client id is a hash of the config path and the id, so it is stable:
the same client stays in a 10% release when it grows to 50%, on every
process and every restart, and two configs do not pick the same 10%.
Client IPs are not a criterion: behind a proxy or in a container they name
the wrong machine (a frequent complaint about Nacos beta release).

Several grays may be live; the one with the lowest rank (then name) that
matches wins, and a client no gray matches gets the release.

>>> sel = parse_selector({"labels": {"zone": "eu-1"}, "percentage": 100})
>>> matches(sel, "prod/orders/breaker", ClientIdentity("pod-7", {"zone": "eu-1"}))
True
>>> parse_selector({"labels": {"zone": "eu 1"}})  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
syndic.config.errors.InvalidInputError: selector.labels.zone: value must match ..., got 'eu 1'
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from syndic.config.errors import InvalidInputError
from syndic.config.model import Entry, Selector

# Kubernetes' label syntax: users already write labels this way.
_LABEL_KEY = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_./-]{0,61}[A-Za-z0-9])?")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9_.-]{0,63}")
LABELS_MAX = 32
CLIENT_ID_LENGTH_MAX = 256
# 10,000 buckets: percentages to two decimals (0.01% steps).
BUCKETS = 10_000


def check_labels(field_name: str, labels: object) -> dict[str, str]:
    if not isinstance(labels, Mapping):
        raise InvalidInputError(field_name, f"must be a mapping, got {type(labels).__name__}")
    if len(labels) > LABELS_MAX:
        raise InvalidInputError(field_name, f"{len(labels)} labels, limit {LABELS_MAX}")
    checked: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
            raise InvalidInputError(field_name, f"key must match {_LABEL_KEY.pattern}, got {key!r}")
        if not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value):
            raise InvalidInputError(
                f"{field_name}.{key}", f"value must match {_LABEL_VALUE.pattern}, got {value!r}"
            )
        checked[key] = value
    return checked


def check_client_id(client_id: object) -> str:
    if not isinstance(client_id, str) or not client_id or len(client_id) > CLIENT_ID_LENGTH_MAX:
        raise InvalidInputError(
            "client_id", f"must be a non-empty string of at most {CLIENT_ID_LENGTH_MAX} characters"
        )
    return client_id


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """Who asks: a stable id (for percentages) and labels (for label selectors)."""

    client_id: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_client_id(self.client_id)
        check_labels("labels", self.labels)


def parse_selector(doc: object) -> Selector:
    """A selector from ``{"labels": {...}, "percentage": 10}``; at least one criterion."""
    if not isinstance(doc, Mapping):
        raise InvalidInputError("selector", f"must be a mapping, got {type(doc).__name__}")
    unknown = set(doc) - {"labels", "percentage"}
    if unknown:
        raise InvalidInputError("selector", f"unknown fields {sorted(unknown)}")
    labels = check_labels("selector.labels", doc.get("labels") or {})
    percentage = doc.get("percentage")
    if percentage is not None:
        if isinstance(percentage, bool) or not isinstance(percentage, int | float):
            raise InvalidInputError("selector.percentage", f"must be a number, got {percentage!r}")
        if not math.isfinite(percentage) or not 0 < percentage <= 100:
            raise InvalidInputError("selector.percentage", f"must be in (0, 100], got {percentage}")
        percentage = float(percentage)
    if not labels and percentage is None:
        raise InvalidInputError("selector", "needs labels, a percentage, or both")
    return Selector(tuple(sorted(labels.items())), percentage)


def bucket(config_path: str, client_id: str) -> int:
    """The client's stable bucket in [0, BUCKETS) for this config."""
    digest = hashlib.sha256(f"{config_path}\x00{client_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def matches(selector: Selector, config_path: str, who: ClientIdentity) -> bool:
    for key, value in selector.labels:
        if who.labels.get(key) != value:
            return False
    if selector.percentage is None:
        return True
    return bucket(config_path, who.client_id) < round(selector.percentage * BUCKETS / 100)


def choose(
    release: Entry | None, grays: Iterable[Entry], config_path: str, who: ClientIdentity | None
) -> Entry | None:
    """The entry ``who`` gets: the best-ranked matching gray, else the release."""
    if who is not None:
        for gray in sorted(grays, key=lambda g: (g.rank, g.gray_name or "")):
            assert gray.selector is not None, gray
            if matches(gray.selector, config_path, who):
                return gray
    return release
