"""Real small datasets (scikit-learn's bundled breast cancer and digits) and their metadata."""

from __future__ import annotations

import copy
import csv
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from market.accounts.models import Role

FEATURES = ["mean radius", "mean texture", "mean smoothness"]
BOUNDS = {"mean radius": (0, 40), "mean texture": (0, 50), "mean smoothness": (0, 0.3)}


def cancer_rows(limit: int | None = None) -> list[dict[str, Any]]:
    data = load_breast_cancer()
    names = list(data.feature_names)
    rows = []
    for x, y in zip(data.data[:limit], data.target[:limit], strict=True):
        row: dict[str, Any] = {f: float(x[names.index(f)]) for f in FEATURES}
        row["diagnosis"] = "malignant" if y == 0 else "benign"
        rows.append(row)
    return rows


def to_csv(rows: list[dict[str, Any]], columns: list[str] | None = None) -> bytes:
    columns = columns or [*FEATURES, "diagnosis"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def to_parquet(rows: list[dict[str, Any]]) -> bytes:
    table = pa.Table.from_pylist(rows)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def digits_npz(limit: int = 300) -> bytes:
    digits = load_digits()
    sink = io.BytesIO()
    np.savez(sink, x=digits.images[:limit].astype(np.float32), y=digits.target[:limit])
    return sink.getvalue()


CSV_METADATA: dict[str, Any] = {
    "title": "Breast cancer diagnoses",
    "description": "Nucleus measurements of fine needle aspirates, Wisconsin.",
    "licence": "CC-BY-4.0",
    "tags": ["health", "tabular"],
    "format": "csv",
    "label": "diagnosis",
    "columns": [
        *[
            {"name": f, "type": "numeric", "min": BOUNDS[f][0], "max": BOUNDS[f][1]}
            for f in FEATURES
        ],
        {"name": "diagnosis", "type": "categorical", "categories": ["benign", "malignant"]},
    ],
    "privacy": {"epsilon_total": 10.0, "delta": 1e-5, "max_epsilon_per_run": 2.0},
    "price": {"per_run": "5.00", "per_epsilon": "2.00", "currency": "EUR"},
}

NPZ_METADATA: dict[str, Any] = {
    "title": "Handwritten digits 8x8",
    "description": "Optical recognition of handwritten digits.",
    "licence": "CC-BY-4.0",
    "tags": ["images"],
    "format": "npz",
    "image": {
        "shape": [8, 8],
        "pixel_range": {"min": 0, "max": 16},
        "class_names": [str(i) for i in range(10)],
    },
    "privacy": {"epsilon_total": 8.0, "delta": 1e-5, "max_epsilon_per_run": 3.0},
    "price": {"per_run": "1.50", "per_epsilon": "0.50", "currency": "EUR"},
}


def metadata(base: dict[str, Any] = CSV_METADATA, **changes: Any) -> dict[str, Any]:
    meta = copy.deepcopy(base)
    meta.update(changes)
    return meta


@pytest.fixture
def owner(make_user, token_for):
    account = make_user(Role.OWNER)
    return account, token_for(account)


@pytest.fixture
def create_draft(client) -> Callable[..., dict[str, Any]]:
    def create(headers: dict[str, str], meta: dict[str, Any] | None = None) -> dict[str, Any]:
        response = client.post("/api/v1/datasets", json=meta or metadata(), headers=headers)
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    return create


@pytest.fixture
def upload(client) -> Callable[..., Any]:
    def put(headers: dict[str, str], dataset_id: str, body: bytes, content_type: str = "text/csv"):
        return client.put(
            f"/api/v1/datasets/{dataset_id}/file",
            data=body,
            headers={**headers, "Content-Type": content_type},
        )

    return put
