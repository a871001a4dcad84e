"""What the shared services offer the domains, as small protocols (a leaf: imports no market
module).

``market.services.Services`` holds one of each, typed by these protocols only, so it depends
on no domain: the composition root (``market.create_services``) builds the concrete ones
(``market.jobs.Queue``, ``market.catalog.storage.CiphertextStore``,
``market.accounts.passwords.PasswordService``) and the domains register their tasks on the
queue through ``Services.on_queue``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from privacy.vault import Vault, WrappedKey


class StoredBlob(Protocol):
    """A complete, encrypted upload, as the blob store reports it."""

    @property
    def storage_name(self) -> str: ...
    @property
    def wrapped_key(self) -> WrappedKey: ...
    @property
    def rows(self) -> int: ...
    @property
    def ciphertext_bytes(self) -> int: ...


class BlobStore(Protocol):
    """Where datasets' ciphertext lives: files appear whole or not at all."""

    def path(self, storage_name: str) -> Path: ...

    def receive(
        self,
        *,
        dataset_id: str,
        vault: Vault,
        chunks: Iterator[bytes],
        validate: Callable[[Iterator[bytes]], int],
    ) -> StoredBlob: ...

    def delete(self, storage_name: str) -> None: ...

    def sweep_orphans(self, referenced: set[str], *, older_than_s: float = 3600) -> list[str]: ...


class PasswordHasher(Protocol):
    """Hashes and verifies passwords (argon2id in ``market.accounts.passwords``)."""

    def hash(self, password: str) -> str: ...
    def verify(self, stored_hash: str, password: str) -> bool: ...
    def verify_dummy(self, password: str) -> None: ...
    def needs_rehash(self, stored_hash: str) -> bool: ...


class TaskQueue(Protocol):
    """The task queue: domains register named tasks on it, services enqueue them by name."""

    @property
    def huey(self) -> Any: ...

    def task(self, name: str) -> Callable[[Callable[..., None]], Any]: ...

    def periodic_task(self, schedule: Any, name: str) -> Callable[[Callable[[], None]], Any]: ...

    def enqueue(self, name: str, *args: Any, eta: datetime | None = None) -> None: ...

    def enqueue_run(self, run_id: str, *, eta: datetime | None = None) -> None: ...

    def consumer(self, *, workers: int | None = None) -> Any: ...
