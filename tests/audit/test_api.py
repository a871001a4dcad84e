"""/api/v1/audit/*: auditors page through entries, fetch checkpoints, proofs and the key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from market.accounts.models import Role
from market.audit import init_app, log, merkle, signing
from market.audit.verify import verify_inclusion_evidence


@pytest.fixture
def audit_app(app: Any) -> Any:
    """The app with the audit API (registered by market.api once the lead wires it in)."""
    if "audit_api" not in app.blueprints:
        init_app(app)
    signing.ensure_signing_key(app.extensions["market"].settings)
    return app


def _append(app: Any, count: int) -> None:
    market = app.extensions["market"]
    for i in range(count):
        with market.database.write() as session:
            log.append(session, kind="user.created", subject=f"u{i}", actor_id=None, data={"i": i})


def test_only_auditors_and_admins_read_the_log(
    audit_app: Any,
    client: FlaskClient,
    make_user: Callable[..., Any],
    token_for: Callable[..., dict[str, str]],
) -> None:
    assert client.get("/api/v1/audit/entries").status_code == 401
    for role in (Role.OWNER, Role.RESEARCHER):
        response = client.get("/api/v1/audit/checkpoint", headers=token_for(make_user(role)))
        assert response.status_code == 403
        assert response.get_json()["error"]["code"] == "forbidden"
    for role in (Role.AUDITOR, Role.ADMIN):
        response = client.get("/api/v1/audit/public-key", headers=token_for(make_user(role)))
        assert response.status_code == 200


def test_auditor_pages_entries_and_verifies_a_proof_with_the_public_key(
    audit_app: Any,
    client: FlaskClient,
    make_user: Callable[..., Any],
    token_for: Callable[..., dict[str, str]],
) -> None:
    # Creating the auditor's account is itself logged (seq 1); five more entries follow.
    headers = token_for(make_user(Role.AUDITOR))
    _append(audit_app, 5)

    first = client.get("/api/v1/audit/entries?after=0&limit=3", headers=headers).get_json()
    assert [e["seq"] for e in first["items"]] == [1, 2, 3]
    assert first["items"][0]["kind"] == "user.created"
    assert first["tree_size"] == 6 and first["next_after"] == 3
    rest = client.get("/api/v1/audit/entries?after=3&limit=3", headers=headers).get_json()
    assert [e["seq"] for e in rest["items"]] == [4, 5, 6] and rest["next_after"] is None
    entry = first["items"][2]
    assert entry["leaf_hash"] == merkle.leaf_hash(entry["entry"].encode()).hex()
    assert entry["time"].endswith("Z") and entry["data"] == {"i": 1}

    # No checkpoint yet: the endpoint signs the first one.
    cp = client.get("/api/v1/audit/checkpoint", headers=headers).get_json()
    assert cp["tree_size"] == 6 and cp["note"].startswith(cp["origin"] + "\n6\n")
    pem = client.get("/api/v1/audit/public-key", headers=headers)
    assert pem.mimetype == "application/x-pem-file"
    assert pem.get_data(as_text=True).startswith("-----BEGIN PUBLIC KEY-----")

    proof = client.get("/api/v1/audit/entries/3/proof", headers=headers).get_json()
    assert proof["entry"] == entry["entry"]
    assert verify_inclusion_evidence(proof, pem.get_data())

    _append(audit_app, 3)
    with audit_app.extensions["market"].database.write() as session:
        log.checkpoint(session, audit_app.extensions["market"].settings)
    consistency = client.get("/api/v1/audit/consistency?first=6", headers=headers).get_json()
    assert consistency["second"] == 9
    assert merkle.verify_consistency(
        6,
        9,
        bytes.fromhex(cp["root"]),
        bytes.fromhex(consistency["checkpoint"]["root"]),
        [bytes.fromhex(h) for h in consistency["proof"]],
    )
    missing = client.get("/api/v1/audit/entries/99/proof", headers=headers)
    assert missing.status_code == 404
    bad = client.get("/api/v1/audit/entries?after=-1", headers=headers)
    assert bad.status_code == 422


def test_the_openapi_document_lists_the_audit_endpoints(
    audit_app: Any, client: FlaskClient
) -> None:
    paths = client.get("/api/openapi.json").get_json()["paths"]
    for path in ("/api/v1/audit/entries", "/api/v1/audit/checkpoint", "/api/v1/audit/public-key"):
        assert path in paths
