"""``market serve``: the application under gunicorn, configured from Settings."""

from __future__ import annotations

import threading
from typing import Any

from gunicorn.app.base import BaseApplication

from market.config import Settings


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

        return create_app(self._settings)


def _warm_up(_worker: Any) -> None:
    """Import Opacus in the background once a worker is up, so the first budget question
    (a dataset page, a quote) does not wait seconds for it; requests are served meanwhile."""

    def load() -> None:
        import privacy.accounting  # noqa: F401
        import privacy.training  # noqa: F401

    threading.Thread(target=load, name="warm-up", daemon=True).start()


def run_server(settings: Settings, *, host: str, port: int) -> None:
    print(f"serving on http://{host}:{port}/  (API docs: http://{host}:{port}/api/swagger)")
    _Gunicorn(
        settings,
        {
            "bind": f"{host}:{port}",
            "workers": settings.server.workers,
            "threads": settings.server.threads,
            "worker_class": "gthread",
            "accesslog": "-",
            "errorlog": "-",
            "loglevel": "info",
            # Uploads stream for a while; the default 30 s would kill a slow client's upload.
            "timeout": 300,
            "post_worker_init": _warm_up,
        },
    ).run()
