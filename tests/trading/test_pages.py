"""The trading pages through a signed-in browser session: quote form, quote, buy, the run page
with its progress JSON and receipts, run lists, and who may see or download what."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlmodel import func, select

from market.accounts.models import Role
from market.trading.models import Quote, Run
from privacy.model_io import load_model
from tests.helpers import csrf_token_from, login
from tests.trading.conftest import quote_body

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

QUOTE_FORM = {
    "model_kind": "logistic_regression",
    "hidden": "128",
    "dropout": "0",
    "layers": "",
    "epsilon": "1.0",
    "epochs": "10",
    "batch_size": "64",
    "learning_rate": "0.1",
    "worker_class": "cpu",
    "deadline": "",
}


@pytest.fixture
def browser_for(app) -> Callable[[Any], FlaskClient]:
    """A test client signed in through the login page, as a person would be."""

    def sign_in(account: Any) -> FlaskClient:
        web = app.test_client()
        assert login(web, account.email, account.password) == 302
        return web

    return sign_in


def count(app, table: type) -> int:
    with app.extensions["market"].database.read() as session:
        return int(session.exec(select(func.count()).select_from(table)).one())


def ask_quote(web: FlaskClient, dataset_id: str, **changes: str):
    page = f"/datasets/{dataset_id}"
    data = {**QUOTE_FORM, **changes, "csrf_token": csrf_token_from(web, page)}
    return web.post(f"{page}/quote", data=data)


def wait_on_page(web: FlaskClient, run_id: str, timeout: float = 600) -> dict[str, Any]:
    """Poll the progress JSON as the run page's script does, until the run ends."""
    deadline = time.monotonic() + timeout
    seen: list[int] = []
    while time.monotonic() < deadline:
        response = web.get(f"/runs/{run_id}/progress.json")
        assert response.status_code == 200
        body = response.get_json()
        seen.append(body["percent"])
        if body["finished"]:
            assert seen == sorted(seen), "progress never goes backwards"
            return body
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


def test_quote_buy_and_watch_a_run_through_the_pages(
    app, listed_cancer, researcher, browser_for, consumer
) -> None:
    account, _ = researcher
    web = browser_for(account)
    dataset_page = web.get(f"/datasets/{listed_cancer['id']}").get_data(as_text=True)
    assert "Buy a private training run" in dataset_page
    assert 'value="cnn"' not in dataset_page  # tabular data: no CNN template offered
    assert 'max="2.0"' in dataset_page  # the owner's per-run cap, enforced by the browser too

    asked = ask_quote(web, listed_cancer["id"])
    assert asked.status_code == 303, asked.get_data(as_text=True)
    quote_path = asked.headers["Location"]
    assert re.fullmatch(r"/quotes/[0-9a-f]{32}", quote_path)
    quote_page = web.get(quote_path).get_data(as_text=True)
    for shown in ("Noise multiplier", "Sample rate", "Steps", "Accountant", "rdp"):
        assert shown in quote_page
    assert "Fits the dataset" in quote_page
    for term in ("Compute", "Energy", "Environment", "Royalty to the owner", "Total"):
        assert term in quote_page
    assert "7.00 EUR" in quote_page  # royalty 5.00 per run + 2.00 x epsilon 1

    buy_token = csrf_token_from(web, quote_path)
    bought = web.post(f"{quote_path}/buy", data={"csrf_token": buy_token})
    assert bought.status_code == 303
    run_path = bought.headers["Location"]
    run_id = run_path.rsplit("/", 1)[1]
    first = web.get(run_path).get_data(as_text=True)
    assert "run-progress.js" in first and "Refresh" in first

    done = wait_on_page(web, run_id)
    assert done["status"] == "succeeded" and done["percent"] == 100
    assert done["step"] == done["steps"] > 0

    page = web.get(run_path).get_data(as_text=True)
    assert 'data-testid="run-status" id="run-status">succeeded<' in page
    assert "Privacy receipt" in page and "Cost receipt" in page
    assert "Estimated" in page and "Measured" in page
    assert "accuracy" in page
    assert "Download model (safetensors)" in page
    assert "run-progress.js" not in page  # nothing left to poll
    assert "100%" in page

    download = web.get(f"{run_path}/model")
    assert download.status_code == 200
    assert "attachment" in download.headers["Content-Disposition"]
    loaded = load_model(download.data)
    assert loaded.module is not None

    mine = web.get("/my/runs").get_data(as_text=True)
    assert run_path in mine and listed_cancer["title"] in mine and "succeeded" in mine
    assert "7.00 EUR" in mine

    again = web.post(f"{quote_path}/buy", data={"csrf_token": buy_token})
    assert again.status_code == 303 and again.headers["Location"] == quote_path
    assert "already used" in web.get(quote_path).get_data(as_text=True)
    assert count(app, Run) == 1


