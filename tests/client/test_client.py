"""market.client over real HTTP: a live server, a real Huey consumer on the SQLite queue.

The researcher's whole loop through the client: sign in, search, quote, buy, wait, load
the delivered model and predict on the rows; and every failure arriving as MarketAPIError
with the API's stable code.
"""

from __future__ import annotations

import doctest
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
import torch

import market.client
from market.accounts.models import Role
from market.client import MarketAPIError, MarketClient, RunFailed, model_request
from privacy.model_io import load_model
from privacy.preprocessing import encode_features
from tests.catalog.conftest import cancer_rows

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# Epsilon 2 and 20 epochs: at epsilon 1 the three-feature model sometimes stays at the
# majority class (DP noise is drawn from OS entropy, so runs differ).
LOGISTIC_RUN: dict[str, Any] = {"epochs": 20, "batch_size": 64, "learning_rate": 0.1}


@pytest.mark.slow
@SQLITE_ONLY
def test_quote_buy_wait_and_predict_over_http(
    live_server: str, listed_cancer, make_user, consumer, tmp_path: Path
) -> None:
    researcher = make_user(Role.RESEARCHER)
    with MarketClient.login(live_server, researcher.email, researcher.password) as market:
        assert market.me()["email"] == researcher.email
        found = market.datasets(q="breast cancer")
        assert [d["id"] for d in found] == [listed_cancer["id"]]
        assert market.dataset(listed_cancer["id"])["budget"]["epsilon_spent"] == 0

        quote = market.quote(listed_cancer["id"], "logistic_regression", 2.0, **LOGISTIC_RUN)
        assert quote.fits_budget and quote.reason is None
        assert quote.mechanism["noise_multiplier"] > 0 and quote.mechanism["steps"] > 0
        assert quote.estimate["price"]["currency"] == "EUR"
        assert quote.price.endswith(" EUR")

        run = market.buy(quote)
        assert run.status == "queued"
        assert run.wait(timeout=120, progress=False) is run
        assert run.status == "succeeded", run.error
        assert run.progress["step"] == run.progress["steps"] == quote.mechanism["steps"]
        assert run.privacy_receipt is not None and run.cost_receipt is not None
        assert run.privacy_receipt["epsilon_spent"] <= 2.0 + 1e-9
        assert run.privacy_receipt["noise_multiplier"] == quote.mechanism["noise_multiplier"]
        assert run.cost_receipt["measured"]["total"]
        assert run.metrics is not None and "accuracy" in run.metrics
        assert [r.id for r in market.runs()] == [run.id]

        model = run.model()
        assert isinstance(model, torch.nn.Module) and not model.training
        loaded = load_model(run.model_file(tmp_path / "model.safetensors"))

    rows = cancer_rows()
    features = encode_features(loaded.preprocessing, pa.Table.from_pylist(rows))
    with torch.no_grad():
        predicted = model(torch.from_numpy(features)).argmax(dim=1).numpy()
    classes = loaded.preprocessing["label"]["categories"]
    truth = np.array([classes.index(r["diagnosis"]) for r in rows])
    accuracy = float((predicted == truth).mean())
    majority = max(truth.mean(), 1 - truth.mean())
    assert accuracy > majority + 0.05, (accuracy, majority)


@SQLITE_ONLY
def test_errors_arrive_as_market_api_error_with_the_api_code(
    live_server: str, listed_cancer, make_user
) -> None:
    researcher = make_user(Role.RESEARCHER)
    with pytest.raises(MarketAPIError) as wrong_password:
        MarketClient.login(live_server, researcher.email, "not the password at all")
    assert (wrong_password.value.status, wrong_password.value.code) == (401, "invalid_credentials")

    with MarketClient(live_server, token="mkt_not-a-real-token") as stranger:
        with pytest.raises(MarketAPIError) as bad_token:
            stranger.datasets()
    assert bad_token.value.status == 401
    assert bad_token.value.code == "authentication_required"

    with MarketClient.login(live_server, researcher.email, researcher.password) as market:
        # Over the owner's per-run cap of 2: quoted with the reason, refused when bought.
        greedy = market.quote(listed_cancer["id"], "logistic_regression", 5.0, **LOGISTIC_RUN)
        assert not greedy.fits_budget and "cap" in (greedy.reason or "")
        with pytest.raises(MarketAPIError) as over_budget:
            market.buy(greedy)
        assert (over_budget.value.status, over_budget.value.code) == (409, "budget_exceeded")
        assert "max_epsilon_per_run" in over_budget.value.details

        with pytest.raises(MarketAPIError) as missing:
            market.dataset("no-such-dataset")
        assert (missing.value.status, missing.value.code) == (404, "not_found")

        with pytest.raises(MarketAPIError) as invalid:
            market.quote(listed_cancer["id"], "logistic_regression", -1.0)
        assert (invalid.value.status, invalid.value.code) == (422, "validation_error")


def test_an_unreachable_server_is_a_market_api_error() -> None:
    with MarketClient("http://127.0.0.1:9", timeout=2) as market:
        with pytest.raises(MarketAPIError) as unreachable:
            market.datasets()
    assert unreachable.value.status is None and unreachable.value.code == "unreachable"


# -- wait() against scripted responses: the bar and a failure, without training anything --


def _run_json(status: str, step: int, error: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "id": "abcdef0123456789",
        "status": status,
        "progress": {"step": step, "steps": 10, "epsilon_spent": step / 10},
        "privacy_receipt": None,
        "cost_receipt": None,
        "metrics": None,
        "error": error,
    }


def _scripted(*states: dict[str, Any]) -> httpx.MockTransport:
    replies = iter(states)

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=json.dumps(next(replies)).encode())

    return httpx.MockTransport(handle)


def test_wait_shows_steps_and_epsilon_then_raises_run_failed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    failure = {"code": "training_error", "message": "the loss became NaN"}
    transport = _scripted(_run_json("running", 4), _run_json("failed", 6, failure))
    with MarketClient("http://market.test", token="t", transport=transport) as market:
        run = market.run("abcdef0123456789")
        with pytest.raises(RunFailed) as failed:
            run.wait(poll_interval=0)
    assert failed.value.code == "training_error" and "NaN" in failed.value.message
    assert failed.value.run is run and isinstance(failed.value, MarketAPIError)
    bar = capsys.readouterr().err
    assert "run abcdef01" in bar and "6/10" in bar and "epsilon=0.600" in bar


def test_wait_times_out_with_the_progress_so_far() -> None:
    transport = _scripted(*[_run_json("running", 3)] * 100)
    with MarketClient("http://market.test", transport=transport) as market:
        run = market.run("abcdef0123456789")
        with pytest.raises(TimeoutError, match="step 3 of 10"):
            run.wait(timeout=0.05, progress=False, poll_interval=0.01)


def test_errors_not_in_the_api_shape_still_read_well() -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(502, text="<h1>Bad gateway</h1>")
    )
    with MarketClient("http://market.test", transport=transport) as market:
        with pytest.raises(MarketAPIError) as error:
            market.datasets()
    assert (error.value.status, error.value.code) == (502, "http_502")
    assert "Bad gateway" in error.value.message


def test_model_shorthands() -> None:
    assert model_request("mlp") == {"template": "mlp"}
    layers: list[dict[str, Any]] = [{"type": "flatten"}, {"type": "linear", "out_features": 10}]
    assert model_request(layers) == {"layers": layers}
    assert model_request({"template": "mlp", "hidden": [64]}) == {"template": "mlp", "hidden": [64]}


def test_the_docstring_examples_run() -> None:
    assert doctest.testmod(market.client).failed == 0
