"""The one error handler: every failure becomes the JSON shape of docs/api.md or an HTML page.

JSON goes to API paths and to clients that prefer it; people get a page. Tracebacks are
logged, never shown. Database failures go through ``market.errors.database_failure``: the
transient ones (a lock held past the busy timeout, a dropped connection) become 503 with
Retry-After, so a client under load retries instead of reporting a bug.
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from market.errors import (
    MarketError,
    PayloadTooLarge,
    RateLimited,
    ServiceUnavailable,
    database_failure,
)

log = logging.getLogger(__name__)

API_PREFIX = "/api/"


def wants_json() -> bool:
    if request.path.startswith(API_PREFIX) or request.path == API_PREFIX.rstrip("/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return (
        best == "application/json"
        and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]
    )


def _http_code(exc: HTTPException) -> str:
    """A stable snake_case code from Werkzeug's exception name (NotFound -> not_found)."""
    name = (exc.name or "error").lower()
    return "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")


def render_error(*, status: int, code: str, message: str, details: dict | None = None) -> Response:
    if wants_json():
        body = {"error": {"code": code, "message": message, "details": details or {}}}
        response = jsonify(body)
    else:
        response = Response(
            render_template("error.html", status=status, code=code, message=message),
            mimetype="text/html",
        )
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="market"'
    return response


def _handle_market_error(exc: MarketError) -> Response:
    response = render_error(
        status=exc.status, code=exc.code, message=exc.message, details=exc.details
    )
    if isinstance(exc, ServiceUnavailable):
        g.retry_after_s = exc.retry_after_s
        response.headers["Retry-After"] = str(exc.retry_after_s)
    return response


def _keep_retry_after(response: Response) -> Response:
    """Flask-Limiter rewrites Retry-After on rate-limited routes (as its reset time, rounded
    down, often 0); a 503 keeps at least the wait the error asked for. Registered first, so
    it runs after every other after_request function."""
    wait = g.get("retry_after_s")
    if wait is not None:
        current = response.headers.get("Retry-After", "")
        response.headers["Retry-After"] = str(max(wait, int(current) if current.isdigit() else 0))
    return response


def _handle_database_error(exc: DBAPIError) -> Response:
    mapped = database_failure(exc)
    if mapped is None:
        return _handle_unexpected(exc)
    log.warning("database refused %s %s: %s", request.method, request.path, exc.orig)
    return _handle_market_error(mapped)


def _handle_http_exception(exc: HTTPException) -> Response:
    if exc.code == 429:
        return render_error(
            status=429,
            code=RateLimited.code,
            message="too many attempts; wait a minute and try again",
            details={"limit": str(exc.description)},
        )
    if isinstance(exc, CSRFError):
        return render_error(
            status=400,
            code="csrf_failed",
            message=f"the form could not be accepted: {exc.description} Reload the page and retry.",
        )
    if exc.code == 413:
        return render_error(
            status=413,
            code=PayloadTooLarge.code,
            message="the request body is too large",
            details={"limit_bytes": request.max_content_length},
        )
    if exc.response is not None and exc.code is None:
        return exc.response  # type: ignore[return-value]
    status = exc.code or 500
    message = exc.description or exc.name
    if status == 404:
        message = f"nothing at {request.path}"
    elif status == 405:
        message = f"{request.method} is not allowed on {request.path}"
    response = render_error(status=status, code=_http_code(exc), message=message)
    if status == 405 and exc.response is None:
        allowed = getattr(exc, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
    return response


def _handle_unexpected(exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return render_error(
        status=500, code="internal_error", message="something went wrong on our side"
    )


def init_app(app: Flask) -> None:
    app.register_error_handler(MarketError, _handle_market_error)
    app.register_error_handler(DBAPIError, _handle_database_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
    app.after_request(_keep_retry_after)
