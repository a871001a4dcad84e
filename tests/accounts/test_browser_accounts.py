"""A real browser at 1280 px walks the account journeys through the real pages: sign up
(a weak password refused first), follow the link from the outbox, sign in; then forget the
password, follow the reset link, and sign in with the new one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.accounts.conftest import NEW_PASSWORD, link_path, wait_for_messages

pytestmark = pytest.mark.browser

EMAIL = "browser.person@people.example"
LATER_PASSWORD = "saffron kettle on the balcony"


@pytest.fixture
def app(make_app) -> Any:
    """The served instance lets people sign up at once (accounts.signup = "open")."""
    return make_app(accounts={"signup": "open"})


def _fits(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sign_up_verify_sign_in_then_reset_the_password(
    app: Any, live_server: str, page: Any, tmp_path: Path
) -> None:
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(live_server + "/")
    page.click("[data-testid=signup-link]")
    page.wait_for_url(live_server + "/signup")
    page.fill("#email", EMAIL)
    page.check("input[name=role][value=owner]")
    page.fill("#password", "password1234")
    page.fill("#confirm", "password1234")
    page.click("button[type=submit]")
    assert "too easy to guess" in page.inner_text("main")
    page.fill("#password", NEW_PASSWORD)
    page.fill("#confirm", NEW_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/login")
    assert "Account created" in page.inner_text("main")
    assert _fits(page)
    page.screenshot(path=str(tmp_path / "signed-up.png"))

    (mail,) = wait_for_messages(app, 1)
    page.goto(live_server + link_path(mail))
    assert f"{EMAIL} is confirmed" in page.inner_text("[data-testid=verified]")
    page.click("text=Sign in")
    page.fill("#email", EMAIL)
    page.fill("#password", NEW_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/")
    assert f"signed in as {EMAIL} (owner)" in page.inner_text("[data-testid=signed-in]")
    page.click("[data-testid=account-link]")
    assert page.inner_text("[data-testid=email-state]") == "confirmed"
    assert _fits(page)
    page.click("text=Sign out")

    page.goto(live_server + "/login")
    page.click("text=Forgotten your password?")
    page.fill("#email", EMAIL)
    page.click("button[type=submit]")
    assert "If an account exists" in page.inner_text("[data-testid=reset-sent]")
    messages = wait_for_messages(app, 2)
    assert len(messages) == 2
    page.goto(live_server + link_path(messages[1]))
    page.fill("#password", LATER_PASSWORD)
    page.fill("#confirm", LATER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/login")
    assert "Your password is changed" in page.inner_text("main")
    page.fill("#email", EMAIL)
    page.fill("#password", NEW_PASSWORD)
    page.click("button[type=submit]")
    assert "the e-mail or password is wrong" in page.inner_text("main")
    page.fill("#email", EMAIL)
    page.fill("#password", LATER_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/")
    assert f"signed in as {EMAIL}" in page.inner_text("[data-testid=signed-in]")
    page.screenshot(path=str(tmp_path / "signed-in-after-reset.png"))

    page.goto(live_server + link_path(messages[1]))
    assert "already used" in page.inner_text("[data-testid=link-error]")
