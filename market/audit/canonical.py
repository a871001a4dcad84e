"""Canonical JSON: one byte string per value, so a hash means the same thing everywhere.

Rules (close to RFC 8785 JCS, simpler where this log never needs more):

- objects with string keys, sorted by code point; no whitespace (``{"a":1,"b":[1,2]}``);
- UTF-8, non-ASCII characters written as themselves;
- ``Decimal`` as a string (``"5.00"``), never a float: money must not be rounded by a reader;
- timestamps in UTC as ``2026-11-28T16:40:09.123456Z`` (always microseconds, always ``Z``);
  naive datetimes are refused, since their instant is unknown;
- floats in Python's shortest round-trip form; NaN and infinities refused (not JSON);
- enums as their value, tuples as arrays; anything else (bytes, sets, objects) refused, so a
  caller learns at append time rather than the verifier at audit time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from market.errors import MarketError


class NotCanonical(MarketError):
    """A value the audit log cannot encode canonically (a bug in the caller)."""

    code = "audit_not_canonical"
    status = 500


def format_time(value: datetime) -> str:
    """A timezone-aware datetime as fixed-width UTC ISO 8601 with a ``Z``."""
    if value.tzinfo is None:
        raise NotCanonical("naive datetime refused in an audit entry: use timezone-aware UTC")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def plain(value: Any, *, where: str = "$") -> Any:
    """``value`` as plain JSON types (dict, list, str, int, float, bool, None)."""
    if value is None or isinstance(value, bool | str | int):
        if isinstance(value, Enum):
            return value.value
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotCanonical(f"{where}: {value} is not a finite number")
        return value
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise NotCanonical(f"{where}: {value} is not a finite number")
        return str(value)
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return plain(value.value, where=where)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotCanonical(f"{where}: object keys must be strings, not {key!r}")
            out[key] = plain(item, where=f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [plain(item, where=f"{where}[{i}]") for i, item in enumerate(value)]
    raise NotCanonical(f"{where}: {type(value).__name__} has no canonical JSON form")


def dumps(value: Any) -> str:
    """The canonical JSON text of ``value``."""
    return json.dumps(
        plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def is_canonical(text: str) -> bool:
    """Whether ``text`` is exactly the canonical form of what it parses to."""
    try:
        return dumps(json.loads(text)) == text
    except (ValueError, NotCanonical):
        return False
