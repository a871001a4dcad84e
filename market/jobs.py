"""The task queue (Huey): SQLite in the instance folder by default, Redis by one setting.

Messages are JSON, not Huey's default pickle: a queue is shared infrastructure, and whoever
can write to it must not be able to run code in the worker by writing a pickle.
Results are not stored: a run's outcome lives in its database row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from huey import Huey, RedisHuey, SqliteHuey
from huey.registry import Message
from huey.serializer import Serializer

from market.config import Settings

log = logging.getLogger(__name__)


class JsonSerializer(Serializer):
    """Huey messages as JSON (datetimes as ISO strings); anything else is refused."""

    _DATETIMES = ("eta", "expires_resolved")

    def _serialize(self, data: Any) -> bytes:
        if not isinstance(data, Message):
            return json.dumps({"value": data}).encode()
        fields = data._asdict()
        for name in self._DATETIMES:
            if isinstance(fields.get(name), datetime):
                fields[name] = fields[name].isoformat()
        if fields.get("on_complete") or fields.get("on_error"):
            raise TypeError("pipelines are not used by the marketplace")
        fields["args"] = list(fields["args"] or ())
        return json.dumps({"message": fields}).encode()

    def _deserialize(self, data: bytes) -> Any:
        payload = json.loads(data)
        if "message" not in payload:
            return payload["value"]
        fields = payload["message"]
        for name in self._DATETIMES:
            if isinstance(fields.get(name), str):
                fields[name] = datetime.fromisoformat(fields[name])
        fields["args"] = tuple(fields["args"])
        return Message(**fields)


def make_huey(settings: Settings) -> Huey:
    options: dict[str, Any] = {"results": False, "serializer": JsonSerializer(), "utc": True}
    if settings.queue.backend == "redis":
        return RedisHuey("market", url=settings.queue.redis_url, **options)
    settings.home.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("market", filename=str(settings.queue_file), **options)


class Queue:
    """One Huey instance and the tasks the domains register on it (``market.interfaces.
    TaskQueue``): trading's ``train_run`` and reaper, ops' orphan sweep. The queue itself
    knows no domain; services enqueue a task by its name."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.huey = make_huey(settings)
        self._tasks: dict[str, Any] = {}

    def task(self, name: str) -> Callable[[Callable[..., None]], Any]:
        """Register a function as the task ``name`` (its arguments travel as JSON)."""

        def register(function: Callable[..., None]) -> Any:
            task = self.huey.task(name=name)(function)
            self._tasks[name] = task
            return task

        return register

    def periodic_task(self, schedule: Any, name: str) -> Callable[[Callable[[], None]], Any]:
        """Register a function run on ``schedule`` (a ``huey.crontab``) by the consumer."""

        def register(function: Callable[[], None]) -> Any:
            task = self.huey.periodic_task(schedule, name=name)(function)
            self._tasks[name] = task
            return task

        return register

    def enqueue(self, name: str, *args: Any, eta: datetime | None = None) -> None:
        """Queue the task ``name`` now, or for ``eta`` if it lies in the future."""
        task = self._tasks.get(name)
        if task is None:
            raise LookupError(f"no task {name!r} is registered on the queue")
        if eta is not None and eta > datetime.now(eta.tzinfo):
            task.schedule(args=args, eta=eta)
        else:
            task(*args)

    def enqueue_run(self, run_id: str, *, eta: datetime | None = None) -> None:
        """Queue a run now, or for ``eta`` (a carbon-aware start) if it lies in the future
        (the ``train_run`` task that market.trading registers)."""
        self.enqueue("train_run", run_id, eta=eta)

    def consumer(self, *, workers: int | None = None) -> Any:
        return self.huey.create_consumer(
            workers=workers or self.settings.queue.worker_threads,
            worker_type="thread",
            periodic=True,
            initial_delay=min(0.1, self.settings.queue.poll_max_delay_s),
            max_delay=self.settings.queue.poll_max_delay_s,
        )
