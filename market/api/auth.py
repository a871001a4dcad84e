"""Who is calling the API: a bearer token, checked on every request.

The API accepts only bearer tokens, never the web session cookie, which is why its
endpoints are exempt from CSRF protection: a cross-site form cannot attach a bearer token.

``api_login_required`` marks a view with the roles it needs; market.api.guard reads the
mark and authenticates *before* flask-openapi3 reads or validates anything of the request,
so an anonymous caller cannot make the server parse a body.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from market.accounts import services as accounts
from market.accounts.models import Role, User
from market.db import retry_read_on_disconnect, utcnow
from market.errors import AuthenticationRequired
from market.services import services

F = TypeVar("F", bound=Callable[..., Any])

# The attribute api_login_required sets on a view: the roles it needs (empty: any user).
ROLES_ATTR = "api_roles"

# last_used_at is refreshed at most this often: a write per request would serialise reads.
_TOUCH_INTERVAL = timedelta(minutes=1)


def _bearer_secret() -> str:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationRequired(
            "sign in: send `Authorization: Bearer <token>` (POST /api/v1/tokens issues one)"
        )
    return secret.strip()


def _authenticate() -> User:
    secret = _bearer_secret()
    database = services().database
    now = utcnow()
    with database.read() as session:
        user, token = accounts.resolve_token(session, secret, now=now)
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_INTERVAL:
        with database.write() as session:
            accounts.touch_token(session, token_id=token.id or 0, now=now)
    return user


def authenticate_request() -> User:
    """The token's user. Idempotent (the one write sets last_used_at), so a connection lost
    on the way is retried once whatever the request's method."""
    return retry_read_on_disconnect(_authenticate)


def authorize(roles: tuple[Role, ...]) -> User:
    """Authenticate this request once (cached on ``g``) and require one of ``roles``."""
    user: User | None = g.get("api_user")
    if user is None:
        user = authenticate_request()
        g.api_user = user
    if roles:
        accounts.require_role(user, *roles)
    return user


def api_login_required(*roles: Role) -> Callable[[F], F]:
    """Authenticate the bearer token and, if roles are given, require one of them."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authorize(roles)
            return view(*args, **kwargs)

        setattr(wrapper, ROLES_ATTR, roles)
        return wrapper  # type: ignore[return-value]

    return decorate


def caller() -> User:
    """The authenticated user of this API request."""
    user: User = g.api_user
    return user
