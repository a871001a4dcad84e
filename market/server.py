"""``market serve``: the application under gunicorn, configured from Settings."""

from __future__ import annotations

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
        },
    ).run()
