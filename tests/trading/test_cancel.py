"""Cancelling a run: released when the data was never opened, the plan charged after; only
the buyer may; a cancelled worker's next fenced write stops it."""

from __future__ import annotations

import pytest
from sqlmodel import select

from market.audit.models import AuditEntry
from market.trading import lifecycle
from market.trading.models import PrivacyRelease, ReleaseState, Run
from tests.helpers import csrf_token_from
from tests.trading.conftest import quote_body
from tests.trading.test_fencing import make_app  # noqa: F401 - fixture reused
from tests.trading.test_pages import ask_quote, browser_for  # noqa: F401 - fixture reused

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _buy(client, headers, dataset_id: str) -> str:
    quote = client.post("/api/v1/quotes", json=quote_body(dataset_id), headers=headers)
    assert quote.status_code == 201, quote.get_json()
    run = client.post("/api/v1/runs", json={"quote_id": quote.get_json()["id"]}, headers=headers)
    assert run.status_code == 202, run.get_json()
    return run.get_json()["id"]


def _release(app, run_id: str) -> PrivacyRelease:
    with app.extensions["market"].database.read() as session:
        found = session.exec(select(PrivacyRelease).where(PrivacyRelease.run_id == run_id)).one()
        return found


def _kinds(app, run_id: str) -> list[str]:
    with app.extensions["market"].database.read() as session:
        rows = session.exec(select(AuditEntry).where(AuditEntry.subject == run_id)).all()
        return [r.kind for r in rows]


def test_the_buyer_cancels_a_queued_run_on_its_page_and_nothing_is_charged(
    app,
    client,
    listed_cancer,
    researcher,
    browser_for,  # noqa: F811
) -> None:
    account, headers = researcher
    run_id = _buy(client, headers, listed_cancer["id"])  # no consumer: it stays queued
    assert _release(app, run_id).state is ReleaseState.RESERVED
    web = browser_for(account)
    page = web.get(f"/runs/{run_id}").get_data(as_text=True)
    assert 'data-testid="cancel"' in page and "nothing is charged" in page
    token = csrf_token_from(web, f"/runs/{run_id}")
    done = web.post(f"/runs/{run_id}/cancel", data={"csrf_token": token})
    assert done.status_code == 303 and done.headers["Location"] == f"/runs/{run_id}"
    page = web.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "Run cancelled" in page and 'data-testid="cancel"' not in page
    body = client.get(f"/api/v1/runs/{run_id}", headers=headers).get_json()
    assert body["status"] == "failed" and body["error"]["code"] == "cancelled"
    assert _release(app, run_id).state is ReleaseState.RELEASED
    assert "run.cancelled" in _kinds(app, run_id)
    budget = client.get(f"/api/v1/datasets/{listed_cancer['id']}", headers=headers).get_json()
    assert budget["budget"]["epsilon_remaining"] == budget["budget"]["epsilon_total"]
    # A worker that picks the job up later finds nothing to claim.
    assert lifecycle.claim(app.extensions["market"], run_id) is None
    again = client.post(f"/api/v1/runs/{run_id}/cancel", headers=headers)
    assert again.status_code == 409 and again.get_json()["error"]["code"]


def test_cancelling_after_the_data_was_opened_charges_the_plan_and_stops_the_worker(
    app, client, listed_cancer, researcher
) -> None:
    _, headers = researcher
    run_id = _buy(client, headers, listed_cancer["id"])
    market = app.extensions["market"]
    claimed = lifecycle.claim(market, run_id)
    assert claimed is not None
    lifecycle.touch_data(market, claimed.lease)
    response = client.post(f"/api/v1/runs/{run_id}/cancel", headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["error"]["code"] == "cancelled"
    release = _release(app, run_id)
    assert release.state is ReleaseState.SPENT and release.epsilon > 0
    # The worker's next fenced write (its heartbeat) raises: training's cancel event is set.
    with pytest.raises(lifecycle.LeaseLost):
        lifecycle.heartbeat(market, claimed.lease)


def test_only_the_buyer_cancels(
    app, client, listed_cancer, researcher, make_user, token_for, owner
) -> None:
    from market.accounts.models import Role

    _, headers = researcher
    run_id = _buy(client, headers, listed_cancer["id"])
    other = token_for(make_user(Role.RESEARCHER))
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=other).status_code == 404
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=owner[1]).status_code == 403
    with app.extensions["market"].database.read() as session:
        run = session.get(Run, run_id)
        assert run is not None and run.status.value == "queued"


@pytest.mark.slow
def test_cancelling_mid_training_stops_the_worker_delivers_nothing_and_charges_the_plan(
    tmp_path,
    make_app,  # noqa: F811
    make_user,
) -> None:
    import threading

    from market.trading.execution import execute_run
    from market.trading.models import RunStatus
    from privacy.training import RunPlan
    from tests.trading.test_fencing import (
        WAIT_S,
        _buy,
        _marketplace,
        _quote_plan,
        _releases,
        _row,
        _wait,
    )

    # Heartbeats every 0.2 s: the worker learns of the cancellation quickly (its heartbeat
    # thread sets training's cancel event), whatever the machine's load.
    app, client, buyer, dataset_id = _marketplace(make_app, make_user, heartbeat_s=0.2)
    bought = _buy(
        client, buyer, dataset_id, epochs=400, model={"template": "mlp", "hidden": [256, 256]}
    )
    assert bought.status_code == 202, bought.get_json()
    run_id = bought.get_json()["id"]
    market = app.extensions["market"]
    worker = threading.Thread(target=execute_run, args=(market, run_id))
    worker.start()
    _wait(lambda: _row(app, run_id).progress_step > 0, "training to start")
    cancelled = client.post(f"/api/v1/runs/{run_id}/cancel", headers=buyer)
    assert cancelled.status_code == 200, cancelled.get_json()
    worker.join(timeout=WAIT_S)
    assert not worker.is_alive()

    run = _row(app, run_id)
    assert run.status is RunStatus.FAILED and run.error_code == "cancelled"
    assert run.model_name is None and run.progress_step == 0
    assert not (market.settings.models_dir / f"{run_id}.safetensors").exists()
    releases = _releases(app, run_id)
    assert [r.state for r in releases] == [ReleaseState.SPENT]
    assert releases[0].records == RunPlan.from_dict(_quote_plan(app, run)).records()
