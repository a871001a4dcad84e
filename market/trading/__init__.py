"""Trading: quotes, purchases with an atomic budget reservation, runs and their delivery."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """The trading pages (the JSON API registers itself in market.api)."""
    from market.trading.views import init_views

    init_views(app)
