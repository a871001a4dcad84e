"""The JSON API under /api/v1: bearer authentication, request validation, OpenAPI.

Each domain declares its endpoints on an ``APIBlueprint`` (flask-openapi3) with pydantic
models, so the models that validate a request are the ones the OpenAPI document shows, and
registers it from its own ``init_app`` with ``register_api``. This package holds what they
share and imports no domain; market.api.guard authenticates and bounds every request before
flask-openapi3 looks at it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, Response, jsonify
from flask_openapi3 import APIBlueprint, OpenAPI
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
#: How pydantic words an error raised by a model's own validator.
_RULE = "Value error, "


def validation_error_response(exc: ValidationError) -> Response:
    """flask-openapi3's hook: a request that fails its pydantic model gets the error shape,
    with at most MAX_FIELD_ERRORS fields listed (market.errors.validation_details)."""
    details = validation_details(exc)
    fields = details["fields"]
    # A rule on the whole object (a model validator: "Value error, ...") names no field; any
    # other error on the body itself means it was not an object of the expected shape.
    if any(f["field"] == "body" and not f["message"].startswith(_RULE) for f in fields):
        message = "the request body must be a JSON object (Content-Type: application/json)"
    else:
        message = "the request is not valid: " + "; ".join(
            f["message"].removeprefix(_RULE)
            if f["field"] == "body"
            else f"{f['field']}: {f['message']}"
            for f in fields[:5]
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
    """What every API blueprint shares: the guard and the error model. Call it before the
    domains register their blueprints (``register_api``)."""
    from market.api.guard import guard_api_request
    from market.api.schemas import ErrorBody

    app.before_request(guard_api_request)
    assert isinstance(app, OpenAPI)
    # The document's components hold the real error body, not flask-openapi3's default.
    app.validation_error_model = ErrorBody


def register_api(app: Flask, *blueprints: APIBlueprint) -> None:
    """Register a domain's API blueprints (each domain's ``init_app`` calls this): their
    operations join the OpenAPI document, their GET endpoints are retried once on a lost
    database connection."""
    assert isinstance(app, OpenAPI)
    for blueprint in blueprints:
        app.register_api(blueprint)
    _retry_reads(app, {blueprint.name for blueprint in blueprints})
