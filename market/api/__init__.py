"""The JSON API under /api/v1: bearer authentication, request validation, OpenAPI.

Each domain declares its endpoints on an ``APIBlueprint`` (flask-openapi3) with pydantic
models, so the models that validate a request are the ones the OpenAPI document shows. This
package holds what they share and registers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, jsonify, request
from flask_openapi3 import OpenAPI
from pydantic import ValidationError

from market.errors import InvalidJson, ValidationFailed, field_errors

API_V1 = "/api/v1"
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from POST /api/v1/tokens, sent as `Authorization: Bearer <token>`.",
    }
}


def validation_error_response(exc: ValidationError) -> Response:
    """flask-openapi3's hook: a request that fails its pydantic model gets the error shape."""
    fields = field_errors(exc)
    if any(f["field"] == "body" for f in fields) or (
        request.method in {"POST", "PUT", "PATCH"} and not request.is_json and request.data == b""
    ):
        message = "the request body must be a JSON object (Content-Type: application/json)"
    else:
        message = "the request is not valid: " + "; ".join(
            f"{f['field']}: {f['message']}" for f in fields[:5]
        )
    error = ValidationFailed(message, details={"fields": fields})
    response = jsonify(error.to_dict())
    response.status_code = error.status
    return response


F = TypeVar("F", bound=Callable[..., Any])


def raw_body(view: F) -> F:
    """Mark an endpoint whose body is a file stream: never parse or buffer it as JSON."""
    view.raw_body = True  # type: ignore[attr-defined]
    return view


def _reject_malformed_json() -> None:
    """Say "invalid JSON" instead of a confusing validation error for an unparsable body."""
    view = current_app.view_functions.get(request.endpoint or "")
    if getattr(view, "raw_body", False):
        return
    if request.method in {"POST", "PUT", "PATCH"} and request.is_json and request.content_length:
        try:
            request.get_json()
        except Exception as exc:  # Werkzeug raises BadRequest with a parser message
            raise InvalidJson("the request body is not valid JSON") from exc


def init_app(app: Flask) -> None:
    from market.accounts.api import api as accounts_api
    from market.catalog.api import api as catalog_api
    from market.trading.api import api as trading_api
    from market.trading.ledger_api import api as ledger_api

    app.before_request(_reject_malformed_json)
    assert isinstance(app, OpenAPI)
    app.register_api(accounts_api)
    app.register_api(catalog_api)
    app.register_api(trading_api)
    app.register_api(ledger_api)
    from market.audit import init_app as init_audit

    init_audit(app)
