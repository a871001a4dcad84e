"""A worker recalls the table it decoded for a dataset's next run, and never for a dataset
whose key was destroyed (delisted): the public checks run before the memory is asked."""

from __future__ import annotations

import pytest

from market.catalog.uploads import delist_dataset
from market.trading.execution import execute_run
from tests.trading.conftest import quote_body

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _buy(client, headers, dataset_id: str) -> str:
    quote = client.post("/api/v1/quotes", json=quote_body(dataset_id, epochs=2), headers=headers)
    assert quote.status_code == 201, quote.get_json()
    run = client.post("/api/v1/runs", json={"quote_id": quote.get_json()["id"]}, headers=headers)
    assert run.status_code == 202, run.get_json()
    return run.get_json()["id"]


def test_the_second_run_on_a_dataset_recalls_its_table(app, client, listed_cancer, researcher):
    market = app.extensions["market"]
    _, headers = researcher
    results = []
    for _ in range(2):
        run_id = _buy(client, headers, listed_cancer["id"])
        execute_run(market, run_id)
        results.append(client.get(f"/api/v1/runs/{run_id}", headers=headers).get_json())
    assert [r["status"] for r in results] == ["succeeded", "succeeded"]
    assert (market.prepared_tables.misses, market.prepared_tables.hits) == (1, 1)
    # Both runs charged their plans: recalling the rows is touching them.
    spent = [r["privacy_receipt"]["epsilon_spent"] for r in results]
    detail = client.get(f"/api/v1/datasets/{listed_cancer['id']}", headers=headers).get_json()
    assert detail["budget"]["epsilon_spent"] >= max(spent)


def test_a_delisted_dataset_is_not_trained_from_memory(
    app, client, owner, listed_cancer, researcher
):
    market = app.extensions["market"]
    _, headers = researcher
    execute_run(market, _buy(client, headers, listed_cancer["id"]))
    queued = _buy(client, headers, listed_cancer["id"])
    assert market.prepared_tables.bytes > 0
    delist_dataset(market, actor=owner[0], dataset_id=listed_cancer["id"])
    execute_run(market, queued)
    body = client.get(f"/api/v1/runs/{queued}", headers=headers).get_json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == "key_error", body  # shredded: no key, no rows
    assert market.prepared_tables.hits == 0
