"""What every JSON API request goes through before its view: who, how big, then parse.

Why a ``before_request`` hook: flask-openapi3 validates a request in the view function it
registers, *outside* the view's own decorators, so it used to read and parse a body (up to
the 1 GiB upload limit) and build a pydantic error per unknown key before the caller was
even authenticated: 18 MB of small keys cost 12 s and 500 MB for an anonymous request.
Here, in this order:

1. authenticate the bearer token and check the role (views marked by api_login_required);
2. refuse a body over ``app.max_json_bytes``: from Content-Length before reading, and while
   reading for a chunked body that has none (Werkzeug's limited stream), 413;
3. parse it: UTF-8 (else 400 ``invalid_json``), valid JSON (else 400), an object (else 422);
   NaN/Infinity, numbers over Python's digit limit and nesting past the recursion limit are
   invalid JSON too, never a 500.

The parsed object is left in Werkzeug's JSON cache, so flask-openapi3 validates it without
parsing again. Upload endpoints (``raw_body``) stream their body themselves and skip 2-3.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from flask import current_app, request

from market.api.auth import ROLES_ATTR, authorize
from market.errors import InvalidJson, PayloadTooLarge, UnsupportedMediaType, ValidationFailed

API_PATH = "/api/"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"a JSON request body may be at most {limit} bytes", details={"limit_bytes": limit}
    )


def _has_body() -> bool:
    if request.content_length:
        return True
    return "chunked" in request.headers.get("Transfer-Encoding", "").lower()


def _parse(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(
            "the request body is not UTF-8", details={"position": exc.start}
        ) from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            f"the request body is not valid JSON: {exc.msg}",
            details={"line": exc.lineno, "column": exc.colno},
        ) from None
    except (ValueError, RecursionError) as exc:  # digit limit, NaN, nesting depth
        raise InvalidJson(f"the request body is not valid JSON: {str(exc)[:200]}") from None


def read_json_body(limit: int) -> None:
    """Steps 2 and 3 for the current request; the result goes to Werkzeug's JSON cache."""
    # Werkzeug's limited stream stops at max_content_length without saying whether more
    # was coming; one byte more tells a body of exactly `limit` bytes from a longer one.
    request.max_content_length = limit + 1
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit)
    if request.method not in _BODY_METHODS or not _has_body():
        return
    if not request.is_json:
        raise UnsupportedMediaType(
            "send the request body as JSON with `Content-Type: application/json`",
            details={"content_type": (request.content_type or "")[:100]},
        )
    data = request.get_data(cache=True)  # at most limit + 1 bytes, chunked bodies too
    if len(data) > limit:
        raise _too_large(limit)
    value = _parse(data)
    if not isinstance(value, dict):
        raise ValidationFailed(
            "the request body must be a JSON object",
            details={
                "fields": [{"field": "body", "message": f"got a JSON {type(value).__name__}"}],
                "error_count": 1,
                "truncated": False,
            },
        )
    # Werkzeug's cache of get_json() (normal, silent): flask-openapi3 reads it from there.
    request._cached_json = (value, value)


def guard_api_request() -> None:
    """The before_request hook for /api/ paths (see the module docstring)."""
    if not request.path.startswith(API_PATH) or request.routing_exception is not None:
        return
    view = current_app.view_functions.get(request.endpoint or "")
    if view is None:
        return
    roles = getattr(view, ROLES_ATTR, None)
    if roles is not None:
        authorize(roles)
    if getattr(view, "raw_body", False):
        return
    read_json_body(current_app.extensions["market"].settings.app.max_json_bytes)
