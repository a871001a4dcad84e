"""The collaborators a request needs, built once per application from Settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from flask import current_app

from market.accounts.passwords import PasswordService
from market.catalog.storage import CiphertextStore
from market.config import Settings
from market.db import Database, make_engine
from market.errors import ConfigurationError
from market.jobs import Queue
from privacy.errors import VaultError
from privacy.vault import Keyring, Vault

EXTENSION_KEY = "market"


@dataclass(frozen=True)
class Services:
    """Everything a view hands to the service functions it calls."""

    settings: Settings
    database: Database
    passwords: PasswordService

    @cached_property
    def vault(self) -> Vault:
        """Public keys only: this process can encrypt uploads but never decrypt a dataset."""
        try:
            keyring = Keyring.load(self.settings.key_dir, private=False)
        except VaultError as exc:
            raise ConfigurationError(
                f"no usable keys in {self.settings.key_dir}: run `market init` ({exc})"
            ) from exc
        return Vault(keyring, segment_size=self.settings.vault.segment_size)

    @cached_property
    def worker_vault(self) -> Vault:
        """Private keys: only worker processes ask for this (``market worker``)."""
        keyring = Keyring.load(
            self.settings.key_dir, private=True, min_version=self.settings.vault.min_key_version
        )
        return Vault(keyring, segment_size=self.settings.vault.segment_size)

    @cached_property
    def queue(self) -> Queue:
        return Queue(self.settings, services_factory=lambda: self)

    @cached_property
    def store(self) -> CiphertextStore:
        return CiphertextStore(self.settings.storage_dir)

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
