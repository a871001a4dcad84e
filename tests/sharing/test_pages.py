"""Sharing's pages with seeded runs (no training): the publish form's errors and who may use
it, the browse page's search, and the statements page's access rules."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import func, select

from market.accounts.models import Role
from market.sharing.models import SharedModel
from market.trading.models import Run
from tests.helpers import csrf_token_from
from tests.ledgers_web.conftest import (  # noqa: F401 - fixtures reused here
    browser_for,
    create_draft,
    listed_cancer,
    owner,
    people,
    seed_run,
    upload,
    when,
)


def _delivered(app: Any, seed_run, dataset_id: str, buyer_id: int) -> str:  # noqa: F811
    run_id = seed_run(dataset_id, buyer_id, finished_at=when(3, 2), total="2.48")
    with app.extensions["market"].database.write() as session:
        run = session.get(Run, run_id)
        assert run is not None
        run.model_name = f"{run_id}.safetensors"
        session.add(run)
    return run_id


def _shared_count(app: Any) -> int:
    with app.extensions["market"].database.read() as session:
        return int(session.exec(select(func.count()).select_from(SharedModel)).one())


def _form(web, run_id: str, **changes: str) -> dict[str, str]:
    data = {
        "csrf_token": csrf_token_from(web, f"/runs/{run_id}"),
        "title": "A shared model",
        "description": "",
        "licence": "CC-BY-4.0",
        "price": "2.00",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_publish_form_errors_and_who_may_publish(
    app,
    make_user,
    listed_cancer,  # noqa: F811
    people,  # noqa: F811
    seed_run,  # noqa: F811
    browser_for,  # noqa: F811
) -> None:
    buyer = people["researcher"]
    run_id = _delivered(app, seed_run, listed_cancer["id"], buyer.id)
    web = browser_for(buyer)
    page = web.get(f"/runs/{run_id}").get_data(as_text=True)
    assert 'data-testid="publish-form"' in page

    for price in ("-1", "2.5.0", "abc", "2.005"):
        answer = web.post(f"/runs/{run_id}/publish", data=_form(web, run_id, price=price))
        assert answer.status_code == 303
        shown = web.get(answer.headers["Location"]).get_data(as_text=True)
        assert 'class="flash error"' in shown, price
    assert _shared_count(app) == 0

    # Someone else's run: not found, and nothing written.
    other = browser_for(people["other_owner"])
    assert other.get(f"/runs/{run_id}").status_code == 404
    stranger = browser_for(make_user(Role.RESEARCHER))
    answer = stranger.post(
        f"/runs/{run_id}/publish",
        data={**_form(web, run_id), "csrf_token": csrf_token_from(stranger, "/models")},
    )
    assert answer.status_code == 404
    assert _shared_count(app) == 0

    answer = web.post(f"/runs/{run_id}/publish", data=_form(web, run_id))
    assert answer.status_code == 303 and "/models/" in answer.headers["Location"]
    assert _shared_count(app) == 1
    page = web.get(f"/runs/{run_id}").get_data(as_text=True)
    assert 'data-testid="shared-as"' in page and 'data-testid="publish-form"' not in page

    # The browse page finds it by the dataset's title, and not by an unrelated word.
    listing = stranger.get("/models?q=cancer").get_data(as_text=True)
    assert "A shared model" in listing
    assert "A shared model" not in stranger.get("/models?q=zebra").get_data(as_text=True)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_statements_page_is_yours_unless_you_audit(
    app,
    listed_cancer,  # noqa: F811
    people,  # noqa: F811
    seed_run,  # noqa: F811
    browser_for,  # noqa: F811
) -> None:
    buyer = people["researcher"]
    seed_run(listed_cancer["id"], buyer.id, finished_at=when(3, 2), total="2.48", royalty="1.00")
    mine = browser_for(buyer).get("/statements?month=2026-03").get_data(as_text=True)
    assert 'data-total="1.48"' in mine  # the terms: 0.40 + 0.01 + 0.02 + 1.00 + 0.05
    owner_page = browser_for(people["owner"]).get("/statements?month=2026-03")
    assert 'data-total="1.00"' in owner_page.get_data(as_text=True)  # the royalty received
    auditor = browser_for(people["auditor"])
    seen = auditor.get(f"/statements?month=2026-03&account_id={buyer.id}")
    assert seen.status_code == 200 and 'data-total="1.48"' in seen.get_data(as_text=True)
    refused = browser_for(people["other_owner"]).get(f"/statements?account_id={buyer.id}")
    assert refused.status_code == 403
    assert browser_for(buyer).get("/statements?month=2026-99").status_code == 400
