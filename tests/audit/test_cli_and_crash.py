"""``market audit`` as a process: exit codes, stderr sentences, and a SIGKILL mid-append."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from market.audit import log
from market.audit.cli import audit
from market.config import Settings
from market.db import Database
from tests.audit.conftest import append_many

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

ROOT = Path(__file__).resolve().parents[2]
CLI = "from market.audit.cli import audit; audit(prog_name='market audit')"


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MARKET_")}
    env.update(
        MARKET_HOME=str(settings.home),
        MARKET_DATABASE_URL=settings.database_url,
        MARKET_AUDIT_CHECKPOINT_EVERY=str(settings.audit.checkpoint_every),
        PYTHONPATH=str(ROOT),
    )
    return env


def _audit(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        cwd=ROOT,
        env=_env(settings),
        capture_output=True,
        text=True,
        timeout=600,  # only stops a hung command; a busy machine may be slow to start one
    )


def test_export_and_verify_exit_codes(
    tmp_path: Path, database: Database, audit_settings: Settings
) -> None:
    from market.audit.signing import public_key_path

    append_many(database, audit_settings, 5)
    out = tmp_path / "log.jsonl"
    kept = tmp_path / "kept.note"
    key = str(public_key_path(audit_settings))
    # In-process (each real process costs seconds of imports): keeping a checkpoint and
    # the usage errors, which click decides before any work.
    runner = CliRunner()
    env = _env(audit_settings)
    done = runner.invoke(audit, ["checkpoint", "--out", str(kept)], env=env)
    assert done.exit_code == 0, done.output
    assert runner.invoke(audit, ["verify", str(kept)]).exit_code == 2  # no --public-key
    missing = runner.invoke(audit, ["verify", str(tmp_path / "nope"), "--public-key", key])
    assert missing.exit_code == 2
    not_a_key = tmp_path / "not-a-key.pem"
    not_a_key.write_text("hello")
    done = runner.invoke(audit, ["verify", str(kept), "--public-key", str(not_a_key)])
    assert done.exit_code == 2 and "Ed25519" in done.output

    # As real processes, the way an auditor runs them.
    done = _audit(audit_settings, "export", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "exported 5 audit entries" in done.stdout
    done = _audit(
        audit_settings, "verify", str(out), "--public-key", key, "--checkpoint", str(kept)
    )
    assert done.returncode == 0, done.stderr
    assert "verifies: 5 entries" in done.stdout

    # One altered byte: exit 1 and one sentence naming the entry.
    lines = out.read_text().splitlines(keepends=True)
    obj = json.loads(lines[-2])
    obj["entry"] = obj["entry"].replace("subject-3", "subject-9")
    lines[-2] = json.dumps(obj, ensure_ascii=False) + "\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(lines))
    done = _audit(audit_settings, "verify", str(bad), "--public-key", key)
    assert done.returncode == 1
    assert done.stderr.startswith("error: entry 4 ") and done.stderr.count("\n") == 1


def test_a_process_killed_while_appending_loses_no_committed_entry(
    tmp_path: Path, audit_settings: Settings, database: Database, public_pem: bytes
) -> None:
    from market.audit.export import export_log
    from market.audit.verify import verify_export

    child = textwrap.dedent(
        """
        from market.audit import log
        from market.config import load_settings
        from market.db import Database, make_engine

        settings = load_settings()
        database = Database(make_engine(settings.database_url))
        i = 0
        while True:
            with database.write() as session:
                entry = log.record(session, settings, kind="run.started",
                                   subject=f"crash-{i}", actor_id=None, data={"i": i})
                seq = entry.seq
            print(seq, flush=True)  # printed only after the commit returned
            i += 1
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", child],
        cwd=ROOT,
        env=_env(audit_settings),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    committed = 0
    try:
        for line in process.stdout:
            committed = int(line)
            if committed >= 40:
                break
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    with database.read() as session:
        size = log.tree_size(session)
    # Every acknowledged entry survived; at most the one in flight committed unacknowledged.
    assert committed <= size
    with database.write() as session:  # the log goes on where the dead process stopped
        assert log.append(session, kind="x.y", subject="after", actor_id=None, data={}).seq == (
            size + 1
        )
    out = tmp_path / "after-crash.jsonl"
    export_log(database, audit_settings, out)
    report = verify_export(out, public_pem)
    assert report.ok, report.summary()
    assert report.entries == size + 1
