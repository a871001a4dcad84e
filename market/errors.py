"""One exception hierarchy for the marketplace, rendered by one handler (market.web.errors).

Services raise these; they never raise HTTP exceptions. Each class carries a stable
snake_case ``code`` (part of the public contract, ../shared/API.md) and the HTTP status the
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
"""

from __future__ import annotations

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
        """The JSON error shape of ../shared/API.md."""
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


def field_errors(exc: Any) -> list[dict[str, str]]:
    """A pydantic ValidationError as a list of {field, message}: the ``details`` of a 422."""
    return [
        {"field": ".".join(str(p) for p in err["loc"]) or "body", "message": err["msg"]}
        for err in exc.errors(include_url=False, include_input=False)
    ]
