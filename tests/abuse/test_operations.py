"""Hostile operations: stolen sessions, a killed worker, crashed uploads, readable files.

Real parts only: sessions go through the login form and the signed cookie; the worker tests
run ``market init`` and ``market serve`` as processes (gunicorn, the supervised embedded
worker, SQLite files in a temporary instance) and talk HTTP to them; the sweep runs on real
files. Every wait is for a condition with a generous deadline, never a timing assertion.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient

from market.accounts import services as accounts
from market.accounts.models import Role, User
from tests.helpers import NO_CALIBRATION, csrf_token_from, login

COOKIE = "market_session"
# Generous: the suite must pass on a busy machine (a start-up imports torch and calibrates).
DEADLINE_S = 300.0


# -- sessions ---------------------------------------------------------------------------------


def _signed_in(app: Any, account: Any) -> tuple[FlaskClient, str]:
    client = app.test_client()
    assert login(client, account.email, account.password) == 302
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return client, cookie.value


def _with_cookie(app: Any, value: str) -> FlaskClient:
    client = app.test_client()
    client.set_cookie(COOKIE, value)
    return client


def _generation(app: Any, user_id: int) -> int:
    with app.extensions["market"].database.read() as session:
        user = session.get(User, user_id)
        assert user is not None
        return user.session_generation


def test_a_cookie_copied_before_logout_is_refused_after_it(app, make_user) -> None:
    account = make_user(Role.OWNER)
    client, stolen = _signed_in(app, account)
    assert _with_cookie(app, stolen).get("/account").status_code == 200  # the copy works ...
    before = _generation(app, account.id)

    token = csrf_token_from(client, "/account")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302

    refused = _with_cookie(app, stolen).get("/account")  # ... and stops with the logout
    assert refused.status_code == 302
    assert refused.headers["Location"].startswith("/login")
    assert _generation(app, account.id) == before + 1
    # Signing in again gives a working session; the old copy stays dead.
    fresh, _ = _signed_in(app, account)
    assert fresh.get("/account").status_code == 200
    assert _with_cookie(app, stolen).get("/account").status_code == 302


def test_a_logout_without_its_csrf_token_ends_nothing(app, make_user) -> None:
    account = make_user(Role.RESEARCHER)
    client, cookie = _signed_in(app, account)
    before = _generation(app, account.id)
    client.post("/logout", data={})  # a cross-site form cannot log anyone out
    assert _generation(app, account.id) == before
    assert _with_cookie(app, cookie).get("/account").status_code == 200


def test_password_change_role_change_and_suspension_end_sessions(app, make_user, token_for) -> None:
    market = app.extensions["market"]
    account = make_user(Role.RESEARCHER)
    headers = token_for(account)
    api = app.test_client()
    assert api.get("/api/v1/me", headers=headers).status_code == 200

    changes: list[Callable[[Any, User], object]] = [
        lambda s, u: accounts.set_password(
            s, user=u, password="another long password", passwords=market.passwords
        ),
        lambda s, u: accounts.set_role(s, user=u, role=Role.OWNER, actor_id=None),
    ]
    password = account.password
    for change in changes:
        _, cookie = _signed_in(app, account)
        assert _with_cookie(app, cookie).get("/account").status_code == 200
        with market.database.write() as session:
            user = session.get(User, account.id)
            change(session, user)
        assert _with_cookie(app, cookie).get("/account").status_code == 302
        account.password = "another long password"
    account.password = password = "another long password"
    # The password change revoked the token too; suspension must stop a fresh one at once.
    assert api.get("/api/v1/me", headers=headers).status_code == 401
    headers = token_for(account)
    assert api.get("/api/v1/me", headers=headers).status_code == 200

    _, cookie = _signed_in(app, account)
    with market.database.write() as session:
        user = session.get(User, account.id)
        revoked = accounts.set_active(session, user=user, active=False, actor_id=None)
    assert revoked == 1
    assert _with_cookie(app, cookie).get("/account").status_code == 302
    refused = api.get("/api/v1/me", headers=headers)  # the API token stops at once
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "authentication_required"
    assert login(app.test_client(), account.email, password) == 401

    # Reactivated: a new sign-in works, the token revoked at suspension stays revoked.
    with market.database.write() as session:
        user = session.get(User, account.id)
        accounts.set_active(session, user=user, active=True, actor_id=None)
    assert login(app.test_client(), account.email, password) == 302
    assert api.get("/api/v1/me", headers=headers).status_code == 401


# -- market serve: the supervised worker, start-up hygiene -------------------------------------


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_")}
    env.update(MARKET_HOME=str(home), **NO_CALIBRATION, **extra)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], Any], what: str, deadline_s: float = DEADLINE_S) -> Any:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"gave up waiting for {what} after {deadline_s:.0f} s")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) is not alive
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _heartbeat_pids(home: Path) -> list[int]:
    import sqlite3

    with sqlite3.connect(home / "market.db", timeout=30) as db:
        rows = db.execute("SELECT worker_id FROM worker_heartbeats").fetchall()
    return [int(worker.rsplit(":", 1)[1]) for (worker,) in rows]


class Serve:
    def __init__(self, home: Path, log: Path, **env: str) -> None:
        self.home, self.log = home, log
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        with log.open("ab") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "market.cli", "serve", "--port", str(self.port)],
                env=_env(home, **env),
                stdout=handle,
                stderr=handle,
            )

    def health(self) -> httpx.Response | None:
        if self.process.poll() is not None:
            raise AssertionError(f"market serve exited:\n{self.log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.base}/healthz", timeout=30)
        except httpx.HTTPError:
            return None

    def healthy(self) -> httpx.Response | None:
        response = self.health()
        return response if response is not None and response.status_code == 200 else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)


@pytest.fixture
def instance(tmp_path: Path) -> Path:
    home = tmp_path / "inst"
    done = subprocess.run(
        [sys.executable, "-m", "market.cli", "init"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return home


@pytest.fixture
def serving() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:
        serve.stop()


FAST_OPS = {
    "MARKET_OPS_HEARTBEAT_S": "0.5",
    "MARKET_OPS_WORKER_STALE_S": "5",
    # The restart waits this long, so the outage /healthz must report lasts at least that.
    "MARKET_OPS_WORKER_RESTART_BACKOFF_S": "3",
}


@pytest.mark.slow
def test_a_killed_worker_is_restarted_and_healthz_says_503_meanwhile(
    instance: Path, tmp_path: Path, serving: list[Serve]
) -> None:
    serve = Serve(instance, tmp_path / "serve.log", **FAST_OPS)
    serving.append(serve)
    ok = wait_for(serve.healthy, "market serve to answer 200 on /healthz")
    assert ok.json()["checks"]["worker"]["ok"] is True
    (first,) = wait_for(lambda: _heartbeat_pids(instance), "the worker's heartbeat row")

    os.kill(first, signal.SIGKILL)
    down = wait_for(
        lambda: (r := serve.health()) is not None and r.status_code == 503 and r,
        "/healthz to report the dead worker",
    )
    error = down.json()["error"]
    assert error["code"] == "unhealthy"
    assert error["details"]["failing"] == ["worker"]
    assert "worker" in error["message"]
    assert error["details"]["checks"]["database"]["ok"] is True

    wait_for(serve.healthy, "the restarted worker to make /healthz 200 again")
    (second,) = wait_for(lambda: _heartbeat_pids(instance), "the new worker's heartbeat")
    assert second != first and not _pid_alive(first)
    assert "restarting in" in serve.log.read_text()

    serve.stop()
    assert serve.process.returncode == 0
    wait_for(lambda: not _pid_alive(second), "the worker to stop with market serve", 120)
    assert _heartbeat_pids(instance) == []  # the worker removed its row as it stopped
    assert not (instance / "gunicorn.ctl").exists()


def _modes(home: Path) -> dict[str, int]:
    found = {}
    for root, dirs, files in os.walk(home):
        for name in (*dirs, *files):
            path = Path(root) / name
            found[str(path.relative_to(home))] = stat.S_IMODE(path.lstat().st_mode)
    return found


@pytest.mark.slow
def test_serve_sweeps_orphaned_partials_and_keeps_every_instance_file_private(
    instance: Path, tmp_path: Path, serving: list[Serve]
) -> None:
    # An earlier version left these readable by everyone; a crash left the partials.
    os.chmod(instance / "market.db", 0o644)
    os.chmod(instance, 0o755)
    store = instance / "datasets"
    store.mkdir(mode=0o700, exist_ok=True)
    two_hours_ago = time.time() - 7200
    crashed = store / "ds-crashed-0123456789abcdef.pvlt.partial"
    whole_orphan = store / "ds-never-committed-0123456789abcdef.pvlt"
    live = store / "ds-uploading-now-0123456789abcdef.pvlt.partial"
    for path in (crashed, whole_orphan, live):
        path.write_bytes(os.urandom(4096))
    for path in (crashed, whole_orphan):
        os.utime(path, (two_hours_ago, two_hours_ago))

    serve = Serve(instance, tmp_path / "serve.log", **FAST_OPS)
    serving.append(serve)
    wait_for(serve.healthy, "market serve to answer 200 on /healthz")

    assert not crashed.exists() and not whole_orphan.exists()
    assert live.exists()  # an upload in progress (written just now) is never touched
    log = serve.log.read_text()
    assert f"removed orphaned ciphertext {crashed.name}" in log

    ctl = instance / "gunicorn.ctl"
    assert stat.S_ISSOCK(ctl.stat().st_mode)  # this instance's own control socket
    assert (instance / "queue.db").exists()
    modes = _modes(instance)
    assert stat.S_IMODE(instance.stat().st_mode) == 0o700
    assert {"market.db", "queue.db", "secret_key", "keys", "audit"} <= set(modes)
    loose = {
        name: oct(mode)
        for name, mode in modes.items()
        if mode & 0o077  # any group or other bit
    }
    assert loose == {}
    assert any(name.endswith("-wal") for name in modes)  # the WAL files were checked too

    metrics = httpx.get(f"{serve.base}/metrics", timeout=30)
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'market_runs{status="queued"} 0.0' in metrics.text
    assert 'market_queue_depth{state="ready"}' in metrics.text
    assert "market_http_request_duration_seconds_bucket" in metrics.text


def test_the_periodic_sweep_removes_a_crashed_uploads_partial(app) -> None:
    market = app.extensions["market"]
    store = market.settings.storage_dir
    store.mkdir(mode=0o700, parents=True, exist_ok=True)
    crashed = store / "ds-crashed-fedcba9876543210.pvlt.partial"
    live = store / "ds-uploading-fedcba9876543210.pvlt.partial"
    for path in (crashed, live):
        path.write_bytes(os.urandom(1024))
    old = time.time() - market.settings.ops.partial_max_age_s - 60
    os.utime(crashed, (old, old))

    huey = market.queue.huey
    # The scheduler's own question: which periodic tasks are due at the sweep's minute?
    due = huey.read_periodic(datetime(2026, 1, 1, 0, 0, tzinfo=UTC))
    sweeps = [task for task in due if task.name == "sweep_orphans"]
    assert len(sweeps) == 1
    huey.execute(sweeps[0])

    assert not crashed.exists()
    assert live.exists()
    assert sorted(p.name for p in store.iterdir()) == [live.name]
