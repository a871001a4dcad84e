"""Real runs through the real worker: the run page's cost breakdown chart, and the ledgers'
pages over what the runs actually recorded."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from market.accounts.models import Role
from tests.ledgers_web.conftest import markers, svg_in
from tests.trading.conftest import quote_body

pytestmark = [
    pytest.mark.parametrize("database_url", ["sqlite"], indirect=True),
    pytest.mark.slow,
]


def test_real_runs_show_on_the_run_page_and_in_the_ledgers(
    client, listed_cancer, researcher, owner, make_user, consumer, wait_for_run, browser_for
) -> None:
    buyer_account, buyer = researcher
    dataset_id = listed_cancer["id"]
    run_ids = []
    for _ in range(2):
        quote = client.post("/api/v1/quotes", json=quote_body(dataset_id), headers=buyer)
        run = client.post("/api/v1/runs", json={"quote_id": quote.get_json()["id"]}, headers=buyer)
        run_ids.append(run.get_json()["id"])
    for run_id in run_ids:
        assert wait_for_run(buyer, run_id)["status"] == "succeeded"

    web = browser_for(buyer_account)
    html = web.get(f"/runs/{run_ids[0]}").get_data(as_text=True)
    svg = svg_in(html, "cost-breakdown")
    bars = [e for e in svg.iter() if "-term-" in e.get("id", "")]
    assert len(bars) == 5  # compute, energy, environment, royalty, platform fee
    labels = "".join(svg.itertext())
    for term in ("Compute", "Energy", "Environment", "Royalty", "Platform fee"):
        assert term in labels
    assert html.index('data-testid="cost-receipt"') < html.index('data-testid="cost-breakdown"')

    auditor = browser_for(make_user(Role.AUDITOR))
    ledger = auditor.get(f"/ledger/privacy/{dataset_id}").get_data(as_text=True)
    assert markers(svg_in(ledger, "epsilon-chart"), "epsilon-after") == 2
    rows = list(
        csv.DictReader(
            io.StringIO(auditor.get(f"/ledger/privacy/{dataset_id}.csv").get_data(as_text=True))
        )
    )
    afters = [float(r["epsilon_after"]) for r in rows]
    assert [r["state"] for r in rows] == ["spent", "spent"] and afters == sorted(afters)

    costs = auditor.get("/ledger/costs").get_data(as_text=True)
    cost_rows = list(
        csv.DictReader(io.StringIO(auditor.get("/ledger/costs.csv").get_data(as_text=True)))
    )
    assert len(cost_rows) == 2 and all(float(r["energy_kwh"]) > 0 for r in cost_rows)
    total = sum((Decimal(r["total"]) for r in cost_rows), Decimal(0))
    assert f"{total} EUR" in costs
    assert markers(svg_in(costs, "cost-chart"), "series-emissions") == 2
