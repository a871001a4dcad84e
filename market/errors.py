"""One exception hierarchy for the marketplace, rendered by one handler (market.web.errors).

Services raise these; they never raise HTTP exceptions. Each class carries a stable
snake_case ``code`` (part of the public contract, docs/api.md) and the HTTP status the
handler uses::

    MarketError (500 internal_error)
    +-- ConfigurationError          (500 configuration_error; also raised before any app exists)
    +-- InvalidRequest              (400 invalid_request)
    |   +-- InvalidJson             (400 invalid_json)
    |   +-- ValidationFailed        (422 validation_error)
    +-- AuthenticationRequired      (401 authentication_required)
    |   +-- InvalidCredentials      (401 invalid_credentials)
    +-- PermissionDenied            (403 forbidden)
    +-- NotFound                    (404 not_found)
    +-- Conflict                    (409 conflict)
    +-- PayloadTooLarge             (413 payload_too_large)
    +-- UnsupportedMediaType        (415 unsupported_media_type)
    +-- RateLimited                 (429 rate_limited)
    +-- ServiceUnavailable          (503 service_unavailable; with Retry-After)

Database failures are not MarketErrors when they happen (SQLAlchemy raises them);
``database_failure`` is the one place that decides which of them mean "try again shortly"
(503) rather than a bug (500).
"""

from __future__ import annotations

import json
from typing import Any


class MarketError(Exception):
    """Base of every error the marketplace reports on purpose."""

    code = "internal_error"
    status = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON error shape of docs/api.md."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class ConfigurationError(MarketError):
    code = "configuration_error"


class InvalidRequest(MarketError):
    code = "invalid_request"
    status = 400


class InvalidJson(InvalidRequest):
    code = "invalid_json"


class ValidationFailed(InvalidRequest):
    code = "validation_error"
    status = 422


class AuthenticationRequired(MarketError):
    code = "authentication_required"
    status = 401


class InvalidCredentials(AuthenticationRequired):
    code = "invalid_credentials"


class PermissionDenied(MarketError):
    code = "forbidden"
    status = 403


class NotFound(MarketError):
    code = "not_found"
    status = 404


class Conflict(MarketError):
    code = "conflict"
    status = 409


class PayloadTooLarge(MarketError):
    code = "payload_too_large"
    status = 413


class UnsupportedMediaType(MarketError):
    code = "unsupported_media_type"
    status = 415


class RateLimited(MarketError):
    code = "rate_limited"
    status = 429


class ServiceUnavailable(MarketError):
    """A transient failure (database locked, connection lost): the same request may succeed
    after ``retry_after_s`` seconds, which the handler sends as the Retry-After header."""

    code = "service_unavailable"
    status = 503

    def __init__(
        self, message: str, *, retry_after_s: int = 1, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, details={"retry_after_s": retry_after_s, **(details or {})})
        self.retry_after_s = retry_after_s


# A 422 lists at most this many field errors (and says how many there were): a body with a
# million unknown keys must not produce an error body listing a million fields.
MAX_FIELD_ERRORS = 20
# Field paths and messages are cut to this many characters (a key may be a megabyte long).
_MAX_TEXT = 200


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


def _first_errors(exc: Any, limit: int | None) -> list[dict[str, Any]]:
    """The first ``limit`` errors of a pydantic ValidationError, cheaply.

    ``exc.errors()`` builds a Python dict per error: 96k unknown keys in a 1 MiB body cost
    70 MiB. Past the limit, the errors are read one by one off pydantic's compact JSON text
    (built in Rust, about 80 bytes an error) and the rest never become objects."""
    options: dict[str, bool] = {
        "include_url": False,
        "include_input": False,
        "include_context": False,
    }
    if limit is None or exc.error_count() <= limit:
        errors: list[dict[str, Any]] = exc.errors(**options)
        return errors[:limit]
    text = exc.json(**options)
    decoder = json.JSONDecoder()
    first: list[dict[str, Any]] = []
    position = text.index("[") + 1
    while len(first) < limit:
        item, position = decoder.raw_decode(text, position)
        first.append(item)
        position = text.index(",", position) + 1 if len(first) < limit else position
    return first


def field_errors(exc: Any, *, limit: int | None = None) -> list[dict[str, str]]:
    """A pydantic ValidationError as a list of {field, message}: the ``details`` of a 422.

    ``limit`` keeps the first that many (and never builds the others: see _first_errors)."""
    return [
        {
            "field": _cut(".".join(str(p) for p in err["loc"]) or "body"),
            "message": _cut(str(err["msg"])),
        }
        for err in _first_errors(exc, limit)
    ]


def validation_details(exc: Any) -> dict[str, Any]:
    """The ``details`` of a 422: the first MAX_FIELD_ERRORS field errors and their count."""
    count = exc.error_count()
    return {
        "fields": field_errors(exc, limit=MAX_FIELD_ERRORS),
        "error_count": count,
        "truncated": count > MAX_FIELD_ERRORS,
    }


# SQLite result codes (low byte of the extended code) meaning "another connection holds
# the lock": SQLITE_BUSY, SQLITE_LOCKED.
_SQLITE_BUSY_CODES = frozenset({5, 6})
# PostgreSQL SQLSTATE classes that mean "try again": 08 connection exception,
# 40 transaction rollback (serialization failure, deadlock), 53 insufficient resources,
# 57 operator intervention (admin shutdown, server restarting, query cancelled);
# and 55P03 lock_not_available.
_PG_RETRY_CLASSES = frozenset({"08", "40", "53", "57"})
_PG_RETRY_STATES = frozenset({"55P03"})


def database_failure(exc: BaseException) -> MarketError | None:
    """The one mapping from a database failure to a response: ServiceUnavailable for the
    transient ones (lock held past the busy timeout, connection dropped or refused,
    serialization failure), 422 for a number out of a column's range (the API bounds ids at
    the edge; this is the net under it), None for everything else (a bug: 500)."""
    from sqlalchemy import exc as sa_exc

    if not isinstance(exc, sa_exc.DBAPIError):
        return None
    orig = exc.orig
    if getattr(orig, "sqlstate", None) == "22003":  # numeric_value_out_of_range
        return ValidationFailed(
            "a number in the request is out of range", details={"fields": [], "error_count": 1}
        )
    if exc.connection_invalidated:
        return ServiceUnavailable(
            "the database connection was lost; retry the request", retry_after_s=2
        )
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int) and sqlite_code & 0xFF in _SQLITE_BUSY_CODES:
        return ServiceUnavailable("the database is busy; retry the request", retry_after_s=1)
    if isinstance(orig, Exception) and "database is locked" in str(orig):
        return ServiceUnavailable("the database is busy; retry the request", retry_after_s=1)
    sqlstate = getattr(orig, "sqlstate", None)
    if isinstance(sqlstate, str) and (
        sqlstate[:2] in _PG_RETRY_CLASSES or sqlstate in _PG_RETRY_STATES
    ):
        return ServiceUnavailable("the database is unavailable; retry the request", retry_after_s=2)
    if isinstance(exc, sa_exc.OperationalError) and sqlstate is None and sqlite_code is None:
        # psycopg reports a refused or broken connection without a SQLSTATE.
        return ServiceUnavailable("the database is unavailable; retry the request", retry_after_s=2)
    return None
