"""The collaborators a request needs, built once per application from Settings.

``Services`` depends on no domain: the queue, the blob store and the password hasher are
typed by the protocols of ``market.interfaces`` and handed in by the composition root
(``market.create_services``); each domain registers its queue tasks with ``on_queue``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from flask import current_app

from market.config import Settings
from market.db import Database, make_engine
from market.errors import ConfigurationError
from market.interfaces import BlobStore, PasswordHasher, TaskQueue
from privacy.errors import VaultError
from privacy.prepared import PreparedTables
from privacy.vault import Keyring, Vault

EXTENSION_KEY = "market"

#: A domain's registration of its tasks on a newly built queue (``Services.on_queue``).
QueueHook = Callable[[TaskQueue, "Services"], None]


@dataclass(frozen=True)
class Services:
    """Everything a view hands to the service functions it calls."""

    settings: Settings
    database: Database
    passwords: PasswordHasher
    store: BlobStore
    #: Builds the (empty) queue for these settings; the hooks then register their tasks.
    queue_factory: Callable[[Settings], TaskQueue]
    queue_hooks: list[QueueHook] = field(default_factory=list)

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
    def prepared_tables(self) -> PreparedTables:
        """Tables this worker process decoded, kept in memory for the dataset's next run."""
        trading = self.settings.trading
        return PreparedTables(
            max_bytes=trading.prepared_cache_mb << 20, ttl_s=trading.prepared_cache_ttl_s
        )

    @cached_property
    def queue(self) -> TaskQueue:
        """Built on first use (opening the queue's storage), with every hook's tasks."""
        queue = self.queue_factory(self.settings)
        for hook in self.queue_hooks:
            hook(queue, self)
        return queue

    def on_queue(self, hook: QueueHook) -> None:
        """Have ``hook`` register its tasks on the queue (now, if it is built already)."""
        if hook in self.queue_hooks:
            return
        self.queue_hooks.append(hook)
        if "queue" in self.__dict__:
            hook(self.__dict__["queue"], self)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        passwords: PasswordHasher,
        store: BlobStore,
        queue_factory: Callable[[Settings], TaskQueue],
    ) -> Services:
        """The services of ``settings``, with the given components (``market.create_services``
        supplies the real ones)."""
        engine = make_engine(
            settings.database_url,
            sqlite_busy_timeout_ms=settings.database.sqlite_busy_timeout_ms,
        )
        return cls(
            settings=settings,
            database=Database(engine),
            passwords=passwords,
            store=store,
            queue_factory=queue_factory,
        )


def services() -> Services:
    """The current application's services (inside a request or app context)."""
    found: Services = current_app.extensions[EXTENSION_KEY]
    return found
