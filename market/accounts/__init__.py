"""Accounts: people, their roles, password sign-in and API tokens."""

from __future__ import annotations

from flask import Flask

from market.extensions import login_manager


def init_app(app: Flask) -> None:
    from market.accounts.models import User
    from market.accounts.views import bp
    from market.services import services

    @login_manager.user_loader
    def _load_user(user_id: str) -> User | None:
        if not user_id.isdigit():
            return None
        with services().database.read() as session:
            user = session.get(User, int(user_id))
        return user if user is not None and user.is_active else None

    app.register_blueprint(bp)
