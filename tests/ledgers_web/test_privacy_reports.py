"""Privacy self-audit reports: logged as `privacy.audit` entries, read by auditors through
GET /api/v1/audit/privacy-reports and on the audit page (the latest per class)."""

from __future__ import annotations

from typing import Any

from market.accounts.models import Role
from market.audit import log
from privacy.audit import AuditSettings, run_audit


def _log_report(app: Any, **settings: Any) -> dict[str, Any]:
    report = run_audit(AuditSettings(rows=3000, epochs=1, canaries=200, **settings)).to_json()
    market = app.extensions["market"]
    with market.database.write() as session:
        log.record(
            session,
            market.settings,
            kind="privacy.audit",
            subject=report["config"],
            actor_id=None,
            data=report,
        )
    return report


def test_auditors_read_the_latest_report_per_class(
    app: Any, client: Any, browser_for: Any, people: dict[str, Any], token_for: Any, make_user: Any
) -> None:
    url = "/api/v1/audit/privacy-reports"
    auditor = token_for(people["auditor"])
    assert client.get(url, headers=auditor).get_json() == {"items": []}
    assert "No audit yet" in browser_for(people["auditor"]).get("/audit").get_data(as_text=True)
    _log_report(app, config="cpu", seed=1)
    newer = _log_report(app, config="cpu", seed=2)
    gpu = _log_report(app, config="gpu", seed=3, family="logistic_regression")

    items = client.get(url, headers=auditor).get_json()["items"]
    assert [(i["config"], i["seed"]) for i in items] == [("cpu", 2), ("gpu", 3)]
    assert items[0]["lower_bound"] == newer["lower_bound"]
    assert items[1]["verdict"] == gpu["verdict"] == "no evidence against the claim"
    assert items[0]["caveats"] and items[0]["guesses"][0]["k_plus"] == 2

    html = browser_for(people["auditor"]).get("/audit").get_data(as_text=True)
    assert 'data-testid="privacy-reports"' in html
    assert "logistic_regression" in html and f"{newer['lower_bound']:.3f}" in html

    assert client.get(url).status_code == 401
    for role in (Role.OWNER, Role.RESEARCHER):
        assert client.get(url, headers=token_for(make_user(role))).status_code == 403
    assert client.get(url, headers=token_for(make_user(Role.ADMIN))).status_code == 200


def test_the_endpoint_is_in_the_openapi_document(client: Any) -> None:
    document = client.get("/api/openapi.json").get_json()
    operation = document["paths"]["/api/v1/audit/privacy-reports"]["get"]
    assert {"200", "401", "403"} <= set(operation["responses"])
    assert "PrivacyReports" in document["components"]["schemas"]