def test_forms_without_a_csrf_token_are_refused(
    app, listed_cancer, researcher, browser_for
) -> None:
    account, _ = researcher
    web = browser_for(account)
    refused = web.post(f"/datasets/{listed_cancer['id']}/quote", data=QUOTE_FORM)
    assert refused.status_code == 400
    assert "csrf_failed" in refused.get_data(as_text=True)
    assert count(app, Quote) == 0

    quote_path = ask_quote(web, listed_cancer["id"]).headers["Location"]
    assert web.post(f"{quote_path}/buy").status_code == 400
    assert web.post(f"{quote_path}/buy", data={"csrf_token": "forged"}).status_code == 400
    assert count(app, Run) == 0


def test_form_errors_re_render_the_form_and_create_nothing(
    app, listed_cancer, researcher, browser_for
) -> None:
    account, _ = researcher
    web = browser_for(account)
    cases = [
        ({"model_kind": "layers", "layers": '[{"type": "linear", '}, "not valid JSON"),
        ({"model_kind": "layers", "layers": '[{"type": "lstm"}]'}, "lstm"),
        ({"model_kind": "mlp", "hidden": "many"}, "whole numbers"),
        ({"epsilon": "5"}, "owner's cap of 2 per run"),
        ({"epochs": "0"}, "Epochs"),
        ({"worker_class": "quantum"}, "Not a valid choice"),
        ({"model_kind": "cnn"}, "Not a valid choice"),  # no CNN on tabular data
    ]
    for changes, message in cases:
        response = ask_quote(web, listed_cancer["id"], **changes)
        html = unescape(response.get_data(as_text=True))
        assert 400 <= response.status_code < 500, (changes, response.status_code)
        assert message in html, (changes, re.findall(r'data-testid="quote-error">([^<]*)', html))
        assert 'data-testid="quote-error"' in html and "Get a quote" in html
        for name, value in changes.items():  # what was typed is kept
            if name not in ("model_kind", "worker_class"):
                assert value in html
    assert count(app, Quote) == 0


def test_a_quote_over_the_remaining_budget_shows_why_and_cannot_be_bought(
    app, owner, create_draft, upload, researcher, browser_for
) -> None:
    from tests.catalog.conftest import cancer_rows, metadata, to_csv

    _, owner_headers = owner
    tight = metadata(privacy={"epsilon_total": 1.1, "delta": 1e-5, "max_epsilon_per_run": 1.1})
    draft = create_draft(owner_headers, tight)
    assert upload(owner_headers, draft["id"], to_csv(cancer_rows())).status_code == 200
    account, _ = researcher
    web = browser_for(account)
    first = ask_quote(web, draft["id"]).headers["Location"]
    bought = web.post(f"{first}/buy", data={"csrf_token": csrf_token_from(web, first)})
    assert bought.status_code == 303 and bought.headers["Location"].startswith("/runs/")
    # No consumer: the first run stays queued, its reservation counts against the budget.
    second = ask_quote(web, draft["id"]).headers["Location"]
    page = unescape(web.get(second).get_data(as_text=True))
    assert "Does not fit" in page and "over its budget of 1.1" in page
    assert 'data-testid="buy"' not in page
    refused = web.post(f"{second}/buy", data={"csrf_token": csrf_token_from(web, second)})
    assert refused.status_code == 303 and refused.headers["Location"] == second
    assert "cannot hold this run" in unescape(web.get(second).get_data(as_text=True))
    assert count(app, Run) == 1


