"""Response models shared by every API endpoint (documented in the OpenAPI document)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable snake_case code, e.g. `budget_exceeded`.")
    message: str = Field(description="One readable sentence.")
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """The shape of every 4xx and 5xx body."""

    error: ErrorDetail


COMMON_ERRORS: dict[str | int | HTTPStatus, type[BaseModel] | dict[Any, Any] | None] = {
    401: ErrorBody,
    403: ErrorBody,
    404: ErrorBody,
}
