"""Ledger pages: a listed dataset, people of every role, and ledger rows seeded directly.

``seed_run`` writes what a finished run leaves behind (a quote, a succeeded run with its cost
receipt, a privacy release) straight into the database, with chosen amounts and dates, so
totals and plots can be checked against known numbers without training. The end-to-end test
buys real runs through the real worker instead.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask.testing import FlaskClient

from market.accounts.models import Role
from market.trading.models import PrivacyRelease, Quote, ReleaseState, Run, RunStatus
from tests.helpers import login
from tests.trading.conftest import (  # noqa: F401 - fixtures reused here
    NPZ_METADATA,
    cancer_rows,
    consumer,
    create_draft,
    digits_npz,
    listed_cancer,
    metadata,
    owner,
    researcher,
    to_csv,
    upload,
    wait_for_run,
)

SVG = "{http://www.w3.org/2000/svg}"
MECHANISM = {
    "mechanism": "subsampled_gaussian",
    "noise_multiplier": 1.1,
    "sample_rate": 0.05,
    "steps": 200,
}


@pytest.fixture
def browser_for(app) -> Callable[[Any], FlaskClient]:
    """A test client signed in through the login page."""

    def sign_in(account: Any) -> FlaskClient:
        web = app.test_client()
        assert login(web, account.email, account.password) == 302
        return web

    return sign_in


@pytest.fixture
def people(make_user, owner) -> dict[str, Any]:  # noqa: F811
    return {
        "owner": owner[0],
        "other_owner": make_user(Role.OWNER),
        "researcher": make_user(Role.RESEARCHER),
        "auditor": make_user(Role.AUDITOR),
        "admin": make_user(Role.ADMIN),
    }


def money(amount: str, currency: str = "EUR") -> dict[str, str]:
    return {"amount": amount, "currency": currency}


@pytest.fixture
def seed_run(app) -> Callable[..., str]:
    """A finished run's rows: quote, succeeded run with cost receipt, privacy release."""

    def seed(
        dataset_id: str,
        buyer_id: int,
        *,
        finished_at: datetime,
        total: str,
        royalty: str = "1.00",
        energy_kwh: str = "0.0002",
        emissions_kg: str = "0.00005",
        epsilon: float = 0.5,
        epsilon_after: float = 0.5,
        state: ReleaseState = ReleaseState.SPENT,
    ) -> str:
        run_id = uuid.uuid4().hex
        terms = {
            "basis": "estimated",
            "currency": "EUR",
            "resources": 1,
            "it_energy_kwh": energy_kwh,
            "embodied_kg": "0",
            "price_per_resource_hour": "0.05",
            "electricity_price_per_kwh": "0.25",
            "carbon_price_per_tonne": "80",
            "platform_fee_rate": "0.05",
            "seconds": "12.5",
            "avg_power_w": "57.6",
            "pue": "1.2",
            "grid_intensity_g_per_kwh": "250",
            "energy_kwh": energy_kwh,
            "emissions_kg": emissions_kg,
            "sci_kg_per_run": emissions_kg,
            "compute": money("0.40"),
            "energy": money("0.01"),
            "environment": money("0.02"),
            "royalty": money(royalty),
            "platform_fee": money("0.05"),
            "total": money(total),
        }
        with app.extensions["market"].database.write() as session:
            quote = Quote.model_validate(
                {
                    "id": uuid.uuid4().hex,
                    "dataset_id": dataset_id,
                    "researcher_id": buyer_id,
                    "request": {"epsilon": epsilon},
                    "plan": {"epsilon": epsilon},
                    "estimate": {},
                    "price_total_minor": int(Decimal(total) * 100),
                    "currency": "EUR",
                    "fits_budget": True,
                    "epsilon_after": epsilon_after,
                    "expires_at": finished_at + timedelta(hours=1),
                    "used_at": finished_at,
                }
            )
            session.add(quote)
            session.flush()
            run = Run.model_validate(
                {
                    "id": run_id,
                    "quote_id": quote.id,
                    "dataset_id": dataset_id,
                    "buyer_id": buyer_id,
                    "status": RunStatus.SUCCEEDED,
                    "price_total_minor": int(Decimal(total) * 100),
                    "currency": "EUR",
                    # The shape execution._deliver stores (market.trading.schemas.CostReceipt).
                    "cost_receipt": {
                        "measured": terms,
                        "measurement": {
                            "method": "estimated",
                            "started_at": (finished_at - timedelta(seconds=13)).isoformat(),
                            "seconds": 12.5,
                            "cpu_seconds": 12.0,
                            "peak_rss_bytes": 200_000_000,
                            "energy_kwh": float(energy_kwh),
                            "avg_power_w": 57.6,
                            "cpu_utilisation": 1.0,
                            "cores": 1,
                            "samples": 13,
                            "completed": True,
                            "energy_components_kwh": {"cpu": float(energy_kwh)},
                            "notes": [],
                        },
                        "estimate": {
                            "worker_class": "cpu",
                            "region": "default",
                            "estimate": {
                                "method": "estimate",
                                "seconds": 12.0,
                                "avg_power_w": 57.6,
                                "energy_kwh": float(energy_kwh),
                            },
                            "now": terms,
                            "schedule": None,
                            "greenest": None,
                        },
                        "timings": {"prepare_s": 0.5, "train_s": 12.0},
                    },
                    "created_at": finished_at - timedelta(minutes=1),
                    "finished_at": finished_at,
                }
            )
            session.add(run)
            session.flush()
            session.add(
                PrivacyRelease.model_validate(
                    {
                        "dataset_id": dataset_id,
                        "run_id": run_id,
                        "state": state,
                        "records": [MECHANISM],
                        "epsilon": epsilon,
                        "epsilon_after": epsilon_after,
                    }
                )
            )
        return run_id

    return seed


def when(month: int, day: int = 1) -> datetime:
    return datetime(2026, month, day, 12, 0, tzinfo=UTC)


def svg_in(html: str, testid: str) -> ET.Element:
    """The <svg> inside the element with ``data-testid``, parsed as XML (so well-formed)."""
    start = html.index(f'data-testid="{testid}"')
    begin = html.index("<svg", start)
    end = html.index("</svg>", begin) + len("</svg>")
    return ET.fromstring(html[begin:end])


def group(svg: ET.Element, gid_suffix: str) -> ET.Element:
    found = [e for e in svg.iter() if e.get("id", "").endswith(gid_suffix)]
    assert len(found) == 1, f"{len(found)} elements with an id ending {gid_suffix!r}"
    return found[0]


def markers(svg: ET.Element, gid_suffix: str) -> int:
    """Plotted markers of a line: matplotlib writes one <use> per point."""
    return len(group(svg, gid_suffix).findall(f".//{SVG}use"))
