"""Cookie flags, security headers, CSRF, login sessions and the login rate limit."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, Response, current_app, g, request

from market.config import Settings
from market.extensions import csrf, limiter, login_manager

# Swagger UI (served from local files under /api/swagger) needs inline script and styles.
_DOCS_PREFIX = "/api/swagger"
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
_CSP_DOCS = _CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'").replace(
    "script-src 'self'", "script-src 'self' 'unsafe-inline'"
)


def login_rate_limit() -> str:
    """The configured limit on failed logins (read per request so tests can change it)."""
    settings: Settings = current_app.extensions["market"].settings
    return settings.ratelimit.login


def mark_login_failed() -> None:
    """Tell the limiter that this request was a failed login, so it counts."""
    g.login_failed = True


def login_failed(_response: Response) -> bool:
    return bool(g.get("login_failed", False))


def _security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault(
        "Content-Security-Policy", _CSP_DOCS if request.path.startswith(_DOCS_PREFIX) else _CSP
    )
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
    if current_app.config["SESSION_COOKIE_SECURE"]:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if request.path.startswith("/api/") or request.endpoint in {
        "accounts.login",
        "accounts.account",
    }:
        headers.setdefault("Cache-Control", "no-store")
    return response


def init_app(app: Flask, settings: Settings) -> None:
    secure = settings.security.secure_cookies or settings.is_production
    app.config.update(
        SESSION_COOKIE_NAME="market_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=secure,
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=secure,
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.security.session_ttl_hours),
        WTF_CSRF_TIME_LIMIT=settings.security.session_ttl_hours * 3600,
        RATELIMIT_STORAGE_URI=settings.ratelimit.storage_uri,
    )
    csrf.init_app(app)
    limiter.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "accounts.login"
    login_manager.login_message = "Please sign in to see that page."
    # "strong": a session cookie replayed from another address or browser is dropped.
    login_manager.session_protection = "strong"
    app.after_request(_security_headers)
