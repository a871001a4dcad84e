"""Every page, for every role, at a phone's width (390 px) and a laptop's (1280 px).

A real browser (Debian's Chromium through Playwright) signs in as owner, researcher, auditor
and admin, follows every link of the header's navigation plus the pages a role reaches from
them (a dataset, a quote, a run, a ledger), and checks on each one that nothing scrolls
sideways (``scrollWidth <= innerWidth``), that no console error appears (the favicon
included), that the header's links are visible (not white on white) and that the skip link
leads to the main content.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

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
from tests.web.test_browser import CHROMIUM_FLAGS, live_server  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser

WIDTHS = (1280, 390)
# Screenshots of every page visited, at both widths, when set (docs/screenshots/README.md):
# see docs/screenshots/README.md for the one command that writes them all.
SHOTS = Path(os.environ["MARKET_SCREENSHOTS"]) if os.environ.get("MARKET_SCREENSHOTS") else None

# What the page measures: its width, the header's visible links, the skip link's target.
MEASURE = """() => {
  const links = [...document.querySelectorAll('header.top nav a, header.top nav button')];
  const hidden = links.filter(a => {
    const r = a.getBoundingClientRect();
    const s = getComputedStyle(a);
    return r.width === 0 || r.height === 0 || s.visibility === 'hidden'
      || s.color === getComputedStyle(document.querySelector('header.top')).backgroundColor;
  }).map(a => a.textContent.trim());
  const skip = document.querySelector('a.skip-link');
  // The elements sticking out on the right (the deepest ones name the culprit).
  const out = e => e.getBoundingClientRect().right > window.innerWidth + 0.5;
  const wide = [...document.querySelectorAll('body *')]
    .filter(e => out(e) && !e.closest('.table-scroll') && !e.closest('.skip-link'))
    .filter(e => ![...e.children].some(out))
    .slice(0, 5)
    .map(e => e.tagName.toLowerCase() + ' ' + (e.textContent || '').trim().slice(0, 40));
  return {
    scroll: document.documentElement.scrollWidth,
    inner: window.innerWidth,
    hidden: hidden,
    wide: wide,
    skip: skip ? skip.getAttribute('href') : null,
    main: document.querySelector('main#content') !== null,
    icon: document.querySelector('link[rel=icon]') !== null,
  };
}"""


def _chromium() -> str:
    import shutil

    from tests.conftest import service_unavailable

    found = shutil.which("chromium")
    if found is None:
        service_unavailable("Chromium", "no `chromium` on PATH; apt-get install chromium")
    assert found is not None
    return found


def _nav_links(page: Any) -> list[str]:
    hrefs: list[str] = page.eval_on_selector_all(
        "header.top nav a[href^='/']", "links => links.map(a => a.getAttribute('href'))"
    )
    return [h for h in hrefs if not h.startswith("/api/")]


def check_pages(
    page: Any, base: str, paths: list[str], bad: list[dict], role: str = "anyone"
) -> list[dict]:
    """Visit each path at both widths; return one measurement per (path, width)."""
    seen = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        for path in paths:
            response = page.goto(base + path)
            assert response is not None and response.status < 400, (path, response)
            found = page.evaluate(MEASURE)
            found.update(path=path, width=width)
            if SHOTS:
                SHOTS.mkdir(parents=True, exist_ok=True)
                parts = path.strip("/").split("/")
                slug = "-".join(p if len(p) < 24 else "one" for p in parts) or "home"
                name = f"{role}-{slug}-{width}.jpg"
                page.screenshot(path=str(SHOTS / name), type="jpeg", quality=70)
            seen.append(found)
            if (
                found["scroll"] > found["inner"]
                or found["hidden"]
                or found["skip"] != "#content"
                or not (found["main"] and found["icon"])
            ):
                bad.append(found)
    return seen


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_page_scrolls_sideways_for_any_role_at_390_and_1280(
    live_server: str,  # noqa: F811
    listed_cancer,  # noqa: F811
    people,  # noqa: F811
    seed_run,  # noqa: F811
    tmp_path: Path,
) -> None:
    dataset_id = listed_cancer["id"]
    buyer = people["researcher"]
    runs = [
        seed_run(dataset_id, buyer.id, finished_at=when(1, 5), total="2.48", epsilon_after=0.5),
        seed_run(dataset_id, buyer.id, finished_at=when(2, 9), total="3.10", epsilon_after=0.8),
        seed_run(
            dataset_id,
            buyer.id,
            finished_at=when(3, 2),
            total="4.00",
            epsilon_after=1.0,
            state=ReleaseState.RESERVED,
        ),
    ]
    from playwright.sync_api import sync_playwright

    extra = {
        "owner": [
            f"/datasets/{dataset_id}",
            f"/runs/{runs[0]}",
            f"/ledger/privacy/{dataset_id}",
            "/datasets/new",
        ],
        "researcher": [f"/datasets/{dataset_id}", f"/runs/{runs[0]}"],
        "auditor": [
            f"/datasets/{dataset_id}",
            f"/runs/{runs[0]}",
            f"/ledger/privacy/{dataset_id}",
            "/audit/entries",
        ],
        "admin": [f"/runs/{runs[1]}", f"/ledger/privacy/{dataset_id}", "/audit/entries"],
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=_chromium(), headless=True, args=CHROMIUM_FLAGS
        )
        bad: list[dict] = []
        problems: list[str] = []
        try:
            for role in ("owner", "researcher", "auditor", "admin"):
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                page = context.new_page()
                page.on(
                    "console",
                    lambda m, p=problems: (
                        p.append(f"{m.text} {m.location}") if m.type == "error" else None
                    ),
                )
                page.on("pageerror", lambda exc, p=problems: p.append(str(exc)))
                page.goto(live_server + "/login")
                page.fill("#email", people[role].email)
                page.fill("#password", TEST_PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(live_server + "/")
                paths = ["/", *_nav_links(page), *extra[role]]
                if role == "researcher":  # a quote, asked through the form
                    page.goto(f"{live_server}/datasets/{dataset_id}")
                    page.click("[data-testid=ask-quote]")
                    page.wait_for_url(f"{live_server}/quotes/*")
                    paths.append(page.url.removeprefix(live_server))
                check_pages(page, live_server, list(dict.fromkeys(paths)), bad, role)
                context.close()
        finally:
            browser.close()
    assert bad == [], "\n".join(map(str, bad))
    assert problems == [], problems


def test_the_same_navigation_rules_for_every_role(client, make_user) -> None:
    """Owners see the ledgers too: the pages open for them, so the header links them."""
    from tests.helpers import login

    expected = {
        Role.OWNER: ["/ledger/privacy", "/ledger/costs", "/dashboard", "/my/datasets"],
        Role.RESEARCHER: ["/ledger/costs", "/my/runs"],
        Role.AUDITOR: ["/ledger/privacy", "/ledger/costs", "/audit", "/runs"],
    }
    for role, paths in expected.items():
        user = make_user(role)
        web = client.application.test_client()
        assert login(web, user.email, TEST_PASSWORD) == 302
        html = web.get("/").get_data(as_text=True)
        nav = html[html.index("<nav") : html.index("</nav>")]
        for path in paths:
            assert f'href="{path}"' in nav, (role, path)
            assert web.get(path).status_code == 200, (role, path)


def test_the_favicon_is_a_real_file(client) -> None:
    html = client.get("/").get_data(as_text=True)
    assert 'rel="icon"' in html
    redirect = client.get("/favicon.ico")
    assert redirect.status_code == 301
    assert redirect.headers["Location"].endswith("/static/favicon.svg")
    with client.get("/static/favicon.svg") as icon:
        assert icon.status_code == 200 and b"<svg" in icon.data
