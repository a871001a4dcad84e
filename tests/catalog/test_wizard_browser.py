"""The wizard in a real browser (Debian's Chromium), as a new owner with an awkward file:
long unbroken names and values, a mistake on purpose. At 1280 and 390 px nothing scrolls
sideways and no console error appears; every field has a label (keyboard and screen-reader
use); the error is at the top and on its field and the choices survive it; the upload's
values are never on disk in plaintext (instance folder, temp files, the browser's profile)."""

from __future__ import annotations

import random
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from market.accounts.models import Role
from tests.catalog.test_no_plaintext_on_disk import _files_to_scan
from tests.conftest import TEST_PASSWORD
from tests.web.test_browser import CHROMIUM_FLAGS, live_server  # noqa: F401 - fixture
from tests.web.test_layout import MEASURE, WIDTHS, _chromium

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
]

LONG_NAME = "left_ventricular_ejection_fraction_measured_at_rest_in_percent_of_volume"
UNLABELLED = """() => [...document.querySelectorAll(
    'form[data-testid=wizard-form] input:not([type=hidden]), '
    + 'form[data-testid=wizard-form] select, form[data-testid=wizard-form] textarea')]
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
    && !e.getAttribute('aria-labelledby'))
  .map(e => e.name)"""


def _awkward_csv(marker: str) -> bytes:
    rng = random.Random(5)
    lines = [f"{LONG_NAME},notes,ward,outcome"]
    for i in range(300):
        notes = marker if i == 17 else rng.choice(["seen", "not seen"])
        ward = rng.choice(["north", "south", "?"])
        ward = ward if i != 3 else "a_very_long_ward_name_without_any_space_" * 3
        outcome = rng.choice(["alive", "dead"])
        lines.append(f"{rng.randint(10, 80)}, {notes}, {ward}, {outcome}")
    return ("\n".join(lines) + "\n").encode()


def _measure(page: Any, bad: list[dict], step: str) -> None:
    page.wait_for_load_state("load")  # a navigating click returns before the styles apply
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        found = page.evaluate(MEASURE)
        if found["scroll"] > found["inner"]:
            bad.append({**found, "step": step, "width": width})
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})


def _scan(home: Path, since: float, marker: bytes, skip: list[Path]) -> None:
    for path in _files_to_scan(home, since):
        if any(path == s or s in path.parents for s in skip):
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        assert marker not in data, f"the upload's value found in {path}"


def test_the_wizard_at_both_widths_with_a_mistake_and_nothing_on_disk(
    app,
    live_server: str,  # noqa: F811 - the fixture imported above
    make_user,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import sync_playwright

    since = time.time() - 1
    owner = make_user(Role.OWNER)
    marker = f"zq{secrets.token_hex(8)}"
    source = tmp_path / "awkward.csv"
    source.write_bytes(_awkward_csv(marker))
    home = app.extensions["market"].settings.storage_dir
    problems: list[str] = []
    bad: list[dict] = []
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=_chromium(),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.new_page()
            expected_422 = {"on": False}

            def console(message: Any) -> None:
                if message.type != "error":
                    return
                if expected_422["on"] and "status of 422" in message.text:
                    return
                problems.append(f"{message.text} {message.location}")

            page.on("console", console)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.goto(live_server + "/login")
            page.fill("#email", owner.email)
            page.fill("#password", TEST_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(live_server + "/")
            page.goto(live_server + "/datasets/new")
            _measure(page, bad, "step 1")
            # A file no listing could describe: the reason at the top and on the field.
            twice = tmp_path / "twice.csv"
            twice.write_bytes(f"{LONG_NAME},{LONG_NAME},y\n1,2,a\n3,4,b\n".encode())
            page.set_input_files("#file", str(twice))
            expected_422["on"] = True
            page.click("[data-testid=inspect]")
            page.locator("[data-testid=error-summary]").wait_for()
            expected_422["on"] = False
            assert "twice" in page.inner_text("[data-testid=error-summary]")
            assert "twice" in page.inner_text("#file-error")
            assert page.get_attribute("#file", "aria-describedby") == "file-error"
            _measure(page, bad, "step 1 error")
            page.set_input_files("#file", str(source))
            page.click("[data-testid=inspect]")
            page.locator("[data-testid=profile]").wait_for()
            assert marker in page.inner_text("[data-testid=profile]")  # the owner sees it
            _measure(page, bad, "profile")
            assert page.evaluate(UNLABELLED) == []
            _scan(home, since, marker.encode(), skip=[source])  # during: encrypted only

            # Choices (the notes column kept private), then a mistake from the keyboard only.
            page.uncheck("#c1-publish")
            page.uncheck("[data-testid=trim]")
            page.wait_for_load_state()
            page.locator("[data-testid=profile]").wait_for()
            page.focus("#c0-min")
            page.keyboard.press("Control+A")
            page.keyboard.type("nan")
            page.focus("#title")
            page.keyboard.press("Control+A")
            page.keyboard.type("Ward outcomes")
            expected_422["on"] = True
            page.focus("[data-testid=list]")
            with page.expect_navigation():
                page.keyboard.press("Enter")
            expected_422["on"] = False
            summary = page.locator("[data-testid=error-summary]")
            summary.wait_for()
            box = summary.bounding_box()
            assert box is not None and 0 <= box["y"] < 900  # in view, at the top
            assert "Write a number" in summary.inner_text()
            assert page.get_attribute("#c0-min", "aria-invalid") == "true"
            assert "Write a number" in page.inner_text("#c0-min-error")
            assert not page.is_checked("[data-testid=trim]")  # the choices survived
            assert not page.is_checked("#c1-publish")
            assert page.input_value("#title") == "Ward outcomes"
            _measure(page, bad, "error")
            assert page.evaluate(UNLABELLED) == []

            page.fill("#c0-min", "10")
            with page.expect_navigation():  # Enter in a field lists, as the main button
                page.press("#c0-min", "Enter")
            assert "Listed “Ward outcomes”" in page.inner_text("main"), page.inner_text("main")
            _measure(page, bad, "listed")
        finally:
            context.close()
    assert problems == []
    assert bad == [], "\n".join(str(b) for b in bad)
    # After: nowhere but in the browser's own session history (the owner's machine, which
    # holds the file anyway: Chromium keeps a form's POST body to restore the tab); its
    # cache holds nothing of the no-store pages.
    sessions = tmp_path / "chromium-profile" / "Default" / "Sessions"
    _scan(home, since, marker.encode(), skip=[source, sessions])
