"""Every role's journey through the pages only, in a real browser (Debian's Chromium).

The owner lists UCI-Adult-like data (", " separators, so leading spaces, and "?") through
the wizard with one upload, trimming the spaces, reading "?" as missing and filling one
column's missing cells with a category; the researcher quotes with an epsilon preset and a
deadline, buys at the greenest start and cancels that queued run (nothing charged), buys
again to start now, watches it train and downloads the model; the auditor downloads the
signed log, its checkpoint and the key, verifies them offline and finds the cancellation in
the entries.
Every page is measured at 1280 px and at 390 px: nothing may scroll sideways and no console
error may appear. With MARKET_SCREENSHOTS set, each step is saved at both widths.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from market.accounts.models import Role
from market.audit.cli import audit
from tests.catalog.test_wizard import adult_like
from tests.conftest import TEST_PASSWORD
from tests.trading.conftest import consumer  # noqa: F401 - fixture reused here
from tests.web.test_browser import CHROMIUM_FLAGS, live_server  # noqa: F401 - fixtures
from tests.web.test_layout import MEASURE, SHOTS, WIDTHS, _chromium

pytestmark = pytest.mark.browser


class Journey:
    """One role's browser tab; ``check`` measures the page at both widths."""

    def __init__(self, browser: Any, base: str, role: str) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.base = base
        self.role = role
        self.problems: list[str] = []
        self.bad: list[dict] = []
        self.step = 0
        # Chromium logs a document answered 4xx as a console error. A form sent with a
        # mistake on purpose answers 422 (the page's and the API's convention): that one
        # document is expected; any other console error fails the journey.
        self.expected_422: str | None = None
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.problems.append(str(exc)))

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        if self.expected_422 and "status of 422" in message.text and self.expected_422 in url:
            return
        self.problems.append(f"{message.text} {message.location}")

    def sign_in(self, email: str) -> None:
        self.page.goto(self.base + "/login")
        self.page.fill("#email", email)
        self.page.fill("#password", TEST_PASSWORD)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base + "/")

    def check(self, name: str) -> None:
        self.step += 1
        # A click that navigates returns once the new page has started loading; its style
        # sheet may not apply yet, and an unstyled page measures wide (seen once in CI).
        self.page.wait_for_load_state("load")
        for width in WIDTHS:
            self.page.set_viewport_size({"width": width, "height": 900})
            found = self.page.evaluate(MEASURE)
            found.update(step=name, width=width, url=self.page.url)
            if found["scroll"] > found["inner"] or found["hidden"]:
                self.bad.append(found)
            if SHOTS:
                SHOTS.mkdir(parents=True, exist_ok=True)
                shot = SHOTS / f"journey-{self.role}-{self.step:02d}-{name}-{width}.jpg"
                self.page.screenshot(path=str(shot), type="jpeg", quality=70)
        self.page.set_viewport_size({"width": WIDTHS[0], "height": 900})

    def close(self) -> None:
        self.context.close()
        assert self.bad == [], "\n".join(map(str, self.bad))
        assert self.problems == [], self.problems


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_owner_researcher_and_auditor_journeys_at_390_and_1280(
    live_server: str,  # noqa: F811
    make_user,
    consumer,  # noqa: F811
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    people = {role: make_user(role) for role in (Role.OWNER, Role.RESEARCHER, Role.AUDITOR)}
    data = tmp_path / "adult.csv"
    data.write_bytes(adult_like(400))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            # --- the owner lists through the wizard -----------------------------------
            owner = Journey(browser, live_server, "owner")
            owner.sign_in(people[Role.OWNER].email)
            page = owner.page
            page.click("header nav >> text=My datasets")
            page.click("text=List a dataset")
            owner.check("wizard")
            page.set_input_files("#file", str(data))  # the one upload
            page.click("[data-testid=inspect]")
            page.locator("[data-testid=profile]").wait_for()
            profile = page.inner_text("[data-testid=profile]")
            assert "“ Private”" in profile and "“?”" in profile
            assert page.locator("input[type=file]").count() == 0  # never asked again
            owner.check("profile")
            # Spaces trimmed and "?" read as missing, as the profile suggests; workclass's
            # missing cells filled with "Private", a category chosen from the file's.
            assert page.is_checked("[data-testid=trim]")
            assert page.is_checked("[data-testid=mark][value='?']")
            # Unticking "?" redraws the rows at once: "?" is then a category like any other.
            with page.expect_navigation():
                page.uncheck("[data-testid=mark][value='?']")
            workclass = page.locator("[data-testid='column-workclass']")
            assert "“?”" in workclass.locator("[data-testid=categories]").inner_text()
            with page.expect_navigation():
                page.check("[data-testid=mark][value='?']")
            assert "“?”" not in workclass.locator("[data-testid=categories]").inner_text()
            assert "“Private”" in workclass.inner_text()  # trimmed
            workclass.locator("[data-testid=missing-fill]").check()
            workclass.locator("select[name$='-fill']").select_option("Private")
            page.fill("#title", "Adult census income")
            page.fill("#tags", "census, income")
            page.fill("#epsilon_total", "10")
            workclass.locator("[data-testid=missing-fill]").scroll_into_view_if_needed()
            owner.check("choices")
            page.click("[data-testid=list]")
            page.wait_for_url(f"{live_server}/datasets/*")
            dataset_url = page.url
            main = page.inner_text("main")
            assert "Listed “Adult census income” with 400 rows" in main
            owner.check("listed")
            owner.close()

            # --- the researcher quotes, buys at the greenest start, cancels, buys now ---
            researcher = Journey(browser, live_server, "researcher")
            researcher.sign_in(people[Role.RESEARCHER].email)
            page = researcher.page
            page.goto(dataset_url)
            # A mistake first: the errors are shown at the top, in view, and on the field.
            page.fill("#epsilon", "99")
            researcher.expected_422 = "/quote#errors"
            page.click("[data-testid=ask-quote]")
            page.locator("[data-testid=error-summary]").wait_for()
            assert page.url.endswith("#errors")
            box = page.locator("[data-testid=error-summary]").bounding_box()
            assert box is not None and 0 <= box["y"] < 900  # scrolled into view
            assert "cap of" in page.inner_text("[data-testid=error-summary]")
            assert page.get_attribute("#epsilon", "aria-invalid") == "true"
            researcher.check("quote-error")
            researcher.expected_422 = None
            page.click("[data-epsilon='1']")
            assert page.input_value("#epsilon") == "1"
            page.fill("#epochs", "3")
            page.fill("#batch_size", "64")
            later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
            page.fill("#deadline", later)
            researcher.check("quote-form")
            page.click("[data-testid=ask-quote]")
            page.wait_for_url(f"{live_server}/quotes/*")
            assert "Fits the dataset" in page.inner_text("[data-testid=fits-budget]")
            assert page.is_checked("[data-testid=start-greenest]")
            researcher.check("quote")
            page.click("[data-testid=buy]")
            page.wait_for_url(f"{live_server}/runs/*")
            assert page.inner_text("[data-testid=run-status]") == "queued"
            researcher.check("queued-for-greenest")
            page.click("[data-testid=cancel]")
            page.wait_for_url(f"{live_server}/runs/*")
            assert "Run cancelled" in page.inner_text("main")
            assert "nothing was charged" in page.inner_text("main")
            researcher.check("cancelled")

            page.goto(dataset_url)
            page.fill("#epsilon", "1")
            page.fill("#epochs", "3")
            page.fill("#batch_size", "64")
            page.click("[data-testid=ask-quote]")
            page.wait_for_url(f"{live_server}/quotes/*")
            page.click("[data-testid=buy]")
            page.wait_for_url(f"{live_server}/runs/*")
            deadline = time.monotonic() + 600  # a condition wait; generous for a busy machine
            while time.monotonic() < deadline and not page.locator("#privacy-heading").count():
                time.sleep(0.2)
            assert page.inner_text("[data-testid=run-status]") == "succeeded"
            researcher.check("succeeded")
            with page.expect_download() as info:
                page.click("[data-testid=download]")
            model = tmp_path / "model.safetensors"
            info.value.save_as(model)
            assert model.stat().st_size > 0
            researcher.close()

            # --- the auditor downloads the log and verifies it ---------------------------
            auditor = Journey(browser, live_server, "auditor")
            auditor.sign_in(people[Role.AUDITOR].email)
            page = auditor.page
            page.click("header nav >> text=Audit log")
            auditor.check("audit")
            files = {}
            for testid, name in (
                ("checkpoint-note", "kept.txt"),
                ("public-key", "signing.pub"),
                ("download-log", "log.jsonl"),
            ):
                with page.expect_download() as info:
                    page.click(f"[data-testid={testid}]")
                files[name] = tmp_path / name
                info.value.save_as(files[name])
            done = CliRunner().invoke(
                audit,
                [
                    "verify",
                    str(files["log.jsonl"]),
                    "--public-key",
                    str(files["signing.pub"]),
                    "--checkpoint",
                    str(files["kept.txt"]),
                ],
            )
            assert done.exit_code == 0, done.output
            page.click("[data-testid=browse-entries]")
            page.select_option("#kind", "run.cancelled")
            page.click("form.filters button[type=submit]")
            assert "1 entry matches" in page.inner_text("[data-testid=entry-count]")
            auditor.check("entries")
            auditor.close()
        finally:
            browser.close()
