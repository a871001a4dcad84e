"""The marketplace application: ``create_app`` builds it from settings.

This module is the composition root. ``create_services`` builds the shared services
(market.services) from their real components and lets each domain with queue tasks register
them (``init_services``); ``create_app`` attaches those services to a Flask application and
lets each domain package register its pages and API blueprints (``init_app(app)``).
Extensions are created without an app (market.extensions) and attached here. Nothing below
imports this module's functions back, so the import graph of market/ has no cycle
(tests/unit/test_import_graph.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from flask_openapi3 import Info, OpenAPI

from market.config import Settings, load_settings

if TYPE_CHECKING:
    from market.services import Services

__version__ = "0.1.0"


def create_services(settings: Settings) -> Services:
    """The shared services with their real components and every domain's registrations
    (queue tasks, the catalog's budget provider): what ``market worker`` and the CLI use, and
    what ``create_app`` attaches to the application."""
    from market import ops, trading
    from market.accounts.passwords import PasswordService
    from market.catalog.storage import CiphertextStore
    from market.jobs import Queue
    from market.services import Services

    services = Services.from_settings(
        settings,
        passwords=PasswordService(settings.security),
        store=CiphertextStore(settings.storage_dir),
        queue_factory=Queue,
    )
    for domain in (trading, ops):
        domain.init_services(services)
    return services


def create_app(config: Settings | Mapping[str, Any] | None = None) -> OpenAPI:
    """Build the application.

    ``config`` is a ready Settings object, or a nested mapping of overrides applied on top of
    config/default.toml, config/local.toml and MARKET_* variables (tests use this).
    """
    from market import (
        accounts,
        api,
        audit,
        catalog,
        handlers,
        ledgers_web,
        ops,
        security,
        sharing,
        statements,
        trading,
        web,
    )
    from market.api import SECURITY_SCHEMES, validation_error_response
    from market.services import EXTENSION_KEY

    settings = config if isinstance(config, Settings) else load_settings(overrides=config)
    app = OpenAPI(
        __name__,
        info=Info(
            title="Private data marketplace API",
            version=__version__,
            description="Buy differentially private training runs on data you never see.",
        ),
        security_schemes=SECURITY_SCHEMES,  # type: ignore[arg-type]
        doc_prefix="/api",
        doc_url="/openapi.json",
        validation_error_status=422,
        validation_error_callback=validation_error_response,
        template_folder="web/templates",
        static_folder="web/static",
    )
    app.config.update(
        SECRET_KEY=settings.secret_key(),
        MAX_CONTENT_LENGTH=settings.app.max_content_length,
        JSON_SORT_KEYS=False,
    )
    app.extensions[EXTENSION_KEY] = create_services(settings)

    handlers.init_app(app)
    ops.init_app(app)
    security.init_app(app, settings)
    web.init_app(app)
    api.init_app(app)  # the guard and error model every domain's API blueprint shares
    # Each domain registers its own pages and API blueprints (the OpenAPI document lists
    # their operations in this order).
    accounts.init_app(app)
    catalog.init_app(app)
    trading.init_app(app)
    sharing.init_app(app)
    statements.init_app(app)
    ledgers_web.init_app(app)
    audit.init_app(app)
    return app
