"""The `market` command as a user runs it, on a real instance folder.

Most tests call the command in this process through click's runner (the same ``main``, the
same parsing, exit codes and output streams: a subprocess would add a second of imports per
call); the help and usage tests start the real console script in its own process, so the
entry point itself is covered too.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from market.cli import main

MARKET = [sys.executable, "-m", "market.cli"]
#: Argon2 at the library's low-memory profile: hashing speed is not what these tests check.
FAST_HASHING = {
    "MARKET_SECURITY_ARGON2_MEMORY_KIB": "19456",
    "MARKET_SECURITY_ARGON2_TIME_COST": "2",
    "MARKET_SECURITY_ARGON2_PARALLELISM": "1",
}


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_")}
    return {**env, "MARKET_HOME": str(home), **FAST_HASHING}


def run(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``market *args`` in this process, with only ``MARKET_HOME`` (and fast hashing) set."""
    unset = {k: None for k in os.environ if k.startswith("MARKET_")}
    env = {**unset, "MARKET_HOME": str(home), **FAST_HASHING}
    result = CliRunner().invoke(main, list(args), input=stdin, env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception  # a traceback is a defect: show it, as a user would see it
    return subprocess.CompletedProcess(
        ["market", *args], result.exit_code, stdout=result.stdout, stderr=result.stderr
    )


def run_process(
    home: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``market *args`` as a separate process: the installed entry point."""
    return subprocess.run(
        [*MARKET, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=_environment(home),
        timeout=600,
    )


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "instance"
    result = run(path, "init")
    assert result.returncode == 0, result.stderr
    return path


def test_init_creates_a_private_instance_and_is_idempotent(home: Path) -> None:
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    key = home / "secret_key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    first_key = key.read_text()
    again = run(home, "init")
    assert again.returncode == 0, again.stderr
    assert key.read_text() == first_key
    assert (home / "market.db").exists()


def test_users_create_from_stdin_then_duplicate_fails_with_one_line(home: Path) -> None:
    created = run(
        home,
        "users",
        "create",
        "--email",
        "ann@people.example",
        "--role",
        "owner",
        "--password-stdin",
        stdin="a-long-enough-password\n",
    )
    assert created.returncode == 0, created.stderr
    assert "created owner ann@people.example" in created.stdout
    duplicate = run(
        home,
        "users",
        "create",
        "--email",
        "ANN@people.example",
        "--role",
        "auditor",
        "--password-stdin",
        stdin="a-long-enough-password\n",
    )
    assert duplicate.returncode == 1
    assert duplicate.stderr.strip() == "error: an account for ann@people.example already exists"


def test_init_makes_a_readable_database_private(home: Path) -> None:
    os.chmod(home / "market.db", 0o644)  # as earlier versions left it
    again = run(home, "init")
    assert again.returncode == 0, again.stderr
    assert "made private" in again.stdout
    assert stat.S_IMODE((home / "market.db").stat().st_mode) == 0o600


def test_suspend_revokes_tokens_and_unknown_accounts_fail_with_one_line(home: Path) -> None:
    import sqlite3

    created = run(
        home, "users", "create", "--email", "eve@people.example", "--role", "researcher",
        "--password-stdin", stdin="a-long-enough-password\n",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    suspended = run(home, "users", "suspend", "--email", "EVE@people.example")
    assert suspended.returncode == 0, suspended.stderr
    assert "suspended eve@people.example" in suspended.stdout
    with sqlite3.connect(home / "market.db") as db:
        active, generation = db.execute(
            "SELECT is_active, session_generation FROM users WHERE email = ?",
            ("eve@people.example",),
        ).fetchone()
    assert (active, generation) == (0, 1)
    promoted = run(home, "users", "set-role", "--email", "eve@people.example", "--role", "owner")
    assert promoted.returncode == 0, promoted.stderr
    unknown = run(home, "users", "suspend", "--email", "nobody@people.example")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: no account for nobody@people.example"


def test_short_password_is_refused(home: Path) -> None:
    result = run(
        home,
        "users",
        "create",
        "--email",
        "bob@people.example",
        "--role",
        "owner",
        "--password-stdin",
        stdin="short\n",
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr


def test_bad_usage_exits_2(home: Path) -> None:
    result = run_process(home, "users", "create", "--email", "x@people.example", "--role", "king")
    assert result.returncode == 2
    assert "king" in result.stderr


def test_commands_before_init_say_to_run_init(tmp_path: Path) -> None:
    result = run(tmp_path / "fresh", "users", "demo")
    assert result.returncode == 1
    assert "market init" in result.stderr


def test_demo_accounts_print_working_credentials(home: Path) -> None:
    result = run(home, "users", "demo")
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()[1:]]
    assert [line[0] for line in lines] == ["owner", "researcher", "auditor", "admin"]
    # Running again gives fresh passwords that work, and the old ones stop working.
    from market import create_app

    app = create_app(
        {
            "home": str(home),
            "security": {
                "argon2_memory_kib": 19456,
                "argon2_time_cost": 2,
                "argon2_parallelism": 1,
            },
        }
    )
    client = app.test_client()
    email, password = lines[0][1], lines[0][2]
    assert (
        client.post("/api/v1/tokens", json={"email": email, "password": password}).status_code
        == 201
    )
    rerun = run(home, "users", "demo")
    new_password = rerun.stdout.splitlines()[1].split()[2]
    assert new_password != password
    assert (
        client.post("/api/v1/tokens", json={"email": email, "password": password}).status_code
        == 401
    )
    app.extensions["market"].database.dispose()


def test_help_texts_explain_the_commands(tmp_path: Path) -> None:
    result = run_process(tmp_path, "--help")
    assert result.returncode == 0
    for command in ("init", "serve", "users"):
        assert command in result.stdout
    create_help = run(tmp_path, "users", "create", "--help").stdout
    assert "--password-stdin" in create_help and "researcher" in create_help
