"""Monthly statements: every account's exact accrued charges and credits (runs' measured
terms, royalties, shared-model sales), rounded once per month (docs/costs.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def init_app(app: Flask) -> None:
    """The statements page and /api/v1/statements."""
    from market.api import register_api
    from market.statements.api import api
    from market.statements.views import init_views

    init_views(app)
    register_api(app, api)
