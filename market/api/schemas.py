"""Response models and parameter bounds shared by every API endpoint (and the OpenAPI document).

Every error the API can answer is declared here once, in COMMON_ERRORS, which each
blueprint passes as ``abp_responses``: the document then shows the real error body (the one
shape of market.errors) for every status a request may get, instead of flask-openapi3's
default list-of-errors 422.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field

# Integers that never reach the database (page sizes) are bounded to signed 64 bits.
INT64_MAX = 2**63 - 1
# Ids, sequence numbers and tree sizes are INTEGER columns: 64-bit in SQLite but 32-bit in
# PostgreSQL, where a larger parameter is an "integer out of range" error, not "no row". So
# a path or query number compared with such a column is bounded to this (422 naming the
# field), which no stored value can exceed in either database.
ID_MAX = 2**31 - 1


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable snake_case code, e.g. `budget_exceeded`.")
    message: str = Field(description="One readable sentence.")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """The shape of every 4xx and 5xx body."""

    error: ErrorDetail


_ERROR_JSON = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def _error(description: str, **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": _ERROR_JSON, **extra}


COMMON_ERRORS: dict[str | int | HTTPStatus, type[BaseModel] | dict[Any, Any] | None] = {
    400: _error("`invalid_json`: the body is not UTF-8 JSON (or another malformed request)."),
    401: ErrorBody,
    403: ErrorBody,
    404: ErrorBody,
    413: _error("`payload_too_large`: the body is over `app.max_json_bytes` (uploads: larger)."),
    415: _error("`unsupported_media_type`: a body that is not `application/json`."),
    422: _error(
        "`validation_error`: `details.fields` lists the first 20 field errors "
        "(`{field, message}`), `details.error_count` how many there were."
    ),
    503: _error(
        "`service_unavailable`: the database is busy or was unreachable; retry after the "
        "Retry-After header's seconds.",
        headers={
            "Retry-After": {
                "description": "Seconds to wait before retrying.",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    ),
}
