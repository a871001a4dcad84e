"""Catalog: listings, encrypted uploads, search and dataset pages."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from market.catalog.views import bp

    app.register_blueprint(bp)
