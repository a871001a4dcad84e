"""Sharing in a real browser: the buyer of a delivered run publishes it from the run page,
another researcher finds it on the dataset page and the shared-models page, acquires it and
downloads the very bytes the run delivered.

Debian's Chromium driven by Playwright (never `playwright install`), against a live server
with a real Huey consumer that trained the run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from market.accounts.models import Role
from market.costing.pricing import human_emissions
from tests.conftest import TEST_PASSWORD
from tests.sharing.conftest import (  # noqa: F401 - fixtures reused here
    consumer,
    create_draft,
    delivered_run,
    listed_cancer,
    owner,
    researcher,
    upload,
    wait_for_run,
)
from tests.web.test_browser import live_server, page  # noqa: F401 - fixtures reused here

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def sign_in(page, live_server: str, email: str) -> None:  # noqa: F811
    page.goto(live_server + "/login")
    page.fill("#email", email)
    page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_publish_browse_acquire_and_download(
    live_server: str,  # noqa: F811
    page,  # noqa: F811
    client,
    make_user,
    listed_cancer,  # noqa: F811
    researcher,  # noqa: F811
    delivered_run,  # noqa: F811
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
    publisher, headers = researcher
    run_id = delivered_run["id"]

    # The buyer publishes from the run page.
    sign_in(page, live_server, publisher.email)
    page.goto(f"{live_server}/runs/{run_id}")
    page.fill("#title", "Cancer screening, DP logistic regression")
    page.fill("#description", "Trained at epsilon 1 on the breast cancer data.")
    page.fill("#price", "1.50")
    page.screenshot(path=str(tmp_path / "1-publish.png"), full_page=True)
    page.click("[data-testid=publish]")
    page.wait_for_url(f"{live_server}/models/*")
    model_url = page.url
    assert "1.50 EUR" in page.inner_text("[data-testid=price]")
    assert page.is_visible("[data-testid=download-shared]")  # the publisher has it already
    page.context.clear_cookies()  # signed out: the next person signs in

    # Another researcher sees it on the dataset page, before the quote form, and browses.
    other = make_user(Role.RESEARCHER)
    sign_in(page, live_server, other.email)
    page.goto(f"{live_server}/datasets/{listed_cancer['id']}")
    shared = page.inner_text("[data-testid=dataset-shared-models]")
    assert "Cancer screening, DP logistic regression" in shared
    page.click("nav >> text=Shared models")
    page.wait_for_url(f"{live_server}/models")
    assert "Cancer screening" in page.inner_text("[data-testid=shared-models]")
    page.click("[data-testid=shared-models] h2 a")
    page.wait_for_url(model_url)
    assert "Acquiring it spends no budget" in page.inner_text("[data-testid=privacy]")
    assert "what each acquisition avoids" in page.inner_text("[data-testid=footprint]")
    assert page.locator("[data-testid=download-shared]").count() == 0
    page.screenshot(path=str(tmp_path / "2-model.png"), full_page=True)

    # Acquire, then download: the bytes the run delivered.
    page.click("[data-testid=acquire]")
    page.wait_for_url(model_url)
    flash = page.inner_text(".flash")
    assert "Acquired for 1.50 EUR" in flash and "of training avoided" in flash
    measured = delivered_run["cost_receipt"]["measured"]
    assert human_emissions(measured["emissions_kg"]) in flash
    assert page.locator("[data-testid=acquire]").count() == 0
    with page.expect_download() as download_info:
        page.click("[data-testid=download-shared]")
    downloaded = Path(download_info.value.path()).read_bytes()
    original = client.get(f"/api/v1/runs/{run_id}/model", headers=headers)
    assert original.status_code == 200
    assert downloaded == original.data
    page.screenshot(path=str(tmp_path / "3-acquired.png"), full_page=True)
    assert problems == [], problems
