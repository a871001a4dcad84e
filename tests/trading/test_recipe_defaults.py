"""What a quote leaves out comes from the measured recipe for its template, kind of data
and epsilon: the clipping norm, the optimizer and the rate schedule, as the form offers."""

from __future__ import annotations

from typing import Any

import pytest

from market.trading.forms import template_suggestions
from privacy.specs import RECIPES, SEED_MLP, template_defaults
from tests.catalog.conftest import NPZ_METADATA, digits_npz, metadata

LAYERS = [
    {"type": "flatten"},
    {"type": "linear", "out_features": 16},
    {"type": "relu"},
    {"type": "linear", "out_features": 10},
]


@pytest.fixture
def listed_digits(owner, create_draft, upload) -> dict[str, Any]:
    _, headers = owner
    draft = create_draft(headers, metadata(NPZ_METADATA))
    listed = upload(headers, draft["id"], digits_npz(), "application/x-npz")
    assert listed.status_code == 200, listed.get_json()
    return listed.get_json()


def _quote(client, headers, dataset_id: str, model: dict, **extra: Any) -> dict:
    body = {
        "dataset_id": dataset_id,
        "model": model,
        "epsilon": 3.0,
        "epochs": 1,
        "batch_size": 64,
        **extra,
    }
    response = client.post("/api/v1/quotes", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def test_a_cnn_quote_without_a_clipping_norm_takes_the_recipes(
    client, listed_digits, researcher
) -> None:
    _, headers = researcher
    recipe = template_defaults({"template": "cnn"}, "image", 3.0)
    assert recipe["max_grad_norm"] == 0.1  # Tramer & Boneh's, not the API's old 1.0
    quote = _quote(client, headers, listed_digits["id"], {"template": "cnn"})
    assert quote["mechanism"]["max_grad_norm"] == recipe["max_grad_norm"]
    chosen = _quote(client, headers, listed_digits["id"], {"template": "cnn"}, max_grad_norm=2)
    assert chosen["mechanism"]["max_grad_norm"] == 2.0  # the buyer's own choice stands


def test_a_layer_list_on_images_is_planned_and_trained_by_the_layers_recipe(
    app, client, listed_digits, researcher
) -> None:
    from market.trading.models import Quote

    _, headers = researcher
    quote = _quote(client, headers, listed_digits["id"], {"layers": LAYERS})
    recipe = template_defaults({"layers": LAYERS}, "image", 3.0)
    with app.extensions["market"].database.read() as session:
        stored = session.get(Quote, quote["id"]).request
    assert stored["optimizer"] == recipe["optimizer"]
    assert stored["learning_rate"] == recipe["learning_rate"]
    assert stored["lr_schedule"] == recipe.get("lr_schedule", "constant")
    assert stored["max_grad_norm"] == quote["mechanism"]["max_grad_norm"]


def test_the_form_offers_the_layers_recipe_for_images() -> None:
    assert RECIPES["layers"]["image"], "a measured recipe for layer lists on images"
    offered = template_suggestions(60_000, data_kind="image", epsilon=3.0)["layers"]
    recipe = template_defaults(SEED_MLP, "image", 3.0)
    assert offered == {
        "epochs": recipe["epochs"],
        "batch_size": recipe["batch_size"],
        "learning_rate": recipe["learning_rate"],
    }
