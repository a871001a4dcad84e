"""Periodic maintenance tasks of the queue (registered on it by ``market.ops.init_services``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from huey import Huey, crontab

from market.config import Settings
from market.interfaces import TaskQueue
from market.services import Services


def register_tasks(queue: TaskQueue, services: Services) -> None:
    """The ops tasks on ``queue`` (a ``Services.on_queue`` hook)."""
    register_periodic_tasks(queue.huey, services.settings, lambda: services)


def register_periodic_tasks(
    huey: Huey, settings: Settings, services_factory: Callable[[], Any]
) -> None:
    """Every ``ops.sweep_every_minutes``: remove orphaned ciphertext (a crashed upload's
    ``.partial``, a file whose listing never committed) older than ``ops.partial_max_age_s``."""

    @huey.periodic_task(
        crontab(minute=f"*/{settings.ops.sweep_every_minutes}"), name="sweep_orphans"
    )
    def sweep_orphans() -> None:
        from market.ops.files import sweep_orphans as sweep

        sweep(services_factory(), older_than_s=settings.ops.partial_max_age_s)
