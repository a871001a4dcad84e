"""``market serve``: the application under gunicorn, configured from Settings."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication

from market.config import Settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class _Gunicorn(BaseApplication):
    """gunicorn without a config file: options come from our Settings only."""

    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self._settings = settings
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from market import create_app

        app = create_app(self._settings)
        hops = self._settings.server.proxy_hops
        if hops:
            # Behind a TLS proxy: the client's address (rate limits) and scheme (secure
            # redirects) come from the proxy's headers, trusted for this many hops only.
            from werkzeug.middleware.proxy_fix import ProxyFix

            app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
        return app


def _warm_up(_worker: Any) -> None:
    """Import Opacus in the background once a worker is up, so the first budget question
    (a dataset page, a quote) does not wait seconds for it; requests are served meanwhile."""

    def load() -> None:
        import privacy.accounting  # noqa: F401
        import privacy.training  # noqa: F401

    threading.Thread(target=load, name="warm-up", daemon=True).start()


def _child_exit(_server: Any, worker: Any) -> None:
    """prometheus-client's multiprocess mode: a dead worker's live gauges are dropped."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


# A Unix socket path longer than this does not fit in sockaddr_un (108 bytes on Linux).
_MAX_SOCKET_PATH = 100


def control_socket_options(settings: Settings) -> dict[str, Any]:
    """gunicorn's control socket in the instance folder (0600), so two instances on one
    machine never share one; none when the folder's path is too long for a socket."""
    path = settings.home / "gunicorn.ctl"
    if len(str(path)) > _MAX_SOCKET_PATH:
        return {"control_socket_disable": True}
    return {"control_socket": str(path), "control_socket_mode": 0o600}


def _metrics_folder(settings: Settings) -> Path | None:
    """With several workers, prometheus-client's multiprocess folder, emptied at each start
    (its documented requirement); it must be set before a worker imports the client."""
    if settings.server.workers <= 1:
        os.environ.pop(MULTIPROC_ENV, None)
        return None
    folder = settings.home / "metrics"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


def run_server(settings: Settings, *, host: str, port: int) -> None:
    print(f"serving on http://{host}:{port}/  (API docs: http://{host}:{port}/api/swagger)")
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": settings.server.workers,
        "threads": settings.server.threads,
        "worker_class": "gthread",
        # Off unless asked for (server.access_log): one line per request costs throughput.
        "accesslog": "-" if settings.server.access_log else None,
        "errorlog": "-",
        "loglevel": "info",
        # Uploads stream for a while; the default 30 s would kill a slow client's upload.
        "timeout": 300,
        "post_worker_init": _warm_up,
        # gunicorn's own default umask is 0: every instance file it or the app creates
        # (database, queue, uploads, models) must stay private to this account.
        "umask": 0o077,
        **control_socket_options(settings),
    }
    if _metrics_folder(settings) is not None:
        options["child_exit"] = _child_exit
    _Gunicorn(settings, options).run()
