"""Who sees a run and who downloads its model."""

from __future__ import annotations

import pytest

from market.accounts.models import Role
from tests.trading.conftest import quote_body


@pytest.fixture
def finished_run(client, listed_cancer, researcher, consumer, wait_for_run):
    _, headers = researcher
    quote = client.post(
        "/api/v1/quotes", json=quote_body(listed_cancer["id"]), headers=headers
    ).get_json()
    run_id = client.post(
        "/api/v1/runs", json={"quote_id": quote["id"]}, headers=headers
    ).get_json()["id"]
    run = wait_for_run(headers, run_id)
    assert run["status"] == "succeeded"
    return run, quote


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_run_visibility_and_download_rights(
    client, finished_run, researcher, owner, make_user, token_for
) -> None:
    run, quote = finished_run
    _, buyer = researcher
    _, owner_headers = owner
    other_researcher = token_for(make_user(Role.RESEARCHER))
    other_owner = token_for(make_user(Role.OWNER))
    auditor = token_for(make_user(Role.AUDITOR))
    path = f"/api/v1/runs/{run['id']}"

    assert client.get(path, headers=buyer).status_code == 200
    assert client.get(path, headers=owner_headers).status_code == 200  # runs on their data
    assert client.get(path, headers=auditor).status_code == 200
    assert client.get(path, headers=other_researcher).status_code == 404
    assert client.get(path, headers=other_owner).status_code == 404

    assert client.get(path + "/model", headers=buyer).status_code == 200
    assert client.get(path + "/model", headers=owner_headers).status_code == 403  # not a buyer
    assert client.get(path + "/model", headers=auditor).status_code == 403
    assert client.get(path + "/model", headers=other_researcher).status_code == 404

    def listed(headers: dict[str, str]) -> set[str]:
        return {r["id"] for r in client.get("/api/v1/runs", headers=headers).get_json()["items"]}

    assert listed(buyer) == {run["id"]}
    assert listed(owner_headers) == {run["id"]}
    assert listed(auditor) == {run["id"]}
    assert listed(other_researcher) == set()
    assert listed(other_owner) == set()
    assert client.get(f"/api/v1/quotes/{quote['id']}", headers=other_researcher).status_code == 404
    other_buy = client.post(
        "/api/v1/runs", json={"quote_id": quote["id"]}, headers=other_researcher
    )
    assert other_buy.status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_owners_and_auditors_cannot_quote_or_buy(
    client, listed_cancer, owner, make_user, token_for
) -> None:
    _, owner_headers = owner
    auditor = token_for(make_user(Role.AUDITOR))
    for headers in (owner_headers, auditor):
        response = client.post(
            "/api/v1/quotes", json=quote_body(listed_cancer["id"]), headers=headers
        )
        assert response.status_code == 403


@pytest.mark.parametrize("database_url", ["sqlite", "postgres"], indirect=True)
def test_audit_entries_are_scoped_to_what_each_role_may_see(
    client, finished_run, researcher, owner, make_user, token_for, listed_cancer
) -> None:
    run, _ = finished_run
    _, buyer = researcher
    _, owner_headers = owner
    auditor = token_for(make_user(Role.AUDITOR))
    stranger = token_for(make_user(Role.RESEARCHER))

    def subjects(headers: dict[str, str]) -> set[str]:
        body = client.get("/api/v1/audit/entries?limit=1000", headers=headers).get_json()
        return {entry["subject"] for entry in body["items"]}

    everything = subjects(auditor)
    assert {run["id"], listed_cancer["id"]} <= everything
    assert subjects(buyer) == {run["id"]}
    assert subjects(owner_headers) == {run["id"], listed_cancer["id"]}
    assert subjects(stranger) == set()
