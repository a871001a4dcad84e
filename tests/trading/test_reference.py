"""The accuracy figures the quote form shows are the measured ones, and are shown labelled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from market.trading.reference import REFERENCE, reference_for

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results"
#: The label ``bench/accuracy.py`` gives each form template's purchases.
LABELS = {"layers": "seed mlp (layers)", "cnn": "cnn (Tramer-Boneh)",
          "logistic_regression": "logistic regression"}  # fmt: skip


@pytest.mark.parametrize("key", sorted(REFERENCE))
def test_every_figure_is_the_mean_of_the_purchases_it_names(key):
    kind, template = key
    figures = REFERENCE[key]
    dataset = "mnist" if kind == "image" else "adult"
    for point in figures.points:
        found = []
        for name in point.results:
            for r in json.loads((RESULTS / name).read_text())["results"]:
                same = r["dataset"] == dataset and r["label"] == LABELS[template]
                if same and r["epsilon"] == point.epsilon:
                    found.append(r["accuracy"])
        assert len(found) == len(point.results), (key, point)
        assert sum(found) / len(found) == pytest.approx(point.accuracy, abs=1e-4), (key, point)


def test_the_form_shows_the_figures_of_the_datasets_kind_labelled(
    app, owner, create_draft, upload, researcher
):
    from tests.catalog.conftest import NPZ_METADATA, digits_npz, metadata
    from tests.helpers import login

    _, headers = owner
    draft = create_draft(headers, metadata(NPZ_METADATA))
    assert upload(headers, draft["id"], digits_npz(), "application/x-npz").status_code == 200
    web = app.test_client()
    assert login(web, researcher[0].email, researcher[0].password) == 302
    page = web.get(f"/datasets/{draft['id']}").get_data(as_text=True)
    assert set(reference_for("image")) == {"layers", "cnn"}
    for template in reference_for("image"):
        assert f'data-testid="reference-{template}"' in page
    assert 'data-testid="reference-logistic_regression"' not in page  # tabular figures only
    assert "Measured on public reference data, not on this dataset" in page
    assert "93.2% at &epsilon; 1.2" in page or "93.2% at ε 1.2" in page
