"""The marketplace application: ``create_app`` builds it from settings.

Each domain package registers itself with ``init_app(app)``; extensions are created without
an app (market.extensions) and attached here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask_openapi3 import Info, OpenAPI

from market.config import Settings, load_settings

__version__ = "0.1.0"


def create_app(config: Settings | Mapping[str, Any] | None = None) -> OpenAPI:
    """Build the application.

    ``config`` is a ready Settings object, or a nested mapping of overrides applied on top of
    config/default.toml, config/local.toml and MARKET_* variables (tests use this).
    """
    from market import (
        accounts,
        api,
        catalog,
        handlers,
        ledgers_web,
        ops,
        security,
        trading,
        web,
    )
    from market.api import SECURITY_SCHEMES, validation_error_response
    from market.services import EXTENSION_KEY, Services

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
    app.extensions[EXTENSION_KEY] = Services.from_settings(settings)

    handlers.init_app(app)
    ops.init_app(app)
    security.init_app(app, settings)
    web.init_app(app)
    accounts.init_app(app)
    catalog.init_app(app)
    trading.init_app(app)
    ledgers_web.init_app(app)
    api.init_app(app)
    return app
