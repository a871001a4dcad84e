"""Runs on two datasets that differ in one row end the same way, for hostile specs too.

Within each pair the run's status, error code, step count, the epsilon charged and every
public field of the privacy receipt are identical; only DP outputs (weights, noisy
metrics) and measured timings may differ. Runs go through the real API and the worker's
``execute_run`` in this process.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from sqlmodel import select

from market.trading.execution import execute_run
from market.trading.models import PrivacyRelease, Run
from tests.catalog.conftest import BOUNDS, FEATURES, cancer_rows, metadata, to_csv
from tests.trading.conftest import quote_body

# Public receipt fields: functions of the plan and the ledger only.
PUBLIC_RECEIPT = (
    "epsilon", "delta", "neighbouring_relation", "noise_multiplier", "sample_rate", "steps",
    "max_grad_norm", "accountant", "epsilon_spent", "epsilon_training", "grad_sample_mode",
    "records", "dataset_epsilon_after", "dataset_epsilon_total",
)  # fmt: skip

COLOURS, SIZES = ["red", "green", "blue"], ["s", "m", "l", "xl"]
CATEGORICAL_META = metadata(
    label="label",
    columns=[
        {"name": "colour", "type": "categorical", "categories": COLOURS},
        {"name": "size", "type": "categorical", "categories": SIZES},
        {"name": "label", "type": "categorical", "categories": ["no", "yes"]},
    ],
)
VOCABULARY = len(COLOURS) + len(SIZES)


def _categorical_rows(first: dict[str, str]) -> bytes:
    rows = [first] + [
        {
            "colour": COLOURS[i % 3],
            "size": SIZES[(i * 7) % 4],
            "label": "yes" if (i % 3 == 0) != (i % 5 == 0) else "no",
        }
        for i in range(1, 400)
    ]
    return to_csv(rows, ["colour", "size", "label"])


def _cancer_csv(first_row_at_max: bool) -> bytes:
    rows = cancer_rows()
    if first_row_at_max:
        rows[0] = {**rows[0], **{f: BOUNDS[f][1] for f in FEATURES}}
    return to_csv(rows)


EMBEDDING_AT_THE_DECLARED_MAXIMUM = {
    "layers": [
        {"type": "embedding", "num_embeddings": VOCABULARY, "embedding_dim": 4},
        {"type": "flatten"},
        {"type": "linear", "out_features": 2},
    ]
}
HOSTILE_RELU = {
    "layers": [
        {"type": "flatten"},
        {"type": "linear", "out_features": 64},
        {"type": "relu"},
        {"type": "linear", "out_features": 64},
        {"type": "relu"},
        {"type": "linear", "out_features": 2},
    ]
}

# name -> (metadata, (file of dataset A, file of dataset B), quote changes)
PAIRS: dict[str, tuple[dict[str, Any], tuple[bytes, bytes], dict[str, Any]]] = {
    "embedding hits the declared maximum": (
        CATEGORICAL_META,
        (
            _categorical_rows({"colour": "blue", "size": "xl", "label": "yes"}),
            _categorical_rows({"colour": "red", "size": "s", "label": "no"}),
        ),
        {"model": EMBEDDING_AT_THE_DECLARED_MAXIMUM, "learning_rate": 0.05},
    ),
    "embedding on scaled numbers": (
        metadata(),
        (_cancer_csv(True), _cancer_csv(False)),
        {"model": {**EMBEDDING_AT_THE_DECLARED_MAXIMUM}},
    ),
    "row 0 at every maximum, relu and the largest learning rate": (
        metadata(),
        (_cancer_csv(True), _cancer_csv(False)),
        {"model": HOSTILE_RELU, "learning_rate": 10.0},
    ),
}


def _outcome(app: Any, client: Any, owner: Any, buyer: Any, meta: dict, data: bytes, changes):
    draft = client.post("/api/v1/datasets", json=copy.deepcopy(meta), headers=owner).get_json()
    listed = client.put(
        f"/api/v1/datasets/{draft['id']}/file",
        data=data,
        headers={**owner, "Content-Type": "text/csv"},
    )
    assert listed.status_code == 200, listed.get_json()
    body = quote_body(draft["id"], epsilon=1.0, epochs=3, **changes)
    quote = client.post("/api/v1/quotes", json=body, headers=buyer)
    if quote.status_code != 201:
        error = quote.get_json()["error"]
        return {"quote": quote.status_code, "code": error["code"], "message": error["message"]}
    bought = client.post("/api/v1/runs", json={"quote_id": quote.get_json()["id"]}, headers=buyer)
    assert bought.status_code == 202, bought.get_json()
    run_id = bought.get_json()["id"]
    execute_run(app.extensions["market"], run_id)
    with app.extensions["market"].database.read() as session:
        run = session.get(Run, run_id)
        assert run is not None
        releases = session.exec(select(PrivacyRelease).where(PrivacyRelease.run_id == run_id)).all()
    receipt = run.privacy_receipt or {}
    return {
        "status": run.status,
        "error_code": run.error_code,
        "error_message": run.error_message,
        "steps": run.progress_step,
        "charged": [(r.state, r.records, r.epsilon) for r in releases],
        "receipt": {k: receipt.get(k) for k in PUBLIC_RECEIPT},
        "receipt_fields": sorted(receipt),
        "metrics_fields": sorted(run.metrics or {}),
        "cost_fields": sorted(run.cost_receipt or {}),
    }


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_neighbouring_datasets_give_the_same_outcome(app, client, owner, researcher, pair):
    meta, (first, second), changes = PAIRS[pair]
    _, owner_headers = owner
    _, buyer = researcher
    a = _outcome(app, client, owner_headers, buyer, meta, first, changes)
    b = _outcome(app, client, owner_headers, buyer, meta, second, changes)
    assert a == b
    if pair == "embedding on scaled numbers":  # refused when the spec is checked
        assert a["quote"] == 422 and "integer-coded" in a["message"]
    else:
        assert a["status"].value == "succeeded", a
        assert a["receipt"]["neighbouring_relation"] == "add_remove_one"
