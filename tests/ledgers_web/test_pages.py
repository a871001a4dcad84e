"""The ledger pages: who may open what, the plots' points, totals against the rows, and
downloads equal to the JSON API's content."""

from __future__ import annotations

import csv
import io
import json
import re
from decimal import Decimal

import pytest

from market.accounts.models import Role
from market.audit import signing
from market.trading.models import ReleaseState
from tests.ledgers_web.conftest import group, markers, svg_in, when

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ROLES = ["auditor", "admin", "owner", "other_owner", "researcher", "anonymous"]


@pytest.fixture
def seeded(people, listed_cancer, seed_run) -> dict:
    """Three releases (two counted, one released) and three runs across two months."""
    dataset_id = listed_cancer["id"]
    buyer = people["researcher"].id
    other_buyer = people["auditor"].id  # any account may be a buyer in the rows
    runs = [
        seed_run(dataset_id, buyer, finished_at=when(1, 5), total="2.48", epsilon_after=0.5),
        seed_run(
            dataset_id,
            buyer,
            finished_at=when(1, 20),
            total="3.01",
            royalty="1.50",
            epsilon_after=0.9,
            state=ReleaseState.RELEASED,
        ),
        seed_run(
            dataset_id,
            other_buyer,
            finished_at=when(2, 3),
            total="10.07",
            royalty="2.25",
            energy_kwh="0.0011",
            epsilon_after=0.8,
        ),
    ]
    return {"dataset_id": dataset_id, "runs": runs}


def status_of(app, browser_for, people, role: str, path: str) -> int:
    web = app.test_client() if role == "anonymous" else browser_for(people[role])
    return web.get(path).status_code


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        ("/ledger/privacy", {"auditor", "admin", "owner", "other_owner"}),
        ("/ledger/privacy/{id}", {"auditor", "admin", "owner"}),
        ("/ledger/privacy/{id}.csv", {"auditor", "admin", "owner"}),
        ("/ledger/privacy/{id}.json", {"auditor", "admin", "owner"}),
        ("/ledger/costs", {"auditor", "admin", "owner", "other_owner", "researcher"}),
        ("/ledger/costs.csv", {"auditor", "admin", "owner", "other_owner", "researcher"}),
        ("/ledger/costs.json", {"auditor", "admin", "owner", "other_owner", "researcher"}),
        ("/dashboard", {"owner", "other_owner", "admin"}),
        ("/audit", {"auditor", "admin"}),
        ("/audit/public-key.pem", {"auditor", "admin"}),
        ("/audit/checkpoint.txt", {"auditor", "admin"}),
    ],
)
def test_access_rules(app, browser_for, people, seeded, path: str, allowed: set[str]) -> None:
    path = path.format(id=seeded["dataset_id"])
    got = {role: status_of(app, browser_for, people, role, path) for role in ROLES}
    expected = {
        role: 200 if role in allowed else (302 if role == "anonymous" else 403) for role in ROLES
    }
    assert got == expected


def test_unknown_dataset_is_404(browser_for, people) -> None:
    assert browser_for(people["auditor"]).get("/ledger/privacy/nope").status_code == 404


def test_nav_links_by_role(browser_for, people) -> None:
    auditor = browser_for(people["auditor"]).get("/").get_data(as_text=True)
    for link in ("Privacy ledger", "Cost ledger", "Audit log"):
        assert f">{link}</a>" in auditor
    assert ">Dashboard</a>" not in auditor
    owner = browser_for(people["owner"]).get("/").get_data(as_text=True)
    assert ">Dashboard</a>" in owner and ">Audit log</a>" not in owner


def test_privacy_ledger_page_plots_counted_releases_and_downloads_equal_the_api(
    app, client, browser_for, people, seeded, token_for
) -> None:
    dataset_id = seeded["dataset_id"]
    web = browser_for(people["auditor"])
    html = web.get(f"/ledger/privacy/{dataset_id}").get_data(as_text=True)
    svg = svg_in(html, "epsilon-chart")
    assert svg.get("role") == "img" and svg.find("{http://www.w3.org/2000/svg}title") is not None
    assert markers(svg, "epsilon-after") == 2  # the released reservation does not count
    assert group(svg, "epsilon-cap") is not None
    assert "style=" not in html.split('data-testid="epsilon-chart"')[1].split("</svg>")[0]
    table = html.split('data-testid="releases"')[1].split("</table>")[0]
    assert table.count("<tr") == 1 + 3  # header and every release
    assert "noise multiplier 1.1, sample rate 0.05, 200 steps" in table
    assert 'class="uncounted"' in table

    api = token_for(people["auditor"])
    url = f"/api/v1/ledger/privacy?dataset_id={dataset_id}"
    api_csv = client.get(url, headers={**api, "Accept": "text/csv"}).get_data(as_text=True)
    page_csv = web.get(f"/ledger/privacy/{dataset_id}.csv")
    assert page_csv.mimetype == "text/csv"
    assert "attachment" in page_csv.headers["Content-Disposition"]
    assert page_csv.get_data(as_text=True) == api_csv
    rows = list(csv.DictReader(io.StringIO(api_csv)))
    assert [r["state"] for r in rows] == ["spent", "released", "spent"]
    assert (
        json.loads(web.get(f"/ledger/privacy/{dataset_id}.json").get_data())
        == client.get(url, headers=api).get_json()
    )


