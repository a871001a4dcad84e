"""Editing a listing through the API (PUT /api/v1/datasets/{id}): the owner changes its words,
tags, licence and prices and may raise its total budget, which is its own audit entry; nobody
else edits, and a bad edit changes nothing."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from market.accounts.models import Role
from market.audit.models import AuditEntry
from tests.catalog.conftest import cancer_rows, to_csv

EDIT = {
    "title": "Breast cancer diagnoses, Wisconsin",
    "description": "569 biopsies, 30 numeric features.",
    "licence": "CC-BY-SA-4.0",
    "tags": ["health", "oncology"],
    "per_run": "6.50",
    "per_epsilon": "2.00",
    "epsilon_total": 12.0,
}


def _listed(client, headers, create_draft, upload) -> dict[str, Any]:
    draft = create_draft(headers)
    assert upload(headers, draft["id"], to_csv(cancer_rows(120))).status_code == 200
    return draft


def _kinds(app, dataset_id: str) -> list[str]:
    with app.extensions["market"].database.read() as session:
        entries = session.exec(select(AuditEntry).where(AuditEntry.subject == dataset_id)).all()
        return [e.kind for e in entries]


def test_the_owner_edits_and_a_budget_raise_is_its_own_audit_entry(
    app, client, owner, create_draft, upload
) -> None:
    _, headers = owner
    draft = _listed(client, headers, create_draft, upload)
    response = client.put(f"/api/v1/datasets/{draft['id']}", json=EDIT, headers=headers)
    assert response.status_code == 200, response.get_json()
    edited = response.get_json()
    assert edited["title"] == EDIT["title"] and edited["licence"] == "CC-BY-SA-4.0"
    assert sorted(edited["tags"]) == ["health", "oncology"]
    assert edited["price"] == {"per_run": "6.50", "per_epsilon": "2.00", "currency": "EUR"}
    assert edited["budget"]["epsilon_total"] == 12.0
    assert edited["budget"]["delta"] == draft["budget"]["delta"]  # what was listed stays
    assert edited["rows"] == 120
    kinds = _kinds(app, draft["id"])
    assert kinds.count("dataset.budget_raised") == 1 and kinds.count("dataset.edited") == 1
    # The same edit again changes nothing and records nothing.
    again = client.put(f"/api/v1/datasets/{draft['id']}", json=EDIT, headers=headers)
    assert again.status_code == 200
    assert _kinds(app, draft["id"]) == kinds


def test_nobody_else_edits_and_bad_edits_change_nothing(
    app, client, owner, make_user, token_for, create_draft, upload
) -> None:
    _, headers = owner
    draft = _listed(client, headers, create_draft, upload)
    path = f"/api/v1/datasets/{draft['id']}"
    before = client.get(path, headers=headers).get_json()
    other_owner = token_for(make_user(Role.OWNER))
    researcher = token_for(make_user(Role.RESEARCHER))
    assert client.put(path, json=EDIT, headers=other_owner).status_code == 403
    assert client.put(path, json=EDIT, headers=researcher).status_code == 403
    assert client.put(path, json=EDIT).status_code == 401
    lower = client.put(path, json={**EDIT, "epsilon_total": 5.0}, headers=headers)
    assert lower.status_code == 422
    assert lower.get_json()["error"]["details"]["field"] == "epsilon_total"
    surprise = client.put(path, json={**EDIT, "delta": 0.5}, headers=headers)
    assert surprise.status_code == 422  # the listed terms are not editable
    negative = client.put(path, json={**EDIT, "per_run": "-1"}, headers=headers)
    assert negative.status_code == 422
    unknown = client.put("/api/v1/datasets/" + "0" * 32, json=EDIT, headers=headers)
    assert unknown.status_code == 404
    assert client.get(path, headers=headers).get_json() == before
    assert "dataset.edited" not in _kinds(app, draft["id"])
