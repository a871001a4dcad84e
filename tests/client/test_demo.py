"""`market demo` on a fresh instance: accounts, two real listings, two bought runs, receipts.

Run in-process with click's CliRunner (a subprocess would pay torch and Opacus imports once
per command); the instance is a temporary MARKET_HOME made by `market init`, as a newcomer's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from market.cli import main

FAST_ARGON2 = {
    "MARKET_SECURITY_ARGON2_MEMORY_KIB": "19456",
    "MARKET_SECURITY_ARGON2_TIME_COST": "2",
    "MARKET_SECURITY_ARGON2_PARALLELISM": "1",
}


@pytest.fixture(scope="module")
def instance_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str | None]]:
    """MARKET_* for a fresh instance; every other MARKET_ variable of the caller is unset."""
    home = tmp_path_factory.mktemp("demo") / "instance"
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MARKET_")}
    env.update(FAST_ARGON2, MARKET_HOME=str(home))
    initialised = market(env, "init")
    assert initialised.exit_code == 0, initialised.output
    yield env


def market(env: dict[str, str | None], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def _password(output: str, role: str) -> str:
    match = re.search(rf"^\s+{role}\s+\S+@demo\.example\s+(\S+)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def test_no_train_seeds_accounts_and_lists_each_dataset_once(
    instance_env: dict[str, str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = market(instance_env, "demo", "--no-train")
    assert first.exit_code == 0, first.output
    assert first.output.count("listed: ") == 2 and "already listed" not in first.output
    password = _password(first.output, "researcher")

    again = market(instance_env, "demo", "--no-train", "--keep-passwords")
    assert again.exit_code == 0, again.output
    assert again.output.count("already listed: ") == 2
    assert "(password kept)" in again.output

    for name, value in instance_env.items():
        monkeypatch.delenv(name, raising=False) if value is None else monkeypatch.setenv(
            name, value
        )
    from market import create_app

    app = create_app()
    try:
        client = app.test_client()
        token = client.post(
            "/api/v1/tokens", json={"email": "researcher@demo.example", "password": password}
        )
        assert token.status_code == 201, "the printed password still signs in"
        headers = {"Authorization": f"Bearer {token.get_json()['token']}"}
        listed = client.get("/api/v1/datasets?tag=demo", headers=headers).get_json()
        assert listed["total"] == 2
        formats = sorted(d["format"] for d in listed["items"])
        assert formats == ["csv", "npz"]
        assert all(d["status"] == "listed" for d in listed["items"])
    finally:
        app.extensions["market"].database.dispose()


@pytest.mark.slow
def test_demo_buys_both_runs_and_prints_receipts_and_accuracy(
    instance_env: dict[str, str | None],
) -> None:
    result = market(instance_env, "demo")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "seed MLP on digits" in out and "logistic regression on breast cancer" in out
    assert out.count("privacy receipt:") == 2 and out.count("cost receipt") == 2
    assert out.count("noise multiplier") >= 2 and "dataset's composed epsilon" in out
    assert "royalty" in out and "platform fee" in out
    # Energy and emissions in human units (Wh, mWh, g CO2e), never 2.32e-05 kWh.
    assert "Wh" in out and "CO2e" in out and not re.search(r"\de-\d+ kWh", out)
    scores = re.findall(
        r"test accuracy on \d+ held-back rows: ([\d.]+) \(majority class ([\d.]+)\)", out
    )
    assert len(scores) == 2, out
    for accuracy, majority in scores:
        assert float(accuracy) > float(majority) + 0.05, out
    assert out.count("purchase -> delivery") == 2 and "pure training" in out
