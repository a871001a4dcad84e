"""SIGKILL of a real `market worker` in each phase of a run (SQLite; two phases on PostgreSQL).

Each killed run is then reaped by another worker and charged by the lifecycle table: a run
killed before its data was touched is released; one killed while decrypting, training or
delivering is charged its whole plan, once, and never delivered. The composition of what
was delivered never exceeds the dataset's budget.
"""

from __future__ import annotations

import signal
import time
from typing import Any

import pytest
from sqlmodel import select

from market.trading.models import PrivacyRelease, Quote, ReleaseState, Run, RunPhase, RunStatus
from privacy.accounting import compose_epsilon
from privacy.training import RunPlan
from tests.trading.conftest import quote_body
from tests.trading.test_worker_process import (
    WAIT_S,
    start_worker,
    stop_processes,  # noqa: F401 - a fixture
    wait_until,
    worker_env,
)

LONG_MLP = {"template": "mlp", "hidden": [256, 256]}

# phase -> (failpoint that holds the worker there, or None for "wait for a training step";
#           the phase the run shows while held; whether the reaper must charge it)
PHASES: dict[str, tuple[str | None, RunPhase, bool]] = {
    "before decrypt": ("claimed", RunPhase.CLAIMED, False),
    "during decrypt": ("data_touched", RunPhase.DATA_TOUCHED, True),
    "during training": (None, RunPhase.TRAINING, True),
    "during delivery": ("delivering", RunPhase.TRAINING, True),
}
# The table is the lifecycle's and the same on every database; what PostgreSQL adds is its
# row locks (SELECT ... FOR UPDATE) on the reaper's and the worker's writes. One released and
# one charged phase exercise both kinds of reaping there, at half the worker starts.
POSTGRES_PHASES = ("before decrypt", "during delivery")


def _row(app: Any, run_id: str) -> Run:
    with app.extensions["market"].database.read() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


def _buy(client: Any, headers: dict[str, str], dataset_id: str, phase: str) -> str:
    long = phase == "during training"
    body = quote_body(
        dataset_id,
        epsilon=1.0,
        **({"epochs": 400, "model": LONG_MLP} if long else {}),
    )
    quote = client.post("/api/v1/quotes", json=body, headers=headers).get_json()
    assert quote.get("fits_budget"), quote
    response = client.post("/api/v1/runs", json={"quote_id": quote["id"]}, headers=headers)
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["id"])


def _held(app: Any, run_id: str, phase: str, models_dir: Any) -> bool:
    run = _row(app, run_id)
    if phase == "during training":
        return run.progress_step > 0
    if phase == "during delivery":  # the model is written, the delivery not yet begun
        return (models_dir / f"{run_id}.safetensors").exists()
    return run.phase is PHASES[phase][1]


@pytest.mark.slow
def test_sigkill_in_every_phase_charges_by_the_table_and_delivers_nothing(
    app,
    client,
    listed_cancer,
    researcher,
    tmp_path,
    database_url,
    stop_processes,  # noqa: F811
) -> None:
    _, headers = researcher
    log = tmp_path / "worker.log"
    models_dir = app.extensions["market"].settings.models_dir
    never = tmp_path / "never-released"
    killed: dict[str, str] = {}
    phases = PHASES if database_url.startswith("sqlite") else POSTGRES_PHASES
    for phase in phases:
        failpoint = PHASES[phase][0]
        run_id = _buy(client, headers, listed_cancer["id"], phase)
        extra = {"MARKET_FAILPOINTS": f"{failpoint}=@{never}"} if failpoint else {}
        worker = start_worker(worker_env(tmp_path, database_url, **extra), log)
        stop_processes.append(worker)
        wait_until(
            lambda run_id=run_id, phase=phase: _held(app, run_id, phase, models_dir),
            WAIT_S,
            f"run {phase}",
        )
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=60)
        assert _row(app, run_id).status is RunStatus.RUNNING  # nobody has noticed yet
        killed[phase] = run_id

    time.sleep(2.5)  # every killed run's last heartbeat is now older than the short lease
    reaper = start_worker(worker_env(tmp_path, database_url, MARKET_TRADING_LEASE_S="2"), log)
    stop_processes.append(reaper)
    for phase, run_id in killed.items():
        run = wait_until(
            lambda run_id=run_id: (r := _row(app, run_id)).status is RunStatus.FAILED and r,
            WAIT_S,
            f"the reaper to fail the run killed {phase}",
        )
        charged = PHASES[phase][2]
        assert run.error_code == "worker_lost", (phase, run.error_code)
        assert run.model_name is None and run.privacy_receipt is None, phase
        assert not (models_dir / f"{run_id}.safetensors").exists(), phase
        assert client.get(f"/api/v1/runs/{run_id}/model", headers=headers).status_code != 200
        with app.extensions["market"].database.read() as session:
            releases = session.exec(
                select(PrivacyRelease).where(PrivacyRelease.run_id == run_id)
            ).all()
            quote = session.get(Quote, run.quote_id)
            assert quote is not None
        expected = ReleaseState.SPENT if charged else ReleaseState.RELEASED
        assert [r.state for r in releases] == [expected], phase
        if charged:
            assert releases[0].records == RunPlan.from_dict(quote.plan).records(), phase

    # Nothing was delivered, so nothing delivered can exceed the budget; the charged
    # releases are all counted against it.
    with app.extensions["market"].database.read() as session:
        delivered = session.exec(select(Run).where(Run.status == RunStatus.SUCCEEDED)).all()
        spent = session.exec(
            select(PrivacyRelease.records).where(PrivacyRelease.state == ReleaseState.SPENT)
        ).all()
    assert delivered == []
    composed = compose_epsilon([r for records in spent for r in records], delta=1e-5)
    assert composed <= 10.0  # the fixture dataset's budget
