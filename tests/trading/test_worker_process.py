"""`market worker` as a separate process: a SIGKILL mid-run is detected and charged once, the
queue keeps working; and the whole loop over Redis with a worker in another process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlmodel import select

from market import create_app
from market.trading.models import PrivacyRelease, ReleaseState, Run
from privacy.vault import init_keydir
from tests.conftest import REDIS_URL, app_overrides, service_unavailable
from tests.helpers import NO_CALIBRATION
from tests.trading.conftest import quote_body

# Waits are for a condition; the deadline only stops a hung test. Generous, because a worker
# start imports torch and calibrates, which takes minutes on a busy 2-core machine.
WAIT_S = 600.0


def worker_env(home: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_")}
    env.update(
        MARKET_HOME=str(home),
        MARKET_DATABASE_URL=database_url,
        MARKET_APP_SECRET_KEY="test-secret-key-that-is-long-enough-0123456789",
        **NO_CALIBRATION,
        **extra,
    )
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as handle:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "market.cli", "worker"], env=env, stdout=handle, stderr=handle
        )


def wait_until(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def stop_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _run_row(app, run_id: str) -> Run:
    with app.extensions["market"].database.read() as session:
        run = session.get(Run, run_id)
        assert run is not None
        return run


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sigkill_mid_run_fails_it_charges_once_and_the_queue_goes_on(
    app, client, listed_cancer, researcher, tmp_path, database_url, stop_processes
) -> None:
    _, headers = researcher
    log = tmp_path / "worker.log"
    env = worker_env(tmp_path, database_url, MARKET_TRADING_HEARTBEAT_S="1")
    long_run = quote_body(
        listed_cancer["id"],
        epsilon=2.0,
        epochs=400,
        batch_size=64,
        model={"template": "mlp", "hidden": [256, 256]},
    )
    quote = client.post("/api/v1/quotes", json=long_run, headers=headers).get_json()
    assert quote.get("fits_budget"), quote
    run_id = client.post(
        "/api/v1/runs", json={"quote_id": quote["id"]}, headers=headers
    ).get_json()["id"]
    first = start_worker(env, log)
    stop_processes.append(first)
    wait_until(lambda: _run_row(app, run_id).progress_step > 0, WAIT_S, "the run to train")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    assert _run_row(app, run_id).status.value == "running"  # nobody has noticed yet

    # A new worker with a short lease finds the lost run at start-up.
    second = start_worker({**env, "MARKET_TRADING_LEASE_S": "2"}, log)
    stop_processes.append(second)
    lost = wait_until(
        lambda: (r := _run_row(app, run_id)).status.value == "failed" and r, WAIT_S, "the reaper"
    )
    assert lost.error_code == "worker_lost"
    with app.extensions["market"].database.read() as session:
        releases = session.exec(select(PrivacyRelease).where(PrivacyRelease.run_id == run_id)).all()
    assert [r.state for r in releases] == [ReleaseState.SPENT]  # charged once: it had trained

    # The queue keeps working: the next purchase is trained by the second worker.
    quote = client.post(
        "/api/v1/quotes", json=quote_body(listed_cancer["id"]), headers=headers
    ).get_json()
    next_id = client.post(
        "/api/v1/runs", json={"quote_id": quote["id"]}, headers=headers
    ).get_json()["id"]
    done = wait_until(
        lambda: (r := _run_row(app, next_id)).status.value in ("succeeded", "failed") and r,
        WAIT_S,
        "the next run",
    )
    assert done.status.value == "succeeded", log.read_text()[-2000:]
    # Reaping again never charges the lost run a second time.
    from market.trading.execution import reap_lost_runs

    reap_lost_runs(app.extensions["market"])
    with app.extensions["market"].database.read() as session:
        assert (
            len(session.exec(select(PrivacyRelease).where(PrivacyRelease.run_id == run_id)).all())
            == 1
        )


@pytest.mark.redis
@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_end_to_end_on_redis_with_a_separate_worker_process(
    tmp_path, database_url, make_user, stop_processes
) -> None:
    import redis

    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
    except redis.exceptions.ConnectionError as exc:
        service_unavailable("Redis", str(exc))
    from market.accounts.models import Role
    from tests.catalog.conftest import cancer_rows, metadata, to_csv
    from tests.conftest import TEST_PASSWORD

    init_keydir(tmp_path / "keys")
    app = create_app(
        app_overrides(tmp_path, database_url, queue={"backend": "redis", "redis_url": REDIS_URL})
    )
    client = app.test_client()
    owner, buyer = make_user(Role.OWNER), make_user(Role.RESEARCHER)

    def token(account) -> dict[str, str]:  # type: ignore[no-untyped-def]
        body = {"email": account.email, "password": TEST_PASSWORD}
        return {
            "Authorization": "Bearer "
            + client.post("/api/v1/tokens", json=body).get_json()["token"]
        }

    owner_headers, buyer_headers = token(owner), token(buyer)
    draft = client.post("/api/v1/datasets", json=metadata(), headers=owner_headers).get_json()
    client.put(
        f"/api/v1/datasets/{draft['id']}/file",
        data=to_csv(cancer_rows()),
        headers={**owner_headers, "Content-Type": "text/csv"},
    )
    env = worker_env(
        tmp_path, database_url, MARKET_QUEUE_BACKEND="redis", MARKET_QUEUE_REDIS_URL=REDIS_URL
    )
    stop_processes.append(start_worker(env, tmp_path / "worker.log"))
    quote = client.post(
        "/api/v1/quotes", json=quote_body(draft["id"]), headers=buyer_headers
    ).get_json()
    run_id = client.post(
        "/api/v1/runs", json={"quote_id": quote["id"]}, headers=buyer_headers
    ).get_json()["id"]
    done = wait_until(
        lambda: (r := _run_row(app, run_id)).status.value in ("succeeded", "failed") and r,
        WAIT_S,
        "the run on Redis",
    )
    assert done.status.value == "succeeded", (tmp_path / "worker.log").read_text()[-2000:]
    model = client.get(f"/api/v1/runs/{run_id}/model", headers=buyer_headers)
    assert model.status_code == 200 and len(model.data) > 0
    app.extensions["market"].database.dispose()
    redis.Redis.from_url(REDIS_URL).flushdb()
