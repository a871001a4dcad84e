"""Fenced workers: a run whose lease was taken is never delivered, and is charged once.

Reproduces the lost-lease overspend: a worker slower than the lease (here held at a
failpoint, as a large decrypt would hold it), the reaper fires, the original worker goes
on. Before fencing, the reservation was released and the late worker delivered anyway:
two runs of epsilon 1 were sold on a budget of 1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from market import create_app
from market.audit import ensure_signing_key
from market.trading import lifecycle
from market.trading.execution import execute_run
from market.trading.models import PrivacyRelease, ReleaseState, Run, RunPhase, RunStatus
from privacy.accounting import compose_epsilon
from privacy.training import RunPlan
from privacy.vault import init_keydir
from tests.catalog.conftest import cancer_rows, metadata, to_csv
from tests.conftest import app_overrides
from tests.trading.conftest import quote_body
from tests.trading.test_worker_process import wait_until

WAIT_S = 600.0  # generous: a busy machine only makes the wait longer, never the test fail

ONE_RUN_BUDGET = {"epsilon_total": 1.0, "delta": 1e-5, "max_epsilon_per_run": 1.0}


@pytest.fixture
def make_app(tmp_path: Path, database_url: str) -> Iterator[Callable[..., Any]]:
    """An app with its own trading settings (lease and heartbeat), disposed afterwards."""
    apps: list[Any] = []

    def make(**trading: Any) -> Any:
        init_keydir(tmp_path / "keys")
        app = create_app(app_overrides(tmp_path, database_url, trading=trading))
        app.config["TESTING"] = True
        ensure_signing_key(app.extensions["market"].settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.extensions["market"].database.dispose()


def _headers(client: Any, make_user: Any, role: Any) -> dict[str, str]:
    from tests.conftest import TEST_PASSWORD

    account = make_user(role)
    body = {"email": account.email, "password": TEST_PASSWORD}
    token = client.post("/api/v1/tokens", json=body).get_json()["token"]
    return {"Authorization": f"Bearer {token}"}


def _listed(client: Any, headers: dict[str, str]) -> str:
    meta = metadata(privacy=ONE_RUN_BUDGET)
    draft = client.post("/api/v1/datasets", json=meta, headers=headers).get_json()
    response = client.put(
        f"/api/v1/datasets/{draft['id']}/file",
        data=to_csv(cancer_rows()),
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert response.status_code == 200, response.get_json()
    return str(draft["id"])


def _buy(client: Any, headers: dict[str, str], dataset_id: str, **changes: Any) -> Any:
    body = quote_body(dataset_id, epsilon=1.0, **changes)
    quote = client.post("/api/v1/quotes", json=body, headers=headers).get_json()
    return client.post("/api/v1/runs", json={"quote_id": quote["id"]}, headers=headers)


def _row(app: Any, run_id: str) -> Run:
    with app.extensions["market"].database.read() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def _releases(app: Any, run_id: str) -> list[PrivacyRelease]:
    with app.extensions["market"].database.read() as session:
        return list(
            session.exec(select(PrivacyRelease).where(PrivacyRelease.run_id == run_id)).all()
        )


def _wait(predicate: Any, what: str) -> Any:
    return wait_until(predicate, WAIT_S, what)


def _marketplace(make_app: Any, make_user: Any, **trading: Any) -> tuple[Any, Any, Any, str]:
    """An app with these trading settings, a buyer's headers and a listed one-run dataset."""
    from market.accounts.models import Role

    app = make_app(**trading)
    client = app.test_client()
    owner = _headers(client, make_user, Role.OWNER)
    buyer = _headers(client, make_user, Role.RESEARCHER)
    return app, client, buyer, _listed(client, owner)


def _delivered_epsilon(app: Any, dataset_id: str) -> float:
    """Composition of what delivered runs released: must stay within the budget."""
    with app.extensions["market"].database.read() as session:
        rows = session.exec(
            select(PrivacyRelease.records)
            .join(Run, Run.id == PrivacyRelease.run_id)
            .where(PrivacyRelease.dataset_id == dataset_id, Run.status == RunStatus.SUCCEEDED)
        ).all()
    records = [r for records in rows for r in records]
    return compose_epsilon(records, delta=ONE_RUN_BUDGET["delta"]) if records else 0.0


@pytest.mark.slow
def test_a_run_reaped_while_its_worker_prepares_is_charged_and_never_delivered(
    tmp_path, make_app, make_user, monkeypatch
) -> None:
    # No heartbeat inside the lease (a frozen or starved worker): the reaper will fire.
    app, client, buyer, dataset_id = _marketplace(make_app, make_user, lease_s=1, heartbeat_s=3600)
    first = _buy(client, buyer, dataset_id)
    assert first.status_code == 202, first.get_json()
    run_id = first.get_json()["id"]

    go = tmp_path / "go"
    monkeypatch.setenv("MARKET_FAILPOINTS", f"data_touched=@{go}")
    market = app.extensions["market"]
    worker = threading.Thread(target=execute_run, args=(market, run_id))
    worker.start()
    try:
        _wait(lambda: _row(app, run_id).phase is RunPhase.DATA_TOUCHED, "the data to be touched")
        time.sleep(1.2)  # past the lease
        assert lifecycle.reap_lost_runs(market) == [run_id]
        # The data may have been decrypted: the plan stays charged, so the budget of 1 is
        # spent and a second run of 1 cannot be sold.
        second = _buy(client, buyer, dataset_id)
        assert second.status_code == 409, second.get_json()
        assert second.get_json()["error"]["code"] == "budget_exceeded"
    finally:
        go.touch()  # the slow worker goes on: decrypt, train, try to deliver
        worker.join(timeout=WAIT_S)
    assert not worker.is_alive()

    run = _row(app, run_id)
    assert (run.status, run.phase, run.error_code) == (
        RunStatus.FAILED,
        RunPhase.FAILED,
        "worker_lost",
    )
    assert run.model_name is None and run.privacy_receipt is None
    assert not (market.settings.models_dir / f"{run_id}.safetensors").exists()
    assert client.get(f"/api/v1/runs/{run_id}/model", headers=buyer).status_code != 200
    releases = _releases(app, run_id)
    assert [r.state for r in releases] == [ReleaseState.SPENT]  # charged exactly once
    assert releases[0].records == RunPlan.from_dict(_quote_plan(app, run)).records()
    assert _delivered_epsilon(app, dataset_id) <= ONE_RUN_BUDGET["epsilon_total"]


