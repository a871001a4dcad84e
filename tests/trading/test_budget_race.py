"""Concurrent purchases never overspend: with a budget that holds exactly k runs, exactly k
of 32 simultaneous purchases succeed, and the composed epsilon stays under the cap."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import select

from market.catalog.models import Dataset
from market.trading.models import PrivacyRelease, ReleaseState
from privacy.accounting import compose_epsilon
from privacy.training import RunPlan
from tests.trading.conftest import quote_body

BUYERS = 32
FITTING = 5


def test_exactly_k_of_32_concurrent_purchases_succeed(
    app, client, listed_cancer, researcher
) -> None:
    _, headers = researcher
    quotes = [
        client.post(
            "/api/v1/quotes", json=quote_body(listed_cancer["id"], epsilon=0.5), headers=headers
        ).get_json()
        for _ in range(BUYERS)
    ]
    assert all(q["fits_budget"] for q in quotes)
    database = app.extensions["market"].database
    from market.trading.models import Quote

    with database.read() as session:
        plan = RunPlan.from_dict(session.get(Quote, quotes[0]["id"]).plan)
    delta = listed_cancer["budget"]["delta"]
    k_runs = compose_epsilon(plan.records() * FITTING, delta=delta)
    k_plus_one = compose_epsilon(plan.records() * (FITTING + 1), delta=delta)
    assert k_runs < k_plus_one
    cap = (k_runs + k_plus_one) / 2
    with database.write() as session:
        dataset = session.get(Dataset, listed_cancer["id"])
        dataset.epsilon_total = cap
        session.add(dataset)

    statuses: list[int] = []
    codes: list[str] = []
    barrier = threading.Barrier(BUYERS)

    def buy(quote_id: str) -> None:
        local = app.test_client()
        barrier.wait()
        response = local.post("/api/v1/runs", json={"quote_id": quote_id}, headers=headers)
        statuses.append(response.status_code)
        if response.status_code != 202:
            codes.append(response.get_json()["error"]["code"])

    threads = [threading.Thread(target=buy, args=(q["id"],)) for q in quotes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert statuses.count(202) == FITTING, statuses
    assert set(codes) == {"budget_exceeded"}
    with database.read() as session:
        releases = session.exec(
            select(PrivacyRelease).where(PrivacyRelease.dataset_id == listed_cancer["id"])
        ).all()
    assert len(releases) == FITTING
    assert all(r.state is ReleaseState.RESERVED for r in releases)
    composed = compose_epsilon([rec for r in releases for rec in r.records], delta=delta)
    assert composed <= cap
    assert max(r.epsilon_after for r in releases) <= cap
    # Composition, not a sum: summing epsilons, the same cap would hold fewer runs.
    assert int(cap // plan.epsilon) < FITTING


def test_a_used_or_expired_quote_is_refused(app, client, listed_cancer, researcher) -> None:
    _, headers = researcher
    quote = client.post(
        "/api/v1/quotes", json=quote_body(listed_cancer["id"]), headers=headers
    ).get_json()
    assert (
        client.post("/api/v1/runs", json={"quote_id": quote["id"]}, headers=headers).status_code
        == 202
    )
    again = client.post("/api/v1/runs", json={"quote_id": quote["id"]}, headers=headers)
    assert again.status_code == 409
    assert again.get_json()["error"]["code"] == "quote_unavailable"
    from datetime import timedelta

    from market.db import utcnow
    from market.trading.models import Quote

    stale = client.post(
        "/api/v1/quotes", json=quote_body(listed_cancer["id"]), headers=headers
    ).get_json()
    with app.extensions["market"].database.write() as session:
        row = session.get(Quote, stale["id"])
        row.expires_at = utcnow() - timedelta(seconds=1)
        session.add(row)
    expired = client.post("/api/v1/runs", json={"quote_id": stale["id"]}, headers=headers)
    assert expired.status_code == 409
    assert "expired" in expired.get_json()["error"]["message"]


def test_quote_over_the_per_run_cap_says_why(client, listed_cancer, researcher) -> None:
    _, headers = researcher
    quote = client.post(
        "/api/v1/quotes", json=quote_body(listed_cancer["id"], epsilon=3.0), headers=headers
    ).get_json()
    assert quote["fits_budget"] is False
    assert "cap of 2 per run" in quote["reason"]
    bought = client.post("/api/v1/runs", json={"quote_id": quote["id"]}, headers=headers)
    assert bought.status_code == 409
    assert bought.get_json()["error"]["code"] == "budget_exceeded"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"model": {"layers": [{"type": "exec", "code": "import os"}]}}, "model"),
        ({"model": {"layers": [{"type": "linear", "out_features": 3}]}}, None),
        ({"epsilon": -1}, "epsilon"),
        ({"batch_size": 100000}, None),
        ({"delta": 0.5}, None),
        ({"worker_class": "quantum"}, None),
    ],
)
def test_bad_quote_requests_are_422_and_store_nothing(
    app, client, listed_cancer, researcher, change, field
) -> None:
    _, headers = researcher
    response = client.post(
        "/api/v1/quotes", json=quote_body(listed_cancer["id"], **change), headers=headers
    )
    assert response.status_code == 422, response.get_json()
    from market.trading.models import Quote

    with app.extensions["market"].database.read() as session:
        assert session.exec(select(Quote)).all() == []
