"""Small real data sets for the privacy engine's tests (scikit-learn's bundled copies).

The "owner's metadata" declares public bounds; for these bundled sets we use the
documented value ranges (digits pixels are 0..16), or bounds rounded outward from the
data, standing in for what an owner would choose to publish.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

from privacy.preprocessing import describe, encode
from privacy.specs import SEED_MLP

SEED_MODEL = SEED_MLP


class Split:
    """A "private" training table (what the owner lists) and a public test set."""

    def __init__(self, x_private, y_private, x_test, y_test, description):
        self.x = x_private
        self.y = y_private
        self.x_test = x_test
        self.y_test = y_test
        self.description = description

    @property
    def majority(self) -> float:
        return float(np.bincount(self.y_test).max() / len(self.y_test))


@pytest.fixture(scope="session")
def digits() -> Split:
    x, y = load_digits(return_X_y=True)
    meta = {
        "format": "npz",
        "shape": [8, 8],
        "pixel_range": {"min": 0, "max": 16},
        "class_names": [str(i) for i in range(10)],
    }
    description = describe(meta)
    xa, xb, ya, yb = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    train = encode(description, {"x": xa.reshape(-1, 8, 8), "y": ya})
    test = encode(description, {"x": xb.reshape(-1, 8, 8), "y": yb})
    return Split(train.features, train.labels, test.features, test.labels, description)


@pytest.fixture(scope="session")
def breast_cancer() -> Split:
    data = load_breast_cancer()
    names = [f"f{i}" for i in range(data.data.shape[1])]
    columns = [
        {
            "name": n,
            "type": "numeric",
            "min": math.floor(float(col.min())),
            "max": math.ceil(float(col.max())) + 1,
        }
        for n, col in zip(names, data.data.T, strict=True)
    ]
    columns.append({"name": "diagnosis", "type": "categorical", "categories": ["0", "1"]})
    description = describe({"label": "diagnosis", "columns": columns})
    xa, xb, ya, yb = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0, stratify=data.target
    )

    def table(x, y):
        cols = {n: x[:, i] for i, n in enumerate(names)}
        cols["diagnosis"] = [str(v) for v in y]
        return pa.table(cols)

    train = encode(description, table(xa, ya))
    test = encode(description, table(xb, yb))
    return Split(train.features, train.labels, test.features, test.labels, description)


@pytest.fixture
def seed_model_spec() -> dict:
    """The seed MLP of the demo: flatten, dense 128 ReLU, dropout 0.2, dense 10."""
    return {"layers": [dict(layer) for layer in SEED_MODEL["layers"]]}
