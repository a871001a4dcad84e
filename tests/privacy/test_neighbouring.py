"""The add/remove-one relation holds for the whole run, and no row steers the outcome."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from privacy.specs import build_model
from privacy.training import NEIGHBOURING_RELATION, holdout_mask, plan_run, train_private

KEY = b"k" * 32


def test_removing_or_adding_a_row_changes_no_other_rows_assignment(digits):
    x, y = digits.x, digits.y
    mask = holdout_mask(x, y, fraction=0.2, key=KEY)
    for i in (0, 17, len(y) - 1):
        without = holdout_mask(np.delete(x, i, axis=0), np.delete(y, i), fraction=0.2, key=KEY)
        assert np.array_equal(without, np.delete(mask, i))
    extra = np.concatenate([x, np.full((1, *x.shape[1:]), 0.5, dtype=x.dtype)])
    added = holdout_mask(extra, np.append(y, 3), fraction=0.2, key=KEY)
    assert np.array_equal(added[:-1], mask)
    # A permutation split would have moved rows: about a fifth is held out, at random.
    assert 0.15 < mask.mean() < 0.25
    assert NEIGHBOURING_RELATION == "add_remove_one"


def test_the_split_key_is_what_makes_the_coins(digits):
    a = holdout_mask(digits.x, digits.y, fraction=0.2, key=KEY)
    b = holdout_mask(digits.x, digits.y, fraction=0.2, key=b"other" * 7)
    assert not np.array_equal(a, b)
    assert not holdout_mask(digits.x, digits.y, fraction=0.0, key=KEY).any()


@pytest.mark.parametrize("mode", ["ghost", "hooks"])
def test_a_row_that_overflows_the_model_changes_nothing_but_noisy_numbers(digits, mode):
    """One dataset has a row at the declared maximum that overflows a hostile model to
    infinity; its neighbour has that row at zero. Same steps, same records, finite weights."""
    n = 400
    x = digits.x[:n].reshape(n, -1).copy()
    y = digits.y[:n].copy()
    x_hot, x_cold = x.copy(), x.copy()
    x_hot[0], x_cold[0] = 1.0, 0.0  # the declared maximum vs the minimum (scaled)
    spec = {"layers": [{"type": "linear", "out_features": 16}, {"type": "relu"},
                       {"type": "linear", "out_features": 10}]}  # fmt: skip
    model = build_model(spec, input_shape=(64,), num_classes=10)
    with torch.no_grad():
        model[0].weight.fill_(1e37)  # 64 features at 1.0 overflow float32; zeros do not
    plan = plan_run(rows=n, epsilon=2.0, delta=1e-4, epochs=2, batch_size=50, max_grad_norm=1.0)
    outcomes = []
    for features in (x_hot, x_cold):
        result = train_private(
            model=model,
            features=features,
            labels=y,
            plan=plan,
            learning_rate=0.05,
            optimizer="sgd",
            grad_sample_mode=mode,
        )
        assert all(torch.isfinite(v).all() for v in result.state_dict.values())
        outcomes.append(
            (result.steps, result.records, result.epsilon, result.grad_sample_mode,
             sorted(result.metrics))
        )  # fmt: skip
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == plan.steps
