"""Model sharing end to end through the API: publish a really trained model, browse it,
acquire it, download the same bytes; no budget spent, royalties on the statements, the
avoided emissions on the receipt and on the dashboards; and every bad input refused."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from market.accounts.models import Role
from market.costing.pricing import human_emissions
from tests.sharing.conftest import (  # noqa: F401 - fixtures reused here
    browser_for,
    consumer,
    create_draft,
    delivered_run,
    failed_run,
    listed_cancer,
    owner,
    researcher,
    upload,
    wait_for_run,
)

PRICE = {"amount": "2.00", "currency": "EUR"}


def publish_body(run_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "run_id": run_id,
        "title": "Breast cancer logistic regression",
        "description": "DP logistic regression, epsilon 1",
        "licence": "CC-BY-4.0",
        "price": PRICE,
    }
    body.update(changes)
    return body


def _budget(client, headers: dict[str, str], dataset_id: str) -> tuple[float, int]:
    dataset = client.get(f"/api/v1/datasets/{dataset_id}", headers=headers).get_json()
    ledger = client.get(f"/api/v1/ledger/privacy?dataset_id={dataset_id}", headers=headers)
    assert ledger.status_code == 200, ledger.get_json()
    return dataset["budget"]["epsilon_spent"], len(ledger.get_json()["releases"])


def _credit(statement: dict[str, Any], kind: str) -> Decimal:
    (line,) = [x for x in statement["credits"]["lines"] if x["kind"] == kind]
    return Decimal(line["exact"])


@pytest.mark.slow
def test_publish_browse_acquire_download_without_spending_budget(
    app,
    client,
    make_user,
    token_for,
    listed_cancer,  # noqa: F811
    owner,  # noqa: F811
    researcher,  # noqa: F811
    delivered_run,  # noqa: F811
    failed_run,  # noqa: F811
    browser_for,  # noqa: F811
) -> None:
    dataset_id = listed_cancer["id"]
    publisher, publisher_headers = researcher
    owner_account, owner_headers = owner
    other = make_user(Role.RESEARCHER)
    other_headers = token_for(other)
    auditor = make_user(Role.AUDITOR)
    auditor_headers = token_for(auditor)
    run_id = delivered_run["id"]
    measured = delivered_run["cost_receipt"]["measured"]
    epsilon_before, releases_before = _budget(client, owner_headers, dataset_id)

    # Bad publications: nothing is written.
    someone_elses = client.post("/api/v1/models", json=publish_body(run_id), headers=other_headers)
    assert someone_elses.status_code == 404, someone_elses.get_json()  # not even confirmed
    by_owner = client.post("/api/v1/models", json=publish_body(run_id), headers=owner_headers)
    assert by_owner.status_code == 403
    failed = failed_run(dataset_id, publisher.id)
    not_delivered = client.post(
        "/api/v1/models", json=publish_body(failed), headers=publisher_headers
    )
    assert not_delivered.status_code == 409
    assert not_delivered.get_json()["error"]["code"] == "run_not_delivered"
    for price, status in (
        ({"amount": "-1.00", "currency": "EUR"}, 422),  # negative
        ({"amount": 2.5, "currency": "EUR"}, 422),  # a JSON float
        ({"amount": "2.005", "currency": "EUR"}, 400),  # finer than a cent
        ({"amount": "2.00", "currency": "USD"}, 400),  # another currency
    ):
        refused = client.post(
            "/api/v1/models", json=publish_body(run_id, price=price), headers=publisher_headers
        )
        assert refused.status_code == status, (price, refused.get_json())
        assert "error" in refused.get_json()
    assert client.get("/api/v1/models", headers=other_headers).get_json()["total"] == 0

    # Publish.
    created = client.post("/api/v1/models", json=publish_body(run_id), headers=publisher_headers)
    assert created.status_code == 201, created.get_json()
    model = created.get_json()
    model_id = model["id"]
    assert model["run_id"] == run_id and model["price"] == PRICE
    again = client.post("/api/v1/models", json=publish_body(run_id), headers=publisher_headers)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "already_published"

    # Browse, as anyone signed in.
    listed = client.get(f"/api/v1/models?dataset_id={dataset_id}", headers=other_headers)
    assert listed.status_code == 200
    page = listed.get_json()
    assert page["total"] == 1
    item = page["items"][0]
    assert item["dataset"] == {"id": dataset_id, "title": listed_cancer["title"]}
    assert item["spec"] == {"template": "logistic_regression"}
    assert item["privacy"]["epsilon"] == delivered_run["privacy_receipt"]["epsilon"]
    assert item["privacy"]["delta"] == delivered_run["privacy_receipt"]["delta"]
    assert item["metrics"] == delivered_run["metrics"] and "accuracy" in item["metrics"]
    assert item["training"]["energy_kwh"] == measured["energy_kwh"]
    assert item["training"]["emissions_kg"] == measured["emissions_kg"]
    assert item["can_download"] is False
    assert client.get("/api/v1/models?q=cancer", headers=auditor_headers).get_json()["total"] == 1
    assert client.get("/api/v1/models?q=zebra", headers=auditor_headers).get_json()["total"] == 0
    one = client.get(f"/api/v1/models/{model_id}", headers=owner_headers).get_json()
    assert one["id"] == model_id and one["acquisitions"] == 0
    assert client.get("/api/v1/models/nope", headers=owner_headers).status_code == 404

    # Only the publisher and acquirers download.
    for headers in (other_headers, owner_headers, auditor_headers):
        denied = client.get(f"/api/v1/models/{model_id}/file", headers=headers)
        assert denied.status_code == 403, denied.get_data(as_text=True)[:200]
        assert denied.get_json()["error"]["code"] == "forbidden"

    # Acquire.
    acquired = client.post(f"/api/v1/models/{model_id}/acquisitions", headers=other_headers)
    assert acquired.status_code == 201, acquired.get_json()
    acquisition = acquired.get_json()
    assert acquisition["model_id"] == model_id
    receipt = acquisition["receipt"]
    assert receipt["price"] == PRICE
    assert receipt["energy_avoided_kwh"] == measured["energy_kwh"]
    assert receipt["emissions_avoided_kg"] == measured["emissions_kg"]
    assert Decimal(receipt["emissions_avoided_kg"]) > 0
    assert receipt["owner_royalty"] == {"amount": "0.60", "currency": "EUR"}
    assert receipt["publisher_share"] == {"amount": "1.40", "currency": "EUR"}
    twice = client.post(f"/api/v1/models/{model_id}/acquisitions", headers=other_headers)
    assert twice.status_code == 409 and twice.get_json()["error"]["code"] == "already_acquired"
    own = client.post(f"/api/v1/models/{model_id}/acquisitions", headers=publisher_headers)
    assert own.status_code == 409
    assert (
        client.post(f"/api/v1/models/{model_id}/acquisitions", headers=owner_headers).status_code
        == 403
    )
    assert client.post("/api/v1/models/nope/acquisitions", headers=other_headers).status_code == 404

    # The same bytes as the run's model, for the acquirer and the publisher.
    original = client.get(f"/api/v1/runs/{run_id}/model", headers=publisher_headers)
    assert original.status_code == 200 and len(original.data) > 0
    for headers in (other_headers, publisher_headers):
        file = client.get(f"/api/v1/models/{model_id}/file", headers=headers)
        assert file.status_code == 200
        assert file.data == original.data
    assert client.get(f"/api/v1/models/{model_id}", headers=other_headers).get_json()[
        "can_download"
    ]

    # Post-processing: the dataset's budget and ledger did not move.
    assert _budget(client, owner_headers, dataset_id) == (epsilon_before, releases_before)

    # The statements: the buyer pays the price, the owner and the publisher receive shares.
    month = datetime.now(UTC).strftime("%Y-%m")
    buyer_statement = client.get(f"/api/v1/statements?month={month}", headers=other_headers)
    charges = buyer_statement.get_json()["charges"]
    assert [x["kind"] for x in charges["lines"]] == ["model_acquisitions"]
    assert charges["total"] == "2.00"
    owner_statement = client.get(
        f"/api/v1/statements?month={month}", headers=owner_headers
    ).get_json()
    assert _credit(owner_statement, "model_royalties") == Decimal("0.60")
    assert _credit(owner_statement, "run_royalties") == Decimal(measured["royalty"]["amount"])
    publisher_statement = client.get(
        f"/api/v1/statements?month={month}", headers=publisher_headers
    ).get_json()
    assert _credit(publisher_statement, "publisher_shares") == Decimal("1.40")

    # The audit log records both, with who did them.
    entries = client.get("/api/v1/audit/entries?limit=1000", headers=auditor_headers).get_json()
    kinds = {(e["kind"], e.get("actor_id")) for e in entries["items"]}
    assert ("model.published", publisher.id) in kinds
    assert ("model.acquired", other.id) in kinds

    # The dashboards total the emissions avoided: the owner's, and the platform's.
    avoided = human_emissions(measured["emissions_kg"])
    dashboard = browser_for(owner_account).get("/dashboard").get_data(as_text=True)
    assert f'data-testid="avoided-emissions">{avoided}<' in dashboard
    ledger = browser_for(auditor).get("/ledger/costs").get_data(as_text=True)
    assert f'data-testid="avoided-emissions">{avoided}<' in ledger
    assert "on the whole platform" in ledger

    # The dataset page shows what exists before the quote form.
    dataset_page = browser_for(other).get(f"/datasets/{dataset_id}").get_data(as_text=True)
    assert "Breast cancer logistic regression" in dataset_page
    assert dataset_page.index('data-testid="dataset-shared-models"') < dataset_page.index(
        'data-testid="ask-quote"'
    )
