"""The collaborators a request needs, built once per application from Settings."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from market.accounts.passwords import PasswordService
from market.config import Settings
from market.db import Database, make_engine

EXTENSION_KEY = "market"


@dataclass(frozen=True)
class Services:
    """Everything a view hands to the service functions it calls."""

    settings: Settings
    database: Database
    passwords: PasswordService

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        engine = make_engine(
            settings.database_url,
            sqlite_busy_timeout_ms=settings.database.sqlite_busy_timeout_ms,
        )
        return cls(
            settings=settings,
            database=Database(engine),
            passwords=PasswordService(settings.security),
        )


def services() -> Services:
    """The current application's services (inside a request or app context)."""
    found: Services = current_app.extensions[EXTENSION_KEY]
    return found
