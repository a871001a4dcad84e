"""Money at the precision of the thing priced: exact run terms, one rounding per statement.

A month of 1,000 tiny runs (each term far below a cent, priced by the real ``price_run`` and
stored in the receipt shape a delivered run stores) must produce a statement whose total is
the exact sum of every term rounded once, and whose printed lines add up to that total. A
per-run rounding to the cent would have billed nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from market.accounts.models import Role
from market.costing.pricing import human_emissions, human_energy, price_run
from market.money import Money, round_statement
from market.trading.models import Quote, Run, RunStatus
from tests.ledgers_web.conftest import browser_for  # noqa: F401 - fixture reused here
from tests.trading.conftest import (  # noqa: F401 - fixtures reused here
    create_draft,
    listed_cancer,
    owner,
    researcher,
    upload,
)

CENT = Decimal("0.01")
TERMS = ("compute", "energy", "environment", "royalty", "platform_fee")
MARCH = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Usage:
    seconds: float
    avg_power_w: float
    method: str = "rapl"


def _receipt(measured: dict[str, Any], usage: Usage, started: datetime) -> dict[str, Any]:
    """A cost receipt of the stored shape (market.trading.schemas.CostReceipt)."""
    return {
        "measured": measured,
        "measurement": {
            "method": usage.method,
            "started_at": started.isoformat(),
            "seconds": usage.seconds,
            "cpu_seconds": usage.seconds,
            "peak_rss_bytes": 100_000_000,
            "energy_kwh": float(measured["energy_kwh"]),
            "avg_power_w": usage.avg_power_w,
            "cpu_utilisation": 1.0,
            "cores": 1,
            "samples": 3,
            "completed": True,
            "energy_components_kwh": {"cpu": float(measured["energy_kwh"])},
            "notes": [],
        },
        "estimate": {
            "worker_class": "cpu",
            "region": "de",
            "estimate": {
                "method": "estimate",
                "seconds": usage.seconds,
                "avg_power_w": usage.avg_power_w,
                "energy_kwh": float(measured["energy_kwh"]),
            },
            "now": measured,
            "schedule": None,
            "greenest": None,
        },
        "timings": {"prepare_s": 0.1, "train_s": usage.seconds},
    }


def seed_priced_runs(
    app: Any, dataset_id: str, buyer_id: int, *, count: int, start: datetime, seconds: float
) -> list[dict[str, Any]]:
    """``count`` delivered runs priced by the real price model, finishing a minute apart."""
    settings = app.extensions["market"].settings.costing
    worker = settings.worker_classes["cpu"]
    region = settings.regions[settings.default_region]
    priced: list[dict[str, Any]] = []
    with app.extensions["market"].database.write() as session:
        for i in range(count):
            # Slightly different usage per run, so the terms are not all equal.
            usage = Usage(seconds=seconds + (i % 7) * 0.013, avg_power_w=20.0 + (i % 5))
            royalty = Money(Decimal("0.000010") * (i % 3), settings.currency)
            measured = price_run(usage, worker, region, royalty=royalty, settings=settings)
            terms = measured.to_dict()
            finished = start + timedelta(minutes=i)
            quote = Quote.model_validate(
                {
                    "id": uuid.uuid4().hex,
                    "dataset_id": dataset_id,
                    "researcher_id": buyer_id,
                    "request": {"epsilon": 0.1},
                    "plan": {"epsilon": 0.1},
                    "estimate": {},
                    "price_total_minor": 0,
                    "currency": settings.currency,
                    "fits_budget": True,
                    "epsilon_after": 0.1,
                    "expires_at": finished,
                    "used_at": finished,
                }
            )
            session.add(quote)
            session.flush()
            session.add(
                Run.model_validate(
                    {
                        "id": uuid.uuid4().hex,
                        "quote_id": quote.id,
                        "dataset_id": dataset_id,
                        "buyer_id": buyer_id,
                        "status": RunStatus.SUCCEEDED,
                        "price_total_minor": 0,
                        "currency": settings.currency,
                        "cost_receipt": _receipt(terms, usage, finished - timedelta(seconds=3)),
                        "created_at": finished - timedelta(seconds=5),
                        "finished_at": finished,
                    }
                )
            )
            priced.append(terms)
    return priced


def _exact(priced: list[dict[str, Any]], term: str) -> Decimal:
    return sum((Decimal(p[term]["amount"]) for p in priced), Decimal(0))


def _line(section: dict[str, Any], kind: str) -> dict[str, Any]:
    (line,) = [x for x in section["lines"] if x["kind"] == kind]
    return line


def test_a_month_of_tiny_runs_is_rounded_once_on_the_statement(
    app,
    client,
    make_user,
    token_for,
    listed_cancer,  # noqa: F811
    owner,  # noqa: F811
    researcher,  # noqa: F811
    browser_for,  # noqa: F811
) -> None:
    buyer, headers = researcher
    priced = seed_priced_runs(
        app, listed_cancer["id"], buyer.id, count=1000, start=MARCH, seconds=2.2
    )
    # Two runs in April: not on March's statement.
    seed_priced_runs(
        app,
        listed_cancer["id"],
        buyer.id,
        count=2,
        start=datetime(2026, 4, 1, tzinfo=UTC),
        seconds=2.2,
    )
    compute_terms = [Decimal(p["compute"]["amount"]) for p in priced]
    assert all(Decimal(0) < t < Decimal("0.005") for t in compute_terms)
    # Rounded to the cent per run, every compute term would have been billed as 0.00.
    assert all(t.quantize(CENT, rounding=ROUND_HALF_EVEN) == 0 for t in compute_terms)

    response = client.get("/api/v1/statements?month=2026-03", headers=headers)
    assert response.status_code == 200, response.get_json()
    statement = response.get_json()
    charges = statement["charges"]
    assert statement["month"] == "2026-03" and statement["currency"] == "EUR"

    exact_total = sum((_exact(priced, t) for t in TERMS), Decimal(0))
    assert Decimal(charges["exact"]) == exact_total
    assert Decimal(charges["total"]) == exact_total.quantize(CENT, rounding=ROUND_HALF_EVEN)
    assert Decimal(charges["total"]) == sum(Decimal(x["amount"]) for x in charges["lines"])
    assert Decimal(charges["total"]) > 0
    for term in ("compute", "energy", "environment", "royalty"):
        line = _line(charges, term)
        assert Decimal(line["exact"]) == _exact(priced, term), term
        assert abs(Decimal(line["amount"]) - Decimal(line["exact"])) < CENT
    assert _line(charges, "compute")["items"] == 1000
    assert Decimal(_line(charges, "compute")["amount"]) > 0

    # The dataset's owner is credited the royalties of the same month, rounded once.
    owner_account, owner_headers = owner
    credits = client.get("/api/v1/statements?month=2026-03", headers=owner_headers).get_json()[
        "credits"
    ]
    royalties = _exact(priced, "royalty")
    assert Decimal(_line(credits, "run_royalties")["exact"]) == royalties
    assert Decimal(credits["total"]) == royalties.quantize(CENT, rounding=ROUND_HALF_EVEN)

    # Auditors read any account's statement; a researcher cannot read the owner's.
    auditor = make_user(Role.AUDITOR)
    seen = client.get(
        f"/api/v1/statements?month=2026-03&account_id={buyer.id}", headers=token_for(auditor)
    )
    assert seen.status_code == 200 and seen.get_json()["charges"] == charges
    refused = client.get(
        f"/api/v1/statements?month=2026-03&account_id={owner_account.id}", headers=headers
    )
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "forbidden"
    bad = client.get("/api/v1/statements?month=2026-13", headers=headers)
    assert bad.status_code == 422

    # The page prints the same lines and total.
    web = browser_for(buyer)
    page = web.get("/statements?month=2026-03").get_data(as_text=True)
    assert f'data-total="{charges["total"]}"' in page
    assert f"{_line(charges, 'compute')['exact']} EUR" in page


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_receipt_never_shows_zero_for_a_non_zero_term(
    app,
    client,
    listed_cancer,  # noqa: F811
    researcher,  # noqa: F811
    browser_for,  # noqa: F811
) -> None:
    buyer, headers = researcher
    priced = seed_priced_runs(app, listed_cancer["id"], buyer.id, count=1, start=MARCH, seconds=2.2)
    runs = client.get("/api/v1/runs", headers=headers).get_json()["items"]
    measured = runs[0]["cost_receipt"]["measured"]
    page = browser_for(buyer).get(f"/runs/{runs[0]['id']}").get_data(as_text=True)
    for term in ("compute", "energy", "environment"):
        amount = Decimal(measured[term]["amount"])
        assert amount > 0
        assert measured[term] == priced[0][term]
        assert f"{measured[term]['amount']} EUR" in page  # as it is, e.g. 0.000048889 EUR
    # Energy and emissions in human units, never 2.32e-05 kWh.
    assert human_energy(measured["energy_kwh"]) in page
    assert human_emissions(measured["emissions_kg"]) in page
    assert "e-0" not in page.split('data-testid="cost-receipt"')[1].split("</table>")[0]


def test_human_units() -> None:
    assert human_energy("0.0000232") == "23.2 mWh"
    assert human_energy("0.0232") == "23.2 Wh"
    assert human_energy("1.5") == "1.5 kWh"
    assert human_emissions("0.00928") == "9.28 g CO2e"
    assert human_emissions("0.00000928") == "9.28 mg CO2e"
    assert human_emissions("0") == "0 kg CO2e"


amounts = st.decimals(min_value=Decimal(0), max_value=Decimal(1000), places=9)


@given(st.lists(amounts, min_size=1, max_size=12))
def test_printed_lines_add_up_to_the_exact_sum_rounded_once(lines: list[Decimal]) -> None:
    printed, total = round_statement(lines, "EUR")
    assert total == sum(lines, Decimal(0)).quantize(CENT, rounding=ROUND_HALF_EVEN)
    assert sum(printed, Decimal(0)) == total
    for exact, shown in zip(lines, printed, strict=True):
        assert shown == shown.quantize(CENT)
        assert abs(shown - exact) < CENT
