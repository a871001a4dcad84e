"""Fixtures of the account journeys: an application per sign-up mode, its real outbox, the
links in its mails, and sign-in through the real web form."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from market import create_app
from market.audit import ensure_signing_key
from market.extensions import limiter
from privacy.vault import init_keydir
from tests.conftest import app_overrides
from tests.helpers import csrf_token_from

# The browser fixtures (Debian's Chromium through Playwright, a served instance) are the web
# tests' own, shared rather than copied.
from tests.web.test_browser import live_server, page  # noqa: F401

LINK = re.compile(r"https?://[^\s/]+(/(?:verify-email|password/reset)/[A-Za-z0-9_-]+)")
#: A password the policy accepts, different from the suite's TEST_PASSWORD.
NEW_PASSWORD = "violet tractor under moonlight"


@pytest.fixture
def make_app(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Any]]:
    """Build the real application with extra settings (``accounts={"signup": "open"}``)."""
    built: list[Any] = []

    def make(**sections: Any) -> Any:
        init_keydir(tmp_path / "keys")
        application = create_app(app_overrides(tmp_path, database_url, **sections))
        application.config["TESTING"] = True
        ensure_signing_key(application.extensions["market"].settings)
        limiter.reset()
        built.append(application)
        return application

    yield make
    for application in built:
        application.extensions["market"].database.dispose()


def outbox_messages(app: Any) -> list[EmailMessage]:
    """Every .eml file of the instance's outbox, oldest first, parsed as mail."""
    folder: Path = app.extensions["market"].settings.outbox_dir
    if not folder.exists():
        return []
    return [
        message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[misc]
        for path in sorted(folder.glob("*.eml"))
    ]


def wait_for_messages(app: Any, count: int, *, timeout: float = 60) -> list[EmailMessage]:
    """Reset mails leave from a thread: wait (on the condition, generously) until there are
    ``count`` messages."""
    deadline = time.monotonic() + timeout
    while True:
        found = outbox_messages(app)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def link_path(message: EmailMessage) -> str:
    """The path of the one-time link in a mail's text."""
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    match = LINK.search(body.get_content())
    assert match, body.get_content()
    return match.group(1)


def web_login(client: FlaskClient, email: str, password: str) -> Any:
    token = csrf_token_from(client, "/login")
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def post_form(
    client: FlaskClient, form_page: str, data: dict[str, str], action: str | None = None
) -> Any:
    """Submit the form found at ``form_page`` (with its CSRF token) to ``action`` (default:
    the same page)."""
    token = csrf_token_from(client, form_page)
    return client.post(action or form_page, data={**data, "csrf_token": token})


def sign_up(client: FlaskClient, email: str, role: str = "researcher", password: str = ""):
    return client.post(
        "/api/v1/accounts",
        json={"email": email, "password": password or NEW_PASSWORD, "role": role},
    )
