"""The embedded worker of ``market serve``, kept alive: a dead child is restarted with backoff.

A thread in the serving process watches the child. When it dies (killed, crashed, out of
memory), the thread logs it, removes the child's heartbeat row (so ``/healthz`` answers 503
at once rather than when the heartbeat goes stale), waits, and starts a new one. The wait
starts at ``ops.worker_restart_backoff_s`` and doubles after each child that lived less than
a minute, up to ``ops.worker_restart_backoff_max_s``; a child that lived longer resets it.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from market.config import Settings

log = logging.getLogger("market.supervisor")

#: A child that lived at least this long (seconds) resets the backoff.
STABLE_AFTER_S = 60.0


def _logger() -> logging.Logger:
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s] [%(name)s] %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


class WorkerSupervisor:
    def __init__(self, settings: Settings, argv: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.argv = list(argv or [sys.executable, "-m", "market.cli", "worker"])
        self.restarts = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="worker-supervisor", daemon=True)
        self._log = _logger()

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def start(self) -> WorkerSupervisor:
        self._spawn()
        self._thread.start()
        return self

    def _spawn(self) -> None:
        # Its own session: Ctrl-C on `market serve` reaches the server, which then stops the
        # worker itself (rather than both racing to shut down).
        self._child = subprocess.Popen(self.argv, start_new_session=True)
        self._started_at = time.monotonic()
        self._log.info("embedded worker started (pid %d)", self._child.pid)

    def _watch(self) -> None:
        ops = self.settings.ops
        backoff = ops.worker_restart_backoff_s
        while not self._stop.wait(0.5):
            child = self._child
            if child is None or child.poll() is None:
                continue
            lived = time.monotonic() - self._started_at
            if lived >= STABLE_AFTER_S:
                backoff = ops.worker_restart_backoff_s
            self._log.warning(
                "embedded worker (pid %d) died after %.0f s (exit status %s, 0 also when "
                "gunicorn reaped it first); restarting in %g s",
                child.pid,
                lived,
                child.returncode,
                backoff,
            )
            self._forget(child.pid)
            if self._stop.wait(backoff):
                return
            self.restarts += 1
            self._spawn()
            backoff = min(backoff * 2, ops.worker_restart_backoff_max_s)

    def _forget(self, pid: int) -> None:
        """Remove the dead child's heartbeat row so /healthz reports it now."""
        try:
            from sqlalchemy import create_engine
            from sqlalchemy.pool import NullPool

            from market.db import Database
            from market.ops.heartbeat import forget, worker_id

            engine = create_engine(self.settings.database_url, poolclass=NullPool)
            try:
                forget(Database(engine), worker_id(pid))
            finally:
                engine.dispose()
        except Exception:
            self._log.exception("heartbeat row of pid %d not removed", pid)

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        child = self._child
        if child is None or child.poll() is not None:
            return
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=timeout)
