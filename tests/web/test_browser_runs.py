"""A researcher quotes, buys and watches a private training run in a real browser.

Debian's Chromium driven by Playwright (never `playwright install`), against a live server
with a real Huey consumer training the run. The progress bar is moved by the page's static
script (the CSP allows no inline script), and no console error may appear on the way.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from market.accounts.models import Role
from tests.conftest import TEST_PASSWORD
from tests.trading.conftest import (  # noqa: F401 - fixtures reused here
    consumer,
    create_draft,
    listed_cancer,
    owner,
    upload,
)
from tests.web.test_browser import live_server, page  # noqa: F401 - fixtures reused here

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_quote_buy_and_watch_the_progress_bar_reach_100(
    live_server: str,  # noqa: F811
    page,  # noqa: F811
    make_user,
    listed_cancer,  # noqa: F811
    consumer,  # noqa: F811
    tmp_path: Path,
) -> None:
    problems: list[str] = []
    page.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and not m.location.get("url", "").endswith("/favicon.ico")
            else None
        ),
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    researcher = make_user(Role.RESEARCHER)

    page.goto(live_server + "/login")
    page.fill("#email", researcher.email)
    page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/")

    page.goto(f"{live_server}/datasets/{listed_cancer['id']}")
    assert page.is_hidden("#hidden")  # the script shows only the chosen model's options
    page.select_option("#model_kind", "mlp")
    assert page.is_visible("#hidden") and page.is_hidden("#layers")
    page.fill("#hidden", "16")
    page.fill("#epsilon", "1.5")
    page.fill("#epochs", "60")  # long enough to see the bar move (reports every <= 2 s)
    page.fill("#batch_size", "64")
    page.fill("#learning_rate", "0.05")
    page.screenshot(path=str(tmp_path / "1-quote-form.png"), full_page=True)
    page.click("[data-testid=ask-quote]")

    page.wait_for_url(f"{live_server}/quotes/*")
    assert "Fits the dataset" in page.inner_text("[data-testid=fits-budget]")
    assert "Noise multiplier" in page.inner_text("[data-testid=mechanism]")
    page.screenshot(path=str(tmp_path / "2-quote.png"), full_page=True)
    page.click("[data-testid=buy]")

    page.wait_for_url(f"{live_server}/runs/*")
    seen: list[str] = []
    deadline = time.monotonic() + 600  # a condition wait; generous for a busy machine
    while time.monotonic() < deadline:
        text = page.inner_text("#progress-percent")
        if not seen or seen[-1] != text:
            seen.append(text)
            if text not in ("0%", "100%") and not (tmp_path / "3-running.png").exists():
                page.screenshot(path=str(tmp_path / "3-running.png"), full_page=True)
        if page.locator("#privacy-heading").count():
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"the run page never showed the receipts; progress seen: {seen}")

    assert seen[-1] == "100%", seen
    print("progress seen:", seen)
    assert page.inner_text("[data-testid=run-status]") == "succeeded"
    bar = page.eval_on_selector("#run-progress", "b => [b.value, b.max]")
    assert bar[0] == bar[1] > 0
    assert page.is_visible("[data-testid=download]")
    assert "Measured" in page.inner_text("[data-testid=cost-receipt]")
    assert "accuracy" in page.inner_text("[data-testid=metrics]")
    page.screenshot(path=str(tmp_path / "4-succeeded.png"), full_page=True)
    assert problems == [], problems

    page.click("text=My runs")
    assert "succeeded" in page.inner_text("[data-testid=runs]")
    page.screenshot(path=str(tmp_path / "5-my-runs.png"), full_page=True)
