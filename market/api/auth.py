"""Who is calling the API: a bearer token, checked on every request.

The API accepts only bearer tokens, never the web session cookie, which is why its
endpoints are exempt from CSRF protection: a cross-site form cannot attach a bearer token.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import g, request

from market.accounts import services as accounts
from market.accounts.models import Role, User
from market.db import utcnow
from market.errors import AuthenticationRequired
from market.services import services

F = TypeVar("F", bound=Callable[..., Any])

# last_used_at is refreshed at most this often: a write per request would serialise reads.
_TOUCH_INTERVAL = timedelta(minutes=1)


def _bearer_secret() -> str:
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationRequired(
            "sign in: send `Authorization: Bearer <token>` (POST /api/v1/tokens issues one)"
        )
    return secret.strip()


def authenticate_request() -> User:
    secret = _bearer_secret()
    database = services().database
    now = utcnow()
    with database.read() as session:
        user, token = accounts.resolve_token(session, secret, now=now)
    if token.last_used_at is None or now - token.last_used_at > _TOUCH_INTERVAL:
        with database.write() as session:
            accounts.touch_token(session, token_id=token.id or 0, now=now)
    return user


def api_login_required(*roles: Role) -> Callable[[F], F]:
    """Authenticate the bearer token and, if roles are given, require one of them."""

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = authenticate_request()
            if roles:
                accounts.require_role(user, *roles)
            g.api_user = user
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def caller() -> User:
    """The authenticated user of this API request."""
    user: User = g.api_user
    return user
