"""The auditor in a real browser (Debian's Chromium via Playwright): signs in, opens a
dataset's privacy ledger, sees the plot, downloads the CSV; the cost ledger renders too.

The charts are inline SVG under the site's strict CSP (``style-src 'self'``): the test also
checks that no CSP violation is reported and that the plotted line really has its colour
(presentation attributes, not the style attributes the CSP would block).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from market.accounts.models import Role
from market.trading.models import ReleaseState
from tests.conftest import TEST_PASSWORD
from tests.ledgers_web.conftest import people, seed_run, when  # noqa: F401 - fixtures
from tests.trading.conftest import (  # noqa: F401 - fixtures reused here
    NPZ_METADATA,
    cancer_rows,
    create_draft,
    digits_npz,
    listed_cancer,
    metadata,
    owner,
    to_csv,
    upload,
)
from tests.web.test_browser import live_server, page  # noqa: F401 - fixtures reused here

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_auditor_opens_a_privacy_ledger_sees_the_plot_and_downloads_the_csv(
    live_server: str,  # noqa: F811
    page,  # noqa: F811
    make_user,
    listed_cancer,  # noqa: F811
    seed_run,  # noqa: F811
    tmp_path: Path,
) -> None:
    dataset_id = listed_cancer["id"]
    buyer = make_user(Role.RESEARCHER)
    first = seed_run(dataset_id, buyer.id, finished_at=when(1, 5), total="2.48", epsilon_after=0.5)
    seed_run(dataset_id, buyer.id, finished_at=when(1, 9), total="3.10", epsilon_after=0.8)
    seed_run(
        dataset_id,
        buyer.id,
        finished_at=when(2, 2),
        total="4.00",
        epsilon_after=1.0,
        state=ReleaseState.RESERVED,
    )
    auditor = make_user(Role.AUDITOR)
    violations: list[str] = []
    page.on(
        "console",
        lambda message: (
            violations.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )

    page.goto(live_server + "/login")
    page.fill("#email", auditor.email)
    page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/")
    page.click("header nav >> text=Privacy ledger")
    page.click(f"a[href='/ledger/privacy/{dataset_id}']")
    page.wait_for_url(f"{live_server}/ledger/privacy/{dataset_id}")

    chart = page.locator("[data-testid=epsilon-chart] svg")
    chart.wait_for(state="visible")
    assert chart.bounding_box()["width"] > 300
    assert page.locator("[data-testid=epsilon-chart] svg [id$=epsilon-after] use").count() == 3
    stroke = page.eval_on_selector(
        "[data-testid=epsilon-chart] svg [id$=epsilon-after] path",
        "element => getComputedStyle(element).stroke",
    )
    assert stroke == "rgb(47, 93, 138)"  # the accent colour reached the browser
    page.screenshot(path=str(tmp_path / "privacy-ledger.png"), full_page=True)

    with page.expect_download() as info:
        page.click("[data-testid=download-csv]")
    download = info.value
    assert download.suggested_filename == f"privacy-ledger-{dataset_id}.csv"
    saved = tmp_path / "ledger.csv"
    download.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text())))
    assert [r["state"] for r in rows] == ["spent", "spent", "reserved"]
    assert [float(r["epsilon_after"]) for r in rows] == [0.5, 0.8, 1.0]

    page.click("header nav >> text=Cost ledger")
    page.locator("[data-testid=cost-chart] svg").wait_for(state="visible")
    assert "9.58 EUR" in page.inner_text("[data-testid=overall]")
    page.screenshot(path=str(tmp_path / "cost-ledger.png"), full_page=True)

    page.goto(f"{live_server}/runs/{first}")
    breakdown = page.locator("[data-testid=cost-breakdown] svg")
    breakdown.wait_for(state="visible")
    assert page.locator("[data-testid=cost-breakdown] svg [id*=-term-]").count() == 5
    page.screenshot(path=str(tmp_path / "run-receipt.png"), full_page=True)
    page.click("header nav >> text=Audit log")
    assert page.inner_text("[data-testid=root]").strip()
    page.screenshot(path=str(tmp_path / "audit.png"), full_page=True)
    assert violations == []
