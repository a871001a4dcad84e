"""Catalog: listings, encrypted uploads, search and dataset pages."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """The catalog and dataset pages, /api/v1/datasets."""
    from market.api import register_api
    from market.catalog.api import api
    from market.catalog.views import bp

    app.register_blueprint(bp)
    register_api(app, api)
