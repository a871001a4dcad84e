"""Trading: quotes, purchases with an atomic budget reservation, runs and their delivery.

``market.trading.budget`` owns every read of a dataset's composed epsilon; the catalog shows
a dataset's budget through the provider registered here (the catalog imports no trading).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from market.services import Services


def init_services(services: Services) -> None:
    """What trading adds to any process (web or worker): the run and reaper tasks on the
    queue, and the budget the catalog shows."""
    from market.catalog.services import provide_budget
    from market.trading.budget import budget_of, budgets_of
    from market.trading.tasks import register_tasks

    services.on_queue(register_tasks)
    provide_budget(budget_of, budgets_of)


def init_app(app: Flask) -> None:
    """The quote and run pages, /api/v1/quotes and /runs, the ledgers' API."""
    from market.api import register_api
    from market.trading.api import api
    from market.trading.ledger_api import api as ledger_api
    from market.trading.views import init_views

    init_views(app)
    register_api(app, api, ledger_api)
