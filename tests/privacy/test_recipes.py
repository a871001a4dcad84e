"""Measured recipes per template and data kind, over the template defaults."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from privacy.errors import SpecError
from privacy.specs import (
    RECIPES,
    SEED_MLP,
    TEMPLATE_DEFAULTS,
    build_model,
    recipe,
    template_defaults,
)
from privacy.training import OPTIMIZERS, plan_run, train_private

LR = {"template": "logistic_regression"}


def test_recipes_are_complete_banded_and_say_what_was_measured():
    keys = set(TEMPLATE_DEFAULTS["logistic_regression"])
    for template, kinds in RECIPES.items():
        assert template in TEMPLATE_DEFAULTS
        for bands in kinds.values():
            bounds = [bound for bound, _, _ in bands]
            assert bounds == sorted(bounds) and bounds[-1] == math.inf
            for _, settings, evidence in bands:
                assert set(settings) == keys
                assert settings["optimizer"] in OPTIMIZERS
                assert settings["learning_rate"] > 0 and settings["batch_size"] >= 1
                assert "bench/" in evidence  # names the command that measured it


#: The recipes the product promises (docs/benchmarks.md, figure 2): every template the quote
#: form offers for a kind of data has one where a sweep or a purchase measured it.
MEASURED = [("logistic_regression", "tabular"), ("cnn", "image"), ("layers", "image")]


@pytest.mark.parametrize(("template", "kind"), MEASURED)
def test_a_recipe_exists_for_each_measured_template_and_kind(template, kind):
    spec = SEED_MLP if template == "layers" else {"template": template}
    for epsilon in (0.5, 1.2, 3.0, 8.0):
        found = recipe(spec, kind, epsilon)
        assert found is not None, (template, kind, epsilon)
        settings, evidence = found
        assert template_defaults(spec, kind, epsilon) == {**TEMPLATE_DEFAULTS[template], **settings}
        assert "bench/accuracy.py" in evidence


def test_defaults_pick_the_band_of_the_epsilon():
    # The founding MLP on images: fewer epochs at small epsilon (measured at 1.2 and 3).
    assert template_defaults(SEED_MLP, "image", 1.2)["epochs"] == 20
    assert template_defaults(SEED_MLP, "image", 3.0)["epochs"] == 40
    assert template_defaults(SEED_MLP, "image") == template_defaults(SEED_MLP, "image", 100.0)
    assert template_defaults(LR, "tabular", 0.5)["max_grad_norm"] == 0.5
    # No measured recipe: the template's defaults, same keys.
    assert template_defaults(LR, "image", 3.0) == TEMPLATE_DEFAULTS["logistic_regression"]
    assert template_defaults({"template": "mlp"}, "image") == TEMPLATE_DEFAULTS["mlp"]
    assert template_defaults(LR) == TEMPLATE_DEFAULTS["logistic_regression"]
    settings, evidence = recipe(LR, "tabular", 0.5)
    assert settings["optimizer"] == "adam" and "Adult" in evidence
    # Images: Tramer & Boneh's DP-SGD for the CNN (momentum, clipping 0.1).
    cnn = template_defaults({"template": "cnn"}, "image", 3.0)
    assert (cnn["optimizer"], cnn["max_grad_norm"]) == ("sgd", 0.1)
    # A layer list on images gets the recipe measured on the founding MLP, on tables not.
    assert template_defaults(SEED_MLP, "image", 3.0) != TEMPLATE_DEFAULTS["layers"]
    assert template_defaults(SEED_MLP, "tabular", 3.0) == TEMPLATE_DEFAULTS["layers"]
    with pytest.raises(SpecError):
        recipe(LR, "audio")


def test_the_quote_form_starts_from_the_recipe():
    """The form's suggestions (epochs, batch, learning rate) are the recipe's for that kind
    of data at that epsilon, the batch capped only on small datasets."""
    from market.trading.forms import template_suggestions

    for kind, template, epsilon in [("image", "cnn", 3.0), ("tabular", "logistic_regression", 0.5)]:
        offered = template_suggestions(60_000, data_kind=kind, epsilon=epsilon)[template]
        settings, _ = recipe({"template": template}, kind, epsilon)
        assert offered == {key: settings[key] for key in ("epochs", "batch_size", "learning_rate")}


def test_the_tabular_recipe_trains_close_to_non_private():
    """Generated tabular data (a noisy linear rule over 20 features in [0, 1]): the recipe
    at epsilon 1 lands within 5 points of scikit-learn's non-private logistic regression."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.random((7000, 20)).astype(np.float32)
    w = rng.normal(size=20)
    y = ((x - 0.5) @ w + 0.3 * rng.normal(size=7000) > 0).astype(np.int64)
    x_train, y_train, x_test, y_test = x[:5000], y[:5000], x[5000:], y[5000:]
    reference = LogisticRegression(max_iter=1000).fit(x_train, y_train).score(x_test, y_test)
    defaults = template_defaults(LR, "tabular", 1.0)
    plan = plan_run(rows=5000, epsilon=1.0, delta=1e-5, epochs=defaults["epochs"],
                    batch_size=defaults["batch_size"],
                    max_grad_norm=defaults["max_grad_norm"])  # fmt: skip
    model = build_model(LR, input_shape=(20,), num_classes=2)
    result = train_private(model=model, features=x_train, labels=y_train, plan=plan,
                           learning_rate=defaults["learning_rate"],
                           optimizer=defaults["optimizer"])  # fmt: skip
    assert result.grad_sample_mode == "bk"
    model.load_state_dict(result.state_dict)
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_test)).argmax(1).numpy()
    accuracy = float(np.mean(pred == y_test))
    assert reference > 0.9
    assert accuracy > reference - 0.05, (accuracy, reference)
