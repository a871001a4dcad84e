"""A quote for a worker class with no live worker says so and cannot be bought."""

from __future__ import annotations

import pytest

from market.ops.heartbeat import forget
from tests.catalog.conftest import (  # noqa: F401 - fixtures reused here
    create_draft,
    metadata,
    owner,
    upload,
)
from tests.helpers import login
from tests.trading.conftest import (  # noqa: F401 - fixtures reused here
    listed_cancer,
    quote_body,
    researcher,
)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_no_live_worker_is_stated_on_the_quote_and_refused_at_purchase(
    app,
    client,
    listed_cancer,  # noqa: F811
    researcher,  # noqa: F811
) -> None:
    _, headers = researcher
    market = app.extensions["market"]
    # The suite's in-process worker beats for the cpu class: its quote can be bought.
    live = client.post("/api/v1/quotes", json=quote_body(listed_cancer["id"]), headers=headers)
    assert live.status_code == 201, live.get_json()
    assert live.get_json()["worker"]["live"] is True
    accuracy = live.get_json()["estimate"]["accuracy"]
    assert accuracy["calibrated"] is False and accuracy["relative_error"] is None

    # No worker of the gpu class runs anywhere.
    body = quote_body(listed_cancer["id"], worker_class="gpu")
    quote = client.post("/api/v1/quotes", json=body, headers=headers).get_json()
    assert quote["worker"] == {
        "worker_class": "gpu",
        "live": False,
        "live_workers": 0,
        "message": "no live worker of class gpu: this quote cannot be bought until one is running",
    }
    # The quote page says so too, and states the estimate's (unknown) error.
    account, _ = researcher
    web = app.test_client()
    assert login(web, account.email, account.password) == 302
    page = web.get(f"/quotes/{quote['id']}").get_data(as_text=True)
    assert 'data-testid="no-live-worker"' in page
    assert "no live worker of class gpu" in page
    assert 'data-testid="expected-error"' in page and "unknown" in page
    refused = client.post("/api/v1/runs", json={"quote_id": quote["id"]}, headers=headers)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "no_live_worker"
    assert refused.get_json()["error"]["details"] == {"worker_class": "gpu"}
    runs = client.get("/api/v1/runs", headers=headers).get_json()["items"]
    assert runs == []  # nothing created, no budget reserved
    dataset = client.get(f"/api/v1/datasets/{listed_cancer['id']}", headers=headers).get_json()
    assert dataset["budget"]["epsilon_spent"] == 0

    # The cpu worker stops (its heartbeat row goes): the cpu quote cannot be bought either.
    from sqlmodel import select

    from market.ops.models import WorkerHeartbeat

    with market.database.read() as session:
        workers = session.exec(select(WorkerHeartbeat.worker_id)).all()
    for worker in workers:
        forget(market.database, worker)
    stopped = client.post("/api/v1/runs", json={"quote_id": live.get_json()["id"]}, headers=headers)
    assert stopped.status_code == 409
    assert stopped.get_json()["error"]["code"] == "no_live_worker"