def test_a_deadline_adds_the_greenest_start_and_a_past_one_is_a_form_error(
    app, listed_cancer, researcher, browser_for
) -> None:
    account, _ = researcher
    web = browser_for(account)
    later = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    asked = ask_quote(web, listed_cancer["id"], deadline=later)
    assert asked.status_code == 303, unescape(asked.get_data(as_text=True))
    page = unescape(web.get(asked.headers["Location"]).get_data(as_text=True))
    assert "Greenest start before your deadline" in page
    assert 'data-testid="greenest"' in page and "Finish by" in page

    earlier = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    refused = ask_quote(web, listed_cancer["id"], deadline=earlier)
    assert 400 <= refused.status_code < 500
    assert 'data-testid="quote-error"' in refused.get_data(as_text=True)
    assert count(app, Quote) == 1


def test_image_datasets_offer_the_cnn_template(
    app, owner, create_draft, upload, researcher, browser_for
) -> None:
    from tests.catalog.conftest import NPZ_METADATA, digits_npz, metadata

    _, owner_headers = owner
    draft = create_draft(owner_headers, metadata(NPZ_METADATA))
    assert upload(owner_headers, draft["id"], digits_npz(), "application/x-npz").status_code == 200
    web = browser_for(researcher[0])
    assert 'value="cnn"' in web.get(f"/datasets/{draft['id']}").get_data(as_text=True)
    asked = ask_quote(web, draft["id"], model_kind="cnn", learning_rate="")
    assert asked.status_code == 303, unescape(asked.get_data(as_text=True))
    page = unescape(web.get(asked.headers["Location"]).get_data(as_text=True))
    from privacy.specs import template_defaults

    recipe = template_defaults({"template": "cnn"}, "image", 1.0)  # the recipe for images
    shown = f"{recipe['learning_rate']:g} ({recipe['optimizer']})"
    assert '"template": "cnn"' in page and shown in page


def test_who_sees_and_downloads_a_run(
    app, client, listed_cancer, owner, researcher, make_user, browser_for, consumer, wait_for_run
) -> None:
    buyer, headers = researcher
    quote = client.post("/api/v1/quotes", json=quote_body(listed_cancer["id"]), headers=headers)
    run_id = client.post(
        "/api/v1/runs", json={"quote_id": quote.get_json()["id"]}, headers=headers
    ).get_json()["id"]
    assert wait_for_run(headers, run_id)["status"] == "succeeded"
    paths = [f"/runs/{run_id}", f"/runs/{run_id}/progress.json", f"/runs/{run_id}/model"]

    other = browser_for(make_user(Role.RESEARCHER))
    for path in paths:
        assert other.get(path).status_code == 404, path
    assert run_id not in other.get("/my/runs").get_data(as_text=True)
    assert other.get(f"/quotes/{quote.get_json()['id']}").status_code == 404
    assert other.get("/my/data-runs").status_code == 403
    assert other.get("/runs").status_code == 403

    owner_web = browser_for(owner[0])
    listed = owner_web.get("/my/data-runs")
    assert listed.status_code == 200
    assert f"/runs/{run_id}" in listed.get_data(as_text=True)
    run_page = owner_web.get(f"/runs/{run_id}").get_data(as_text=True)
    assert "Privacy receipt" in run_page and "Download model" not in run_page
    assert owner_web.get(f"/runs/{run_id}/progress.json").get_json()["status"] == "succeeded"
    assert owner_web.get(f"/runs/{run_id}/model").status_code == 403
    assert owner_web.get("/my/runs").status_code == 403

    auditor = browser_for(make_user(Role.AUDITOR))
    assert f"/runs/{run_id}" in auditor.get("/runs").get_data(as_text=True)
    assert auditor.get(f"/runs/{run_id}").status_code == 200
    assert auditor.get(f"/runs/{run_id}/model").status_code == 403

    buyer_web = browser_for(buyer)
    assert buyer_web.get(f"/runs/{run_id}/model").status_code == 200
    nav = buyer_web.get("/my/runs").get_data(as_text=True)
    assert ">My runs</a>" in nav and "Runs on my data" not in nav


def test_pages_need_a_sign_in(app, listed_cancer) -> None:
    anonymous = app.test_client()
    for path in ("/my/runs", "/my/data-runs", "/runs", "/runs/abc", "/runs/abc/progress.json"):
        response = anonymous.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"], path
