"""The JSON API under /api/v1: bearer authentication, request validation, OpenAPI.

Each domain declares its endpoints on an ``APIBlueprint`` (flask-openapi3) with pydantic
models, so the models that validate a request are the ones the OpenAPI document shows. This
package holds what they share and registers them; market.api.guard authenticates and bounds
every request before flask-openapi3 looks at it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Response, jsonify
from flask_openapi3 import OpenAPI
from pydantic import ValidationError

from market.db import retry_read_on_disconnect
from market.errors import ValidationFailed, validation_details

API_V1 = "/api/v1"
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
SECURITY_SCHEMES = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from POST /api/v1/tokens, sent as `Authorization: Bearer <token>`.",
    }
}
_READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def validation_error_response(exc: ValidationError) -> Response:
    """flask-openapi3's hook: a request that fails its pydantic model gets the error shape,
    with at most MAX_FIELD_ERRORS fields listed (market.errors.validation_details)."""
    details = validation_details(exc)
    fields = details["fields"]
    if any(f["field"] == "body" for f in fields):
        message = "the request body must be a JSON object (Content-Type: application/json)"
    else:
        message = "the request is not valid: " + "; ".join(
            f"{f['field']}: {f['message']}" for f in fields[:5]
        )
        if details["error_count"] > 5:
            message += f" (and {details['error_count'] - 5} more)"
    error = ValidationFailed(message, details=details)
    response = jsonify(error.to_dict())
    response.status_code = error.status
    return response


F = TypeVar("F", bound=Callable[..., Any])


def raw_body(view: F) -> F:
    """Mark an endpoint whose body is a file stream: never parse or buffer it as JSON."""
    view.raw_body = True  # type: ignore[attr-defined]
    return view


def _retrying(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def read(*args: Any, **kwargs: Any) -> Any:
        return retry_read_on_disconnect(lambda: view(*args, **kwargs))

    return read


def _retry_reads(app: Flask, blueprints: set[str]) -> None:
    """GET endpoints only read, so a connection lost under one is retried once."""
    for rule in app.url_map.iter_rules():
        if rule.endpoint.partition(".")[0] not in blueprints:
            continue
        if rule.methods and set(rule.methods) <= _READ_ONLY_METHODS:
            app.view_functions[rule.endpoint] = _retrying(app.view_functions[rule.endpoint])


def init_app(app: Flask) -> None:
    from market.accounts.api import api as accounts_api
    from market.api.guard import guard_api_request
    from market.api.schemas import ErrorBody
    from market.audit.api import api as audit_api
    from market.catalog.api import api as catalog_api
    from market.trading.api import api as trading_api
    from market.trading.ledger_api import api as ledger_api

    app.before_request(guard_api_request)
    assert isinstance(app, OpenAPI)
    # The document's components hold the real error body, not flask-openapi3's default.
    app.validation_error_model = ErrorBody
    blueprints = [accounts_api, catalog_api, trading_api, ledger_api, audit_api]
    for blueprint in blueprints[:-1]:
        app.register_api(blueprint)
    from market.audit import init_app as init_audit

    init_audit(app)
    _retry_reads(app, {bp.name for bp in blueprints})
