"""Accounts: people, their roles, sign-up, password sign-in, resets by mail, API tokens and
the admin pages.

Web sessions are signed cookies that also carry the account's ``session_generation`` at
sign-in. Every request compares it with the row: sign-out, a password change, suspension and
a role change raise the row's generation, so a cookie issued before (a copy included) is
refused at once instead of living on until it expires.
"""

from __future__ import annotations

from flask import Flask, session

from market.accounts.sessions import SESSION_GENERATION_KEY
from market.extensions import login_manager

__all__ = ["SESSION_GENERATION_KEY", "init_app"]


def init_app(app: Flask) -> None:
    """The session user loader, the mail backend, the account and admin pages, and the
    accounts API."""
    from market.accounts.admin_views import admin_bp
    from market.accounts.api import api
    from market.accounts.mail import MAIL_EXTENSION_KEY, mailer_for
    from market.accounts.models import User
    from market.accounts.views import bp
    from market.api import register_api
    from market.services import services

    settings = app.extensions["market"].settings
    app.extensions[MAIL_EXTENSION_KEY] = mailer_for(settings.mail, settings.outbox_dir)

    @login_manager.user_loader
    def _load_user(user_id: str) -> User | None:
        if not user_id.isdigit():
            return None
        with services().database.read() as db:
            user = db.get(User, int(user_id))
        if user is None or not user.is_active or not user.is_approved:
            return None
        if session.get(SESSION_GENERATION_KEY) != user.session_generation:
            return None  # ended by a sign-out, password or role change, or suspension
        return user

    app.register_blueprint(bp)
    app.register_blueprint(admin_bp)
    register_api(app, api)