@pytest.mark.slow
def test_a_run_reaped_mid_training_is_not_overwritten_to_succeeded(
    tmp_path, make_app, make_user
) -> None:
    app, client, buyer, dataset_id = _marketplace(make_app, make_user, lease_s=1, heartbeat_s=3600)
    bought = _buy(
        client, buyer, dataset_id, epochs=400, model={"template": "mlp", "hidden": [256, 256]}
    )
    assert bought.status_code == 202, bought.get_json()
    run_id = bought.get_json()["id"]
    market = app.extensions["market"]
    worker = threading.Thread(target=execute_run, args=(market, run_id))
    worker.start()
    _wait(lambda: _row(app, run_id).progress_step > 0, "training to start")
    # Progress reports refresh the heartbeat every ~2 s; the lease is 1 s: reap in a gap.
    _wait(lambda: run_id in lifecycle.reap_lost_runs(market), "the reaper to take the run")
    worker.join(timeout=WAIT_S)
    assert not worker.is_alive()

    run = _row(app, run_id)
    assert run.status is RunStatus.FAILED and run.error_code == "worker_lost"
    assert run.progress_step == 0 and run.model_name is None
    assert not (market.settings.models_dir / f"{run_id}.safetensors").exists()
    releases = _releases(app, run_id)
    assert [r.state for r in releases] == [ReleaseState.SPENT]
    plan = RunPlan.from_dict(_quote_plan(app, run))
    assert releases[0].records == plan.records()  # the whole plan, not the steps that ran


def _quote_plan(app: Any, run: Run) -> dict[str, Any]:
    from market.trading.models import Quote

    with app.extensions["market"].database.read() as session:
        quote = session.get(Quote, run.quote_id)
        assert quote is not None
        return dict(quote.plan)


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_heartbeats_from_a_thread_keep_a_slow_preparation_alive(
    tmp_path, database_url, make_app, make_user, monkeypatch
) -> None:
    # A lease 25 heartbeats long: only a machine that stalls a thread for 5 s could lose it.
    app, client, buyer, dataset_id = _marketplace(make_app, make_user, lease_s=5, heartbeat_s=0.2)
    run_id = _buy(client, buyer, dataset_id).get_json()["id"]
    go = tmp_path / "go"
    monkeypatch.setenv("MARKET_FAILPOINTS", f"data_touched=@{go}")
    market = app.extensions["market"]
    worker = threading.Thread(target=execute_run, args=(market, run_id))
    worker.start()
    _wait(lambda: _row(app, run_id).phase is RunPhase.DATA_TOUCHED, "the data to be touched")
    # Over two lease lengths in the slow phase: the heartbeat thread keeps the lease.
    until = time.monotonic() + 11
    while time.monotonic() < until:
        assert lifecycle.reap_lost_runs(market) == []
        time.sleep(0.3)
    go.touch()
    worker.join(timeout=WAIT_S)
    run = _row(app, run_id)
    assert run.status is RunStatus.SUCCEEDED and run.phase is RunPhase.DELIVERED
    assert [r.state for r in _releases(app, run_id)] == [ReleaseState.SPENT]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_worker_write_is_fenced_by_the_lease_token(
    tmp_path, database_url, make_app, make_user
) -> None:
    app, client, buyer, dataset_id = _marketplace(make_app, make_user)
    run_id = _buy(client, buyer, dataset_id).get_json()["id"]
    market = app.extensions["market"]
    claimed = lifecycle.claim(market, run_id)
    assert claimed is not None and claimed.lease.token == 1
    assert lifecycle.claim(market, run_id) is None  # never claimed twice
    stale = lifecycle.Lease(run_id, claimed.lease.token - 1)
    for write in (
        lambda lease: lifecycle.heartbeat(market, lease),
        lambda lease: lifecycle.touch_data(market, lease),
        lambda lease: lifecycle.report_progress(market, lease, 1, 10, 0.1),
    ):
        with pytest.raises(lifecycle.LeaseLost):
            write(stale)
    assert not lifecycle.fail(market, run_id, code="x", message="y", lease=stale)
    assert _row(app, run_id).phase is RunPhase.CLAIMED  # nothing was written

    # Failing before the data is touched releases the reservation.
    assert lifecycle.fail(market, run_id, code="key_error", message="m", lease=claimed.lease)
    assert [r.state for r in _releases(app, run_id)] == [ReleaseState.RELEASED]
    with pytest.raises(lifecycle.LeaseLost):  # and the lease is gone with the run
        lifecycle.heartbeat(market, claimed.lease)
