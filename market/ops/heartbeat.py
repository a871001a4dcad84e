"""The worker's heartbeat: a row per worker process, refreshed by a thread while it consumes.

``/healthz`` reads the newest row, so a web process on another machine (Redis queue) sees the
workers too. A worker removes its own row when it stops cleanly; the supervisor of
``market serve`` removes the row of a child it found dead, so the web knows at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime, timedelta

from sqlmodel import col, delete, select

from market.db import Database, utcnow
from market.ops.models import WorkerHeartbeat

log = logging.getLogger(__name__)

# Rows of workers gone for longer than this are deleted by the next beat of any worker.
FORGET_AFTER = timedelta(days=1)


def worker_id(pid: int | None = None) -> str:
    return f"{socket.gethostname()[:100]}:{pid if pid is not None else os.getpid()}"


def beat(
    database: Database,
    *,
    worker: str,
    backend: str,
    now: datetime | None = None,
    worker_class: str | None = None,
) -> None:
    now = now or utcnow()
    with database.write() as session:
        row = session.get(WorkerHeartbeat, worker)
        if row is None:
            row = WorkerHeartbeat(
                worker_id=worker, queue_backend=backend, started_at=now, worker_class=worker_class
            )
        row.last_seen_at = now
        session.add(row)
        session.exec(
            delete(WorkerHeartbeat).where(col(WorkerHeartbeat.last_seen_at) < now - FORGET_AFTER)
        )


def forget(database: Database, worker: str) -> None:
    with database.write() as session:
        session.exec(delete(WorkerHeartbeat).where(col(WorkerHeartbeat.worker_id) == worker))


def newest(database: Database) -> WorkerHeartbeat | None:
    with database.read() as session:
        statement = select(WorkerHeartbeat).order_by(col(WorkerHeartbeat.last_seen_at).desc())
        return session.exec(statement).first()


def live_count(database: Database, *, since: datetime) -> int:
    with database.read() as session:
        rows = session.exec(
            select(WorkerHeartbeat.worker_id).where(col(WorkerHeartbeat.last_seen_at) >= since)
        ).all()
        return len(rows)


class Heartbeat:
    """A daemon thread beating every ``interval_s`` until ``stop()``, which removes the row."""

    def __init__(
        self,
        database: Database,
        *,
        interval_s: float,
        backend: str,
        worker_class: str | None = None,
        worker: str | None = None,
    ) -> None:
        self.database = database
        self.interval_s = interval_s
        self.backend = backend
        self.worker_class = worker_class
        self.worker = worker or worker_id()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        beat(
            self.database,
            worker=self.worker,
            backend=self.backend,
            worker_class=self.worker_class,
        )  # fail loudly at start
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                beat(
                    self.database,
                    worker=self.worker,
                    backend=self.backend,
                    worker_class=self.worker_class,
                )
            except Exception:  # a busy database must not kill the worker; the next beat retries
                log.exception("heartbeat not written")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)
        try:
            forget(self.database, self.worker)
        except Exception:
            log.exception("heartbeat row not removed")
