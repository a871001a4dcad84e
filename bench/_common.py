"""Helpers the benchmarks share: a throw-away marketplace instance, data loading, JSON output.

Not a benchmark itself (``run_all.py`` skips files that start with an underscore).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PASSWORD = "bench-password-123"


@dataclass
class Instance:
    """A fresh instance (SQLite, keys, datasets folder) in a temporary directory, with an
    owner and a researcher account and an in-process test client, as ``quote_accuracy.py``
    builds it. ``owner`` and ``buyer`` are ``Authorization`` headers."""

    home: Path
    app: Any
    market: Any
    client: Any
    owner: dict[str, str] = field(default_factory=dict)
    buyer: dict[str, str] = field(default_factory=dict)
    pulse: Any = None

    def list_dataset(self, meta: dict[str, Any], body: bytes, media: str) -> str:
        """Create a draft, upload the file (encrypted on arrival) and return the listed id."""
        draft = self.client.post("/api/v1/datasets", json=meta, headers=self.owner)
        if draft.status_code >= 400:
            raise RuntimeError(f"draft refused: {draft.get_json()}")
        listed = self.client.put(
            f"/api/v1/datasets/{draft.get_json()['id']}/file",
            data=body,
            headers={**self.owner, "Content-Type": media},
        )
        if listed.status_code >= 400:
            raise RuntimeError(f"upload refused: {listed.get_json()}")
        return str(listed.get_json()["id"])

    def close(self) -> None:
        if self.pulse is not None:
            self.pulse.stop()
        self.market.database.dispose()


def make_instance(prefix: str = "bench-", home: Path | None = None) -> Instance:
    """``market init`` (the public way to make an instance: database, keys, audit signing
    key) in a fresh temporary folder, then the app in this process with two accounts."""
    from market import create_app
    from market.accounts import services as accounts

    home = home or Path(tempfile.mkdtemp(prefix=prefix))
    market_init(home)
    app = create_app({"home": str(home)})
    market = app.extensions["market"]
    client = app.test_client()
    with market.database.write() as session:
        for email, role in (
            ("owner@bench.example", "owner"),
            ("buyer@bench.example", "researcher"),
        ):
            accounts.create_user(
                session, email=email, role=role, password=PASSWORD, passwords=market.passwords
            )
    inst = Instance(home=home, app=app, market=market, client=client)
    # The benchmark trains in this process (execute_run), as a worker of the configured class
    # does: its heartbeat lets that class's quotes be bought (market.trading.purchases).
    from market.ops.heartbeat import Heartbeat

    inst.pulse = Heartbeat(
        market.database,
        interval_s=market.settings.ops.heartbeat_s,
        backend=market.settings.queue.backend,
        worker_class=market.settings.queue.worker_class,
    ).start()
    inst.owner = token(client, "owner@bench.example")
    inst.buyer = token(client, "buyer@bench.example")
    return inst


def market_init(home: Path) -> None:
    """``market init`` with ``MARKET_HOME=home``: the CLI command itself, run in this process
    (click's runner) so the suite does not pay a second interpreter start per instance."""
    from click.testing import CliRunner

    from market.cli import main as cli

    env = {k: None for k in os.environ if k.startswith("MARKET_")}
    result = CliRunner().invoke(cli, ["init"], env={**env, "MARKET_HOME": str(home)})
    if result.exit_code != 0:
        raise RuntimeError(f"market init failed: {result.output}") from result.exception


def token(client: Any, email: str) -> dict[str, str]:
    body = client.post("/api/v1/tokens", json={"email": email, "password": PASSWORD}).get_json()
    return {"Authorization": f"Bearer {body['token']}"}


def data_dir(path: str | Path | None) -> tuple[Path, bool]:
    """The data folder and whether it holds the reference files; says so when it does not."""
    folder = Path(path) if path else DEFAULT_DATA
    present = (folder / "mnist.npz").exists() and (folder / "adult.data").exists()
    if not present:
        print(
            f"note: {folder} lacks mnist.npz/adult.data; falling back to scikit-learn's "
            "bundled sets (digits, breast cancer)",
            file=sys.stderr,
        )
    return folder, present


def write_json(path: str | Path | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2, default=str))


def free_port() -> int:
    """A TCP port free on the loopback interface now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM a served instance and wait for it (gunicorn drains), killing it if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
