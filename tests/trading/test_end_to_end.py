"""The core loop over HTTP with a real Huey consumer: list, quote, buy, train, receipts,
download, load with safetensors, predict."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors import safe_open

from privacy.model_io import load_model
from privacy.preprocessing import encode_features
from tests.trading.conftest import cancer_rows, quote_body


def test_buy_a_private_run_and_use_the_model(
    client, listed_cancer, researcher, consumer, wait_for_run
) -> None:
    _, headers = researcher
    body = quote_body(listed_cancer["id"], epsilon=2.0, epochs=20)
    quote = client.post("/api/v1/quotes", json=body, headers=headers)
    assert quote.status_code == 201, quote.get_json()
    q = quote.get_json()
    assert q["fits_budget"] is True
    assert q["mechanism"]["noise_multiplier"] > 0 and q["mechanism"]["steps"] > 0
    assert q["estimate"]["price"]["currency"] == "EUR"
    assert float(q["estimate"]["seconds"]) > 0
    bought = client.post("/api/v1/runs", json={"quote_id": q["id"]}, headers=headers)
    assert bought.status_code == 202, bought.get_json()
    assert bought.get_json()["status"] == "queued"
    run = wait_for_run(headers, bought.get_json()["id"])
    assert run["status"] == "succeeded", run
    receipt = run["privacy_receipt"]
    assert receipt["epsilon_spent"] <= 2.0 + 1e-9
    assert receipt["noise_multiplier"] == q["mechanism"]["noise_multiplier"]
    assert receipt["dataset_epsilon_after"] == pytest.approx(receipt["epsilon_spent"], rel=0.05)
    assert set(run["metrics"]) >= {"accuracy"}
    measured = run["cost_receipt"]["measured"]
    assert run["cost_receipt"]["measurement"]["method"] in ("rapl", "nvml", "estimated")
    assert float(run["cost_receipt"]["measurement"]["energy_kwh"]) > 0
    assert measured["total"]
    detail = client.get(f"/api/v1/datasets/{listed_cancer['id']}", headers=headers).get_json()
    assert detail["budget"]["epsilon_spent"] == pytest.approx(receipt["dataset_epsilon_after"])

    download = client.get(f"/api/v1/runs/{run['id']}/model", headers=headers)
    assert download.status_code == 200
    blob = download.data
    loaded = load_model(blob)
    rows = cancer_rows()
    import pyarrow as pa

    table = pa.Table.from_pylist(rows)
    features = encode_features(loaded.preprocessing, table)
    import torch

    with torch.no_grad():
        predictions = loaded.module(torch.from_numpy(features)).argmax(dim=1).numpy()
    truth = np.array([0 if r["diagnosis"] == "benign" else 1 for r in rows])
    accuracy = float((predictions == truth).mean())
    majority = max(truth.mean(), 1 - truth.mean())
    assert accuracy > majority + 0.05, (accuracy, majority)


def test_safetensors_file_carries_spec_and_preprocessing(
    client, listed_cancer, researcher, consumer, wait_for_run, tmp_path
) -> None:
    _, headers = researcher
    q = client.post(
        "/api/v1/quotes", json=quote_body(listed_cancer["id"]), headers=headers
    ).get_json()
    run_id = client.post("/api/v1/runs", json={"quote_id": q["id"]}, headers=headers).get_json()[
        "id"
    ]
    assert wait_for_run(headers, run_id)["status"] == "succeeded"
    path = tmp_path / "model.safetensors"
    path.write_bytes(client.get(f"/api/v1/runs/{run_id}/model", headers=headers).data)
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata()
    assert "privacy.spec" in meta and "privacy.preprocessing" in meta


def test_receipt_evidence_and_the_exported_log_verify_offline(
    app, client, listed_cancer, researcher, consumer, wait_for_run, tmp_path
) -> None:
    """The run's receipt proves its log entries with the public key alone, and the whole
    exported log (listing, purchase, reservation, spend, cost receipt) verifies offline,
    re-deriving the dataset's composed epsilon and the run's cost terms."""
    from market.audit.export import export_log
    from market.audit.signing import public_key_path
    from market.audit.verify import verify_export, verify_inclusion_evidence

    _, headers = researcher
    q = client.post(
        "/api/v1/quotes", json=quote_body(listed_cancer["id"]), headers=headers
    ).get_json()
    run_id = client.post("/api/v1/runs", json={"quote_id": q["id"]}, headers=headers).get_json()[
        "id"
    ]
    run = wait_for_run(headers, run_id)
    assert run["status"] == "succeeded"
    settings = app.extensions["market"].settings
    pem = public_key_path(settings).read_bytes()
    evidence = run["privacy_receipt"]["audit"]
    kinds = []
    for proof in evidence["proofs"]:
        assert verify_inclusion_evidence(proof, pem)
        kinds.append(__import__("json").loads(proof["entry"])["kind"])
    assert {
        "run.purchased",
        "privacy.reserved",
        "run.started",
        "privacy.spent",
        "cost.receipt",
        "run.succeeded",
    } <= set(kinds)
    export = tmp_path / "audit.jsonl"
    export_log(app.extensions["market"].database, settings, export)
    report = verify_export(export, pem)
    assert report.ok, report