def test_privacy_index_scopes_datasets(browser_for, people, seeded) -> None:
    for role, sees in (("auditor", True), ("owner", True), ("other_owner", False)):
        html = browser_for(people[role]).get("/ledger/privacy").get_data(as_text=True)
        assert (f"/ledger/privacy/{seeded['dataset_id']}" in html) is sees, role


def _totals(html: str, testid: str) -> list[Decimal]:
    table = html.split(f'data-testid="{testid}"')[1].split("</table>")[0]
    return [Decimal(v) for v in re.findall(r'data-total="([^"]+)"', table)]


def test_cost_ledger_totals_equal_the_rows_and_csv_matches(
    app, client, browser_for, people, seeded, token_for
) -> None:
    web = browser_for(people["auditor"])
    html = web.get("/ledger/costs").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(web.get("/ledger/costs.csv").get_data(as_text=True))))
    assert len(rows) == 3
    row_sum = sum((Decimal(r["total"]) for r in rows), Decimal(0))
    assert row_sum == Decimal("15.56")
    for testid in ("by-dataset", "by-owner", "by-buyer", "by-month"):
        assert sum(_totals(html, testid), Decimal(0)) == row_sum, testid
    assert _totals(html, "by-month") == [Decimal("5.49"), Decimal("10.07")]
    assert _totals(html, "by-buyer") == [Decimal("5.49"), Decimal("10.07")]
    assert "15.56 EUR" in html.split('data-testid="overall-total-EUR"')[1][:40]
    svg = svg_in(html, "cost-chart")
    for series in ("series-energy", "series-emissions", "series-money-EUR"):
        assert markers(svg, series) == 3, series

    api = token_for(people["auditor"])
    api_csv = client.get("/api/v1/ledger/costs", headers={**api, "Accept": "text/csv"})
    assert web.get("/ledger/costs.csv").get_data() == api_csv.get_data()
    page_json = json.loads(web.get("/ledger/costs.json").get_data())
    assert page_json == client.get("/api/v1/ledger/costs", headers=api).get_json()
    assert Decimal(page_json["totals"]["total"]) == row_sum


def test_cost_ledger_is_scoped_by_role(browser_for, people, seeded) -> None:
    def count(role: str) -> int:
        body = browser_for(people[role]).get("/ledger/costs.csv").get_data(as_text=True)
        return len(list(csv.DictReader(io.StringIO(body))))

    assert count("researcher") == 2  # their own runs
    assert count("owner") == 3  # every run on their data
    assert count("other_owner") == 0
    html = browser_for(people["other_owner"]).get("/ledger/costs").get_data(as_text=True)
    assert "No finished run" in html and "<svg" not in html


def test_owner_dashboard_sums_royalties_and_shows_the_budget(
    browser_for, people, seeded, make_user
) -> None:
    html = browser_for(people["owner"]).get("/dashboard").get_data(as_text=True)
    table = html.split('data-testid="dashboard"')[1].split("</table>")[0]
    assert "4.75 EUR" in table  # royalties 1.00 + 1.50 + 2.25
    assert ">3</td>" in table  # runs
    svg = svg_in(html, "budget-chart")
    bars = [e for e in svg.iter() if re.search(r"committed-\d+$", e.get("id", ""))]
    assert len(bars) == 1  # one dataset
    assert markers(svg_in(html, "cost-chart"), "series-energy") == 3
    empty = browser_for(people["other_owner"]).get("/dashboard").get_data(as_text=True)
    assert "You have not listed a dataset yet" in empty


def test_audit_page_shows_the_latest_checkpoint_and_how_to_verify(
    app, client, browser_for, people, token_for
) -> None:
    web = browser_for(people["auditor"])
    html = web.get("/audit").get_data(as_text=True)
    checkpoint = client.get(
        "/api/v1/audit/checkpoint", headers=token_for(people["auditor"])
    ).get_json()
    assert checkpoint["root"] in html
    assert f"{checkpoint['tree_size']} entries" in html
    assert "market audit export --out log.jsonl" in html
    assert "market audit verify log.jsonl --public-key signing.pub --checkpoint kept.txt" in html
    settings = app.extensions["market"].settings
    pem = web.get("/audit/public-key.pem")
    assert pem.get_data(as_text=True) == signing.public_key_path(settings).read_text()
    note = web.get("/audit/checkpoint.txt").get_data(as_text=True)
    parsed = signing.parse_signed_note(note)
    assert parsed.tree_size == checkpoint["tree_size"]
    key = signing.load_public_key(pem.get_data())
    assert signing.verify_note(key, note.split("\n\n")[0] + "\n", parsed.signature)


def test_admin_also_sees_ledgers(browser_for, make_user, seeded) -> None:
    admin = browser_for(make_user(Role.ADMIN))
    assert admin.get(f"/ledger/privacy/{seeded['dataset_id']}").status_code == 200
