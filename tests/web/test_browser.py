"""A real browser (Debian's Chromium driven by Playwright) signs in through the real page.

Never `playwright install`: the browser is the `chromium` package's binary. Skipped, with
the reason, where it is absent; CI installs it (MARKET_TEST_REQUIRE_SERVICES=1 fails instead).
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from market.accounts.models import Role
from tests.conftest import TEST_PASSWORD, service_unavailable

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def live_server(app) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def page(tmp_path: Path) -> Iterator[object]:
    chromium = shutil.which("chromium")
    if chromium is None:
        service_unavailable("Chromium", "no `chromium` on PATH; apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_FLAGS,
        )
        try:
            yield context.new_page()
        finally:
            context.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sign_in_through_the_page_and_see_the_home_page(
    live_server: str, page, make_user, tmp_path: Path
) -> None:
    user = make_user(Role.RESEARCHER)
    page.goto(live_server + "/")
    assert "Train on data you may never see" in page.inner_text("h1")
    page.click("text=Sign in")
    page.fill("#email", user.email)
    page.fill("#password", "a wrong password")
    page.click("button[type=submit]")
    assert "the e-mail or password is wrong" in page.inner_text("main")
    page.fill("#email", user.email)
    page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/")
    assert f"signed in as {user.email} (researcher)" in page.inner_text("[data-testid=signed-in]")
    page.screenshot(path=str(tmp_path / "home-signed-in.png"))
    page.click("[data-testid=account-link]")
    assert page.inner_text("[data-testid=role]") == "researcher"
