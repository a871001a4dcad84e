"""Measured recipes per template and data kind, over the template defaults."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from privacy.errors import SpecError
from privacy.specs import RECIPES, TEMPLATE_DEFAULTS, build_model, recipe, template_defaults
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


def test_defaults_pick_the_band_of_the_epsilon():
    assert template_defaults(LR, "tabular", 0.5)["learning_rate"] == 0.03
    assert template_defaults(LR, "tabular", 1.0)["learning_rate"] == 0.03
    assert template_defaults(LR, "tabular", 3.0)["learning_rate"] == 0.1
    assert template_defaults(LR, "tabular") == template_defaults(LR, "tabular", 100.0)
    # No measured recipe: the template's defaults, same keys.
    assert template_defaults(LR, "image", 3.0) == TEMPLATE_DEFAULTS["logistic_regression"]
    assert template_defaults({"template": "cnn"}, "image") == TEMPLATE_DEFAULTS["cnn"]
    assert template_defaults(LR) == TEMPLATE_DEFAULTS["logistic_regression"]
    settings, evidence = recipe(LR, "tabular", 0.5)
    assert settings["optimizer"] == "adam" and "Adult" in evidence
    with pytest.raises(SpecError):
        recipe(LR, "audio")


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
