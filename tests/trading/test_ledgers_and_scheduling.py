"""The ledgers' API (JSON and CSV, scoped by role) and carbon-aware scheduling of purchases."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from market.accounts.models import Role
from tests.trading.conftest import quote_body

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _buy(client, headers, dataset_id, **changes):
    quote = client.post(
        "/api/v1/quotes", json=quote_body(dataset_id, **changes), headers=headers
    ).get_json()
    run = client.post("/api/v1/runs", json={"quote_id": quote["id"]}, headers=headers).get_json()
    return quote, run


def test_privacy_ledger_lists_every_release_with_composed_epsilon(
    client, listed_cancer, researcher, owner, make_user, token_for, consumer, wait_for_run
) -> None:
    _, buyer = researcher
    _, owner_headers = owner
    runs = [_buy(client, buyer, listed_cancer["id"])[1] for _ in range(2)]
    for run in runs:
        assert wait_for_run(buyer, run["id"])["status"] == "succeeded"
    auditor = token_for(make_user(Role.AUDITOR))
    ledger = client.get(
        f"/api/v1/ledger/privacy?dataset_id={listed_cancer['id']}", headers=auditor
    ).get_json()
    assert [r["state"] for r in ledger["releases"]] == ["spent", "spent"]
    first, second = ledger["releases"]
    assert first["epsilon_after"] < second["epsilon_after"] < first["epsilon"] + second["epsilon"]
    assert (
        client.get(
            f"/api/v1/ledger/privacy?dataset_id={listed_cancer['id']}", headers=owner_headers
        ).status_code
        == 200
    )
    assert (
        client.get(
            f"/api/v1/ledger/privacy?dataset_id={listed_cancer['id']}", headers=buyer
        ).status_code
        == 403
    )
    as_csv = client.get(
        f"/api/v1/ledger/privacy?dataset_id={listed_cancer['id']}",
        headers={**auditor, "Accept": "text/csv"},
    )
    assert as_csv.mimetype == "text/csv"
    assert len(list(csv.DictReader(io.StringIO(as_csv.get_data(as_text=True))))) == 2

    costs = client.get("/api/v1/ledger/costs", headers=auditor).get_json()
    assert len(costs["items"]) == 2
    item = costs["items"][0]
    assert item["method"] in ("rapl", "nvml", "estimated") and float(item["energy_kwh"]) > 0
    from decimal import Decimal

    assert Decimal(costs["totals"]["total"]) == sum(Decimal(i["total"]) for i in costs["items"])
    other = token_for(make_user(Role.RESEARCHER))
    assert client.get("/api/v1/ledger/costs", headers=other).get_json()["items"] == []
    assert len(client.get("/api/v1/ledger/costs", headers=owner_headers).get_json()["items"]) == 2
    cost_csv = client.get("/api/v1/ledger/costs", headers={**buyer, "Accept": "text/csv"})
    assert cost_csv.get_data(as_text=True).startswith("run_id,dataset_id,")


def test_a_deadline_schedules_the_run_at_the_greenest_start(
    app, client, listed_cancer, researcher
) -> None:
    _, headers = researcher
    deadline = datetime.now(UTC) + timedelta(hours=23)
    quote, run = _buy(client, headers, listed_cancer["id"], deadline=deadline.isoformat())
    assert quote["greenest_start"] is not None, quote
    schedule = quote["greenest_start"]["schedule"]
    start = datetime.fromisoformat(schedule["start"])
    assert datetime.fromisoformat(schedule["now"]) <= start <= deadline
    assert float(quote["greenest_start"]["emissions_kg"]) <= float(
        quote["estimate"]["emissions_kg"]
    )
    huey = app.extensions["market"].queue.huey
    # Huey keeps an eta'd task in the queue; the consumer moves it to its schedule on sight.
    [task] = huey.pending()
    assert task.args == (run["id"],)
    if start > datetime.now(UTC) + timedelta(minutes=1):
        assert task.eta is not None
        assert abs(task.eta.replace(tzinfo=UTC) - start) < timedelta(seconds=1)
    else:  # the greenest hour is now: queued to start at once
        assert task.eta is None


def test_naive_deadline_is_refused(client, listed_cancer, researcher) -> None:
    _, headers = researcher
    response = client.post(
        "/api/v1/quotes",
        json=quote_body(listed_cancer["id"], deadline="2030-01-01T00:00:00"),
        headers=headers,
    )
    assert response.status_code == 422
