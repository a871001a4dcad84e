"""Several web processes and workers on PostgreSQL and Redis, as docs/operations.md deploys them.

Two web processes (gunicorn serving ``market:create_app()``, as ``market serve`` does) and
three ``market worker`` processes share one PostgreSQL database and one Redis queue. Thirty
buyers purchase at once, over both web processes, on three small datasets whose budgets
cannot hold every purchase: each bought run is trained exactly once, no budget is exceeded,
every worker trains some. Then the same with one worker SIGKILLed in the middle of a run
(held at the ``delivering`` failpoint, after training, before delivery): that run is reaped
and charged once, the others are delivered once by the workers still alive.

Kept light: 120-row datasets, logistic regression, one or two epochs, no calibration.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from market import create_app
from market.audit.models import AuditEntry
from market.catalog.models import Dataset
from market.trading.lifecycle import reap_lost_runs
from market.trading.models import PrivacyRelease, ReleaseState, Run, RunStatus
from privacy.accounting import compose_epsilon
from tests.conftest import (
    REDIS_URL,
    TEST_PASSWORD,
    app_overrides,
    service_unavailable,
    worker_redis_url,
)
from tests.trading.test_worker_process import start_worker, wait_until, worker_env

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow, pytest.mark.integration]

WAIT_S = 600.0  # a deadline for a hung test only; every wait is for a condition
ROWS = 120
BUDGET = {"epsilon_total": 2.5, "delta": 1e-5, "max_epsilon_per_run": 1.0}
LEASE_S = "15"
#: A Redis database of its own (others' tests flush theirs): 8 below this worker's.
SCALE_REDIS_URL = worker_redis_url(
    REDIS_URL, 8
)  # long enough for a busy machine's heartbeats (every second) to keep it


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _web(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    gunicorn = Path(sys.executable).parent / "gunicorn"
    argv = [str(gunicorn), "--workers", "1", "--worker-class", "gthread", "--threads", "4",
            "--bind", f"127.0.0.1:{port}", "market:create_app()"]  # fmt: skip
    with log.open("ab") as handle:
        return subprocess.Popen(argv, env=env, stdout=handle, stderr=handle)


def _ready(base: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base}/healthz", timeout=5).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def _runs(app: Any, ids: list[str]) -> dict[str, Run]:
    with app.extensions["market"].database.read() as session:
        return {r.id: r for r in session.exec(select(Run).where(col(Run.id).in_(ids))).all()}


def _finished(app: Any, ids: list[str]) -> bool:
    runs = _runs(app, ids)
    return len(runs) == len(ids) and all(
        r.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) for r in runs.values()
    )


def _started_by(app: Any, ids: list[str]) -> dict[str, list[str]]:
    """Each run's ``run.started`` entries' worker (host:pid), from the audit log."""
    with app.extensions["market"].database.read() as session:
        entries = session.exec(
            select(AuditEntry).where(
                AuditEntry.kind == "run.started", col(AuditEntry.subject).in_(ids)
            )
        ).all()
    started: dict[str, list[str]] = {i: [] for i in ids}
    for entry in entries:
        started[entry.subject].append(str(entry.data["worker"]))
    return started


def _assert_budgets_held(app: Any, dataset_ids: list[str]) -> None:
    with app.extensions["market"].database.read() as session:
        for dataset_id in dataset_ids:
            dataset = session.get(Dataset, dataset_id)
            assert dataset is not None
            rows = session.exec(
                select(PrivacyRelease.records).where(
                    PrivacyRelease.dataset_id == dataset_id,
                    col(PrivacyRelease.state).in_([ReleaseState.RESERVED, ReleaseState.SPENT]),
                )
            ).all()
            records = [r for records in rows for r in records]
            spent = compose_epsilon(records, delta=dataset.delta) if records else 0.0
            assert spent <= dataset.epsilon_total, (dataset_id, spent)


def _buy_all(bases: list[str], headers: dict[str, str], quote_ids: list[str]) -> list[Any]:
    """Every quote bought at once, alternating between the web processes."""
    import httpx

    barrier = threading.Barrier(len(quote_ids))
    answers: list[Any] = [None] * len(quote_ids)

    def buy(i: int) -> None:
        with httpx.Client(headers=headers, timeout=120) as client:
            barrier.wait()
            answers[i] = client.post(
                f"{bases[i % len(bases)]}/api/v1/runs", json={"quote_id": quote_ids[i]}
            )

    threads = [threading.Thread(target=buy, args=(i,)) for i in range(len(quote_ids))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def _quotes(base: str, headers: dict[str, str], dataset_ids: list[str], n: int, **body: Any):
    import httpx

    ids = []
    with httpx.Client(headers=headers, timeout=300) as client:
        for i in range(n):
            request = {"dataset_id": dataset_ids[i % len(dataset_ids)],
                       "model": {"template": "logistic_regression"}, "epsilon": 0.9,
                       "batch_size": 32, "learning_rate": 0.1, **body}  # fmt: skip
            answer = client.post(f"{base}/api/v1/quotes", json=request)
            assert answer.status_code == 201, answer.text
            ids.append(answer.json()["id"])
    return ids


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_two_web_processes_three_workers_thirty_purchases_and_a_sigkill(
    tmp_path: Path, database_url: str, make_user: Any
) -> None:
    import httpx
    import redis

    from market.accounts.models import Role
    from tests.catalog.conftest import cancer_rows, metadata, to_csv

    try:
        redis.Redis.from_url(SCALE_REDIS_URL).flushdb()
    except redis.exceptions.ConnectionError as exc:
        service_unavailable("Redis", str(exc))
    processes: list[subprocess.Popen[bytes]] = []
    go = tmp_path / "go"  # exists: workers pass the `delivering` failpoint; removed: they stop
    go.touch()
    app = create_app(
        app_overrides(
            tmp_path, database_url, queue={"backend": "redis", "redis_url": SCALE_REDIS_URL}
        )
    )
    try:
        env = worker_env(
            tmp_path,
            database_url,
            MARKET_QUEUE_BACKEND="redis",
            MARKET_QUEUE_REDIS_URL=SCALE_REDIS_URL,
            MARKET_TRADING_HEARTBEAT_S="1",
            MARKET_TRADING_LEASE_S=LEASE_S,
            MARKET_FAILPOINTS=f"delivering=@{go}",
            PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        )
        ports = [_free_port(), _free_port()]
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        for i, port in enumerate(ports):
            processes.append(_web(env, port, tmp_path / f"web{i}.log"))
        logs = [tmp_path / f"worker{i}.log" for i in range(3)]
        workers = [start_worker(env, log) for log in logs]
        processes.extend(workers)
        for base in bases:
            wait_until(lambda base=base: _ready(base), WAIT_S, f"{base} to answer")

        owner, buyer = make_user(Role.OWNER), make_user(Role.RESEARCHER)

        def token(account: Any) -> dict[str, str]:
            body = {"email": account.email, "password": TEST_PASSWORD}
            answer = httpx.post(f"{bases[0]}/api/v1/tokens", json=body, timeout=60)
            return {"Authorization": f"Bearer {answer.json()['token']}"}

        owner_headers, buyer_headers = token(owner), token(buyer)
        dataset_ids = []
        for i in range(3):
            base = bases[i % 2]
            draft = httpx.post(
                f"{base}/api/v1/datasets",
                json=metadata(title=f"scale {i}", privacy=BUDGET),
                headers=owner_headers,
                timeout=60,
            ).json()
            listed = httpx.put(
                f"{base}/api/v1/datasets/{draft['id']}/file",
                content=to_csv(cancer_rows(ROWS)),
                headers={**owner_headers, "Content-Type": "text/csv"},
                timeout=120,
            )
            assert listed.status_code == 200, listed.text
            dataset_ids.append(draft["id"])
        pids = {f"{p.pid}" for p in workers}
        # Every worker is up (its heartbeat row) before anything is bought.
        from market.ops.models import WorkerHeartbeat

        def live_workers() -> set[str]:
            with app.extensions["market"].database.read() as session:
                rows = session.exec(select(WorkerHeartbeat.worker_id)).all()
            return {row.rsplit(":", 1)[1] for row in rows} & pids

        wait_until(lambda: live_workers() == pids, WAIT_S, "three live workers")

        # --- 30 concurrent purchases on 3 datasets ---------------------------------------
        quotes = _quotes(bases[1], buyer_headers, dataset_ids, 30, epochs=1)
        answers = _buy_all(bases, buyer_headers, quotes)
        codes = Counter(a.status_code for a in answers)
        assert set(codes) <= {202, 409}, [a.text for a in answers if a.status_code >= 400][:3]
        refused = [a.json()["error"]["code"] for a in answers if a.status_code == 409]
        assert set(refused) <= {"budget_exceeded"}
        bought = [a.json()["id"] for a in answers if a.status_code == 202]
        assert bought and refused, codes  # the budgets held some purchases back
        wait_until(lambda: _finished(app, bought), WAIT_S, "every bought run to finish")
        runs = _runs(app, bought)
        assert {r.status for r in runs.values()} == {RunStatus.SUCCEEDED}, [
            (r.error_code, r.error_message) for r in runs.values()
        ]
        started = _started_by(app, bought)
        assert all(len(w) == 1 for w in started.values()), started  # trained exactly once
        assert all(r.attempts == 1 for r in runs.values())
        used = {w[0].rsplit(":", 1)[1] for w in started.values()}
        assert used == pids, (used, pids)  # every worker trained some
        _assert_budgets_held(app, dataset_ids)

        # --- the same with one worker SIGKILLed in the middle of a run ---------------------
        with app.extensions["market"].database.write() as session:
            for dataset_id in dataset_ids:  # room for a second round
                dataset = session.get(Dataset, dataset_id)
                assert dataset is not None
                dataset.epsilon_total += 2.5
                session.add(dataset)
        before = [
            log.read_text(errors="replace").count("failpoint delivering: pausing") for log in logs
        ]
        go.unlink()  # every run that finishes training now stops before delivering
        quotes = _quotes(bases[0], buyer_headers, dataset_ids, 9, epochs=2)
        answers = _buy_all(bases, buyer_headers, quotes)
        second = [a.json()["id"] for a in answers if a.status_code == 202]
        assert second, [a.text for a in answers]

        def held() -> tuple[int] | None:
            """The worker holding a run at the failpoint: it logged the pause and its run
            is still running (a run that passed just before the file went is delivered)."""
            starters = _started_by(app, second)
            running = [i for i, r in _runs(app, second).items() if r.status is RunStatus.RUNNING]
            for i, log in enumerate(logs):
                paused = log.read_text(errors="replace").count("failpoint delivering: pausing")
                pid = f":{workers[i].pid}"
                if paused > before[i] and any(
                    starters[r] and starters[r][0].endswith(pid) for r in running
                ):
                    return (i,)  # a tuple: worker 0 must not read as "not yet"
            return None

        (index,) = wait_until(held, WAIT_S, "a worker to stop before delivering")
        victim = workers[index]
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        go.touch()  # the others go on
        victim_id = f":{victim.pid}"
        deadline = time.monotonic() + WAIT_S
        while not _finished(app, second) and time.monotonic() < deadline:
            reap_lost_runs(app.extensions["market"])  # what every worker's periodic task does
            time.sleep(1)
        assert _finished(app, second)
        runs = _runs(app, second)
        started = _started_by(app, second)
        lost = [r for r in runs.values() if r.status is RunStatus.FAILED]
        assert len(lost) == 1 and lost[0].error_code == "worker_lost", [
            (r.status, r.error_code) for r in runs.values()
        ]
        assert started[lost[0].id][0].endswith(victim_id)
        with app.extensions["market"].database.read() as session:
            releases = session.exec(
                select(PrivacyRelease).where(col(PrivacyRelease.run_id).in_(second))
            ).all()
        per_run = Counter(r.run_id for r in releases)
        assert all(n == 1 for n in per_run.values()) and len(per_run) == len(second)
        assert all(r.state is ReleaseState.SPENT for r in releases)  # the lost one too: touched
        for run in runs.values():
            if run.status is RunStatus.SUCCEEDED:  # once, by a worker still alive
                assert len(started[run.id]) == 1 and run.attempts == 1
                assert not started[run.id][0].endswith(victim_id)
        _assert_budgets_held(app, dataset_ids)
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
        app.extensions["market"].database.dispose()
        redis.Redis.from_url(SCALE_REDIS_URL).flushdb()
