"""A live server over real HTTP (werkzeug in a thread) and the trading fixtures it needs."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from werkzeug.serving import make_server

from tests.trading.conftest import (  # noqa: F401 - fixtures reused here
    consumer,
    create_draft,
    listed_cancer,
    owner,
    upload,
)


@pytest.fixture
def live_server(app) -> Iterator[str]:
    """The app on a free port: the client talks real HTTP to it, as it would in production."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
