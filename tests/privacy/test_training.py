"""Planning and DP-SGD training: budgets kept, clipping enforced, models that learn."""

from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping
from torch import nn

from privacy.accounting import PrivacyLedger, compose_epsilon
from privacy.errors import BudgetExceeded, PlanError, TrainingCancelled, TrainingError
from privacy.specs import build_model
from privacy.training import (
    MAX_NOISE_TO_SIGNAL,
    RunPlan,
    _PrivateStep,
    plan_run,
    train_private,
)

DELTA = 1e-5


def accuracy(module: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    module.eval()
    with torch.no_grad():
        pred = module(torch.from_numpy(x)).argmax(dim=1).numpy()
    return float((pred == y).mean())


def fit(split, spec, *, epsilon, epochs, lr, batch_size=64, **kwargs):
    plan = plan_run(
        rows=len(split.y),
        epsilon=epsilon,
        delta=DELTA,
        epochs=epochs,
        batch_size=batch_size,
        max_grad_norm=1.0,
    )
    shape = split.x.shape[1:]
    model = build_model(spec, input_shape=shape, num_classes=int(split.y.max()) + 1)
    result = train_private(
        model=model, features=split.x, labels=split.y, plan=plan, learning_rate=lr, **kwargs
    )
    model.load_state_dict(result.state_dict)
    return plan, result, model


# -- planning -----------------------------------------------------------------------

GOOD = {"rows": 10_000, "epsilon": 1.0, "delta": 1e-5, "epochs": 5, "batch_size": 128,
        "max_grad_norm": 1.0}  # fmt: skip


def test_plan_is_plain_data_and_spends_at_most_epsilon():
    plan = plan_run(**GOOD)
    assert plan.train_rows == 8000 and plan.holdout_rows == 2000
    assert plan.sample_rate == 1 / 63 and plan.steps == 5 * 63
    assert RunPlan.from_dict(plan.to_dict()) == plan
    total = compose_epsilon(plan.records(), delta=plan.delta)
    assert 0.98 * plan.epsilon <= total <= plan.epsilon
    assert plan.epsilon_training < plan.epsilon and plan.epsilon_metrics <= 0.1 * plan.epsilon
    # Composition is sub-additive: training keeps more than (1 - metrics_fraction).
    assert plan.epsilon_training > 0.9 * plan.epsilon


def test_plan_without_metrics_uses_the_whole_budget():
    plan = plan_run(**GOOD, holdout_fraction=0.0)
    assert plan.metric_records() == [] and plan.holdout_rows == 0
    assert plan.epsilon_training == pytest.approx(plan.epsilon, rel=0.01)


def test_plan_is_deterministic():
    assert plan_run(**GOOD) == plan_run(**GOOD)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"delta": 1e-4}, "delta"),  # = 1/rows
        ({"delta": 0.0}, "delta"),
        ({"epsilon": 0.0}, "epsilon"),
        ({"epsilon": -1.0}, "epsilon"),
        ({"epsilon": float("nan")}, "epsilon"),
        ({"batch_size": 8001}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"epochs": 0}, "epochs"),
        ({"max_grad_norm": 0.0}, "max_grad_norm"),
        ({"accountant": "moments"}, "accountant"),
        ({"holdout_fraction": 0.9}, "holdout_fraction"),
        ({"rows": 1}, "rows"),
        ({"rows": 3, "delta": 0.1, "batch_size": 1}, "holdout_fraction"),
        # Meaningless: epsilon 0.001 over 50 epochs of batches of 8.
        ({"epsilon": 0.001, "batch_size": 8, "epochs": 50, "holdout_fraction": 0.0}, "epsilon"),
        # Too small even for the two metric releases.
        ({"epsilon": 0.001, "metrics_fraction": 0.01}, "metrics_fraction"),
    ],
)
def test_plan_rejections(change, field):
    with pytest.raises(PlanError) as info:
        plan_run(**{**GOOD, **change})
    assert info.value.details["field"] == field


def test_meaningless_plan_threshold_is_noise_over_batch():
    with pytest.raises(PlanError) as info:
        plan_run(**{**GOOD, "epsilon": 0.01, "batch_size": 8, "epochs": 50, "holdout_fraction": 0})
    details = info.value.details
    assert details["noise_multiplier"] / details["expected_batch_size"] > MAX_NOISE_TO_SIGNAL
    assert "learn nothing" in str(info.value)


def test_ledger_refuses_a_plan_past_the_cap():
    ledger = PrivacyLedger()
    cap = 2.5
    first = plan_run(**{**GOOD, "epsilon": 2.0})
    assert ledger.fits(first.records(), cap_epsilon=cap, delta=DELTA)
    ledger.extend(first.records())
    second = plan_run(**{**GOOD, "epsilon": 2.0})
    assert not ledger.fits(second.records(), cap_epsilon=cap, delta=DELTA)
    with pytest.raises(BudgetExceeded):
        ledger.require_fit(second.records(), cap_epsilon=cap, delta=DELTA)
    # Composition, not a sum: epsilon 2 then 1 would be 3 by summing, yet stays below 2.5.
    third = plan_run(**{**GOOD, "epsilon": 1.0})
    assert ledger.fits(third.records(), cap_epsilon=cap, delta=DELTA)


# -- training -----------------------------------------------------------------------


@pytest.mark.slow
def test_seed_model_trains_with_dp_on_digits_within_budget(digits, seed_model_spec):
    reports = []
    plan, result, model = fit(
        digits,
        seed_model_spec,
        epsilon=2.0,
        epochs=10,
        lr=0.01,
        progress=lambda *a: reports.append(a),
        progress_interval_s=0.0,
    )
    assert result.steps == plan.steps
    assert result.grad_sample_mode == "bk"
    # Opacus's own accountant, for the steps it counted.
    assert result.epsilon_training <= plan.epsilon
    assert result.epsilon <= plan.epsilon
    assert result.records[0] == plan.training_record()
    assert PrivacyLedger(result.records).epsilon(delta=DELTA) <= plan.epsilon
    acc = accuracy(model, digits.x_test, digits.y_test)
    assert acc > digits.majority + 0.5, acc
    assert set(result.metrics) >= {"accuracy", "loss"}
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    steps = [r[0] for r in reports]
    assert steps == list(range(1, plan.steps + 1))
    eps = [r[2] for r in reports]
    assert eps == sorted(eps) and eps[-1] == pytest.approx(plan.epsilon_training, rel=1e-9)


@pytest.mark.slow
def test_tiny_epsilon_is_clearly_worse_than_non_private(digits, seed_model_spec):
    _, _, dp_model = fit(digits, seed_model_spec, epsilon=0.1, epochs=10, lr=0.01)
    dp_acc = accuracy(dp_model, digits.x_test, digits.y_test)

    torch.manual_seed(0)
    model = build_model(seed_model_spec, input_shape=digits.x.shape[1:], num_classes=10)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.from_numpy(digits.x), torch.from_numpy(digits.y)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads collapse on a busy 2-core machine (docs/pitfalls.md)
    try:
        for _ in range(10):
            for idx in torch.randperm(len(y)).split(64):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    clear_acc = accuracy(model, digits.x_test, digits.y_test)
    assert clear_acc > 0.9
    assert dp_acc < clear_acc - 0.2, (dp_acc, clear_acc)


@pytest.mark.slow
def test_logistic_regression_on_breast_cancer(breast_cancer):
    plan = plan_run(
        rows=len(breast_cancer.y), epsilon=1.0, delta=1e-4, epochs=20, batch_size=32,
        max_grad_norm=1.0,
    )  # fmt: skip
    model = build_model({"template": "logistic_regression"}, input_shape=(30,), num_classes=2)
    result = train_private(
        model=model,
        features=breast_cancer.x,
        labels=breast_cancer.y,
        plan=plan,
        learning_rate=0.05,
    )
    model.load_state_dict(result.state_dict)
    acc = accuracy(model, breast_cancer.x_test, breast_cancer.y_test)
    assert acc > breast_cancer.majority + 0.15, acc
    assert result.epsilon_training <= plan.epsilon


def test_runs_are_reproducible_in_shape_and_accounting(digits):
    spec = {"template": "logistic_regression"}
    a = fit(digits, spec, epsilon=1.0, epochs=1, lr=0.05)[1]
    b = fit(digits, spec, epsilon=1.0, epochs=1, lr=0.05)[1]
    assert a.records == b.records and a.steps == b.steps
    assert a.epsilon == b.epsilon and a.epsilon_training == b.epsilon_training
    assert {k: v.shape for k, v in a.state_dict.items()} == {
        k: v.shape for k, v in b.state_dict.items()
    }
    # Split key, sampling and noise come from OS entropy: no two runs share their noise.
    assert not torch.equal(a.state_dict["1.weight"], b.state_dict["1.weight"])
    assert set(a.receipt()) == {
        "records", "metrics", "steps", "epsilon", "epsilon_training", "grad_sample_mode",
        "timings",
    }  # fmt: skip


def test_input_model_is_not_modified(digits):
    model = build_model({"template": "logistic_regression"}, input_shape=(1, 8, 8), num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plan = plan_run(rows=len(digits.y), epsilon=1.0, delta=DELTA, epochs=1, batch_size=64,
                    max_grad_norm=1.0)  # fmt: skip
    train_private(model=model, features=digits.x, labels=digits.y, plan=plan, learning_rate=0.1)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not hasattr(model, "_module")


def test_cnn_template_trains_on_images(digits):
    plan = plan_run(rows=len(digits.y), epsilon=3.0, delta=DELTA, epochs=1, batch_size=128,
                    max_grad_norm=0.1)  # fmt: skip
    model = build_model({"template": "cnn", "channels": [4, 8], "dense": 16},
                        input_shape=(1, 8, 8), num_classes=10)  # fmt: skip
    result = train_private(
        model=model, features=digits.x, labels=digits.y, plan=plan, learning_rate=0.002,
        max_physical_batch_size=32,
    )  # fmt: skip
    assert result.steps == plan.steps and result.epsilon_training <= plan.epsilon


def test_prv_plan_is_kept_by_opacus_prv_accountant(digits):
    plan = plan_run(rows=len(digits.y), epsilon=2.0, delta=DELTA, epochs=1, batch_size=128,
                    max_grad_norm=1.0, accountant="prv", holdout_fraction=0.0)  # fmt: skip
    model = build_model({"template": "logistic_regression"}, input_shape=(1, 8, 8), num_classes=10)
    result = train_private(
        model=model, features=digits.x, labels=digits.y, plan=plan, learning_rate=0.05
    )
    assert result.epsilon_training <= plan.epsilon
    assert result.metrics == {} and len(result.records) == 1


# -- clipping is enforced -----------------------------------------------------------


def _outlier_data(model, shape, rows=40):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, *shape)).astype(np.float32)
    x[0] = 1e4  # one wildly out-of-scale row...
    y = (np.arange(rows) % 2).astype(np.int64)
    with torch.no_grad():  # ...labelled against the model, so its gradient is huge
        y[0] = 1 - int(model(torch.from_numpy(x[:1])).argmax())
    return x, y


OUTLIER_MODELS = {
    "linear": ({"template": "logistic_regression"}, (6,)),
    "conv": (
        {"layers": [{"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
                    {"type": "flatten"}, {"type": "linear", "out_features": 2}]},
        (1, 4, 4),
    ),
}  # fmt: skip


@pytest.mark.parametrize("physical", [256, 7])  # 7: one logical batch, six physical ones
@pytest.mark.parametrize("mode", ["bk", "ghost", "hooks"])
@pytest.mark.parametrize("kind", sorted(OUTLIER_MODELS))
def test_outlier_update_is_bounded_by_the_clipping_norm(kind, mode, physical):
    spec, shape = OUTLIER_MODELS[kind]
    torch.manual_seed(0)
    model = build_model(spec, input_shape=shape, num_classes=2)
    x, y = _outlier_data(model, shape)
    clip = 1.0
    plan = plan_run(rows=len(y), epsilon=1.0, delta=1e-3, epochs=1, batch_size=len(y),
                    max_grad_norm=clip, holdout_fraction=0.0)  # fmt: skip
    # Negligible noise and one full batch (q = 1): the update is the mean clipped gradient.
    plan = dataclasses.replace(plan, noise_multiplier=1e-6)
    assert plan.sample_rate == 1.0 and plan.steps == 1
    before = torch.cat([p.detach().flatten() for p in model.parameters()])
    result = train_private(
        model=model, features=x, labels=y, plan=plan, learning_rate=1.0, optimizer="sgd",
        grad_sample_mode=mode, max_physical_batch_size=physical,
    )  # fmt: skip
    assert result.steps == 1
    after = torch.cat([v.flatten() for v in result.state_dict.values()])
    update = float((after - before).norm())
    assert result.grad_sample_mode == mode
    assert 0 < update <= clip * (1 + 1e-5), update

    # Without clipping the same step moves the weights by orders of magnitude more.
    loss = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
    grads = torch.autograd.grad(loss, list(model.parameters()))
    assert float(torch.cat([g.flatten() for g in grads]).norm()) > 100 * clip


def test_ghost_mode_only_ever_uses_the_dp_criterion(digits):
    plan = plan_run(rows=len(digits.y), epsilon=1.0, delta=DELTA, epochs=1, batch_size=64,
                    max_grad_norm=1.0)  # fmt: skip
    model = build_model({"template": "logistic_regression"}, input_shape=(1, 8, 8), num_classes=10)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.zeros(plan.train_rows, 1, 8, 8),
                                       torch.zeros(plan.train_rows, dtype=torch.long)),
        batch_size=plan.batch_size,
    )  # fmt: skip
    step = _PrivateStep(
        module=model, plan=plan, learning_rate=0.1, optimizer="sgd", loader=loader, mode="ghost"
    )
    assert isinstance(step._loss, DPLossFastGradientClipping)
    assert not any(isinstance(v, nn.CrossEntropyLoss) for v in vars(step).values())


# -- failures -----------------------------------------------------------------------


@pytest.mark.parametrize("failing_step", [1, 5])
def test_a_failed_run_charges_its_plan_and_says_nothing_of_where_it_failed(digits, failing_step):
    plan = plan_run(rows=len(digits.y), epsilon=1.0, delta=DELTA, epochs=2, batch_size=64,
                    max_grad_norm=1.0)  # fmt: skip
    model = build_model({"template": "logistic_regression"}, input_shape=(1, 8, 8), num_classes=10)

    def fail_at(step, steps, eps):
        if step >= failing_step:
            raise RuntimeError(f"row value {digits.x[0].sum()} at step {step}")

    with pytest.raises(TrainingError) as info:
        train_private(model=model, features=digits.x, labels=digits.y, plan=plan,
                      learning_rate=0.1, progress=fail_at, progress_interval_s=0.0)  # fmt: skip
    # Identical whichever step failed: the plan's records, a fixed message, no details.
    assert info.value.records_spent == plan.records()
    assert str(info.value) == "training failed" and info.value.details == {}


def test_a_set_cancel_event_stops_training_before_the_next_batch(digits):
    plan = plan_run(rows=len(digits.y), epsilon=1.0, delta=DELTA, epochs=2, batch_size=64,
                    max_grad_norm=1.0)  # fmt: skip
    model = build_model({"template": "logistic_regression"}, input_shape=(1, 8, 8), num_classes=10)
    cancel = threading.Event()
    steps_seen = []

    def set_at_three(step, steps, eps):
        steps_seen.append(step)
        if step == 3:
            cancel.set()

    with pytest.raises(TrainingCancelled):
        train_private(model=model, features=digits.x, labels=digits.y, plan=plan,
                      learning_rate=0.1, progress=set_at_three, progress_interval_s=0.0,
                      cancel=cancel)  # fmt: skip
    assert steps_seen == [1, 2, 3]


def test_data_must_match_the_plan(digits):
    plan = plan_run(rows=len(digits.y), epsilon=1.0, delta=DELTA, epochs=1, batch_size=64,
                    max_grad_norm=1.0)  # fmt: skip
    model = build_model({"template": "logistic_regression"}, input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(PlanError):
        train_private(model=model, features=digits.x[:-1], labels=digits.y[:-1], plan=plan,
                      learning_rate=0.1)  # fmt: skip
    labels = digits.y.copy()
    labels[3] = 12345
    with pytest.raises(PlanError) as info:
        train_private(model=model, features=digits.x, labels=labels, plan=plan, learning_rate=0.1)
    assert "12345" not in str(info.value)
    with pytest.raises(PlanError):
        train_private(model=model, features=digits.x, labels=digits.y, plan=plan,
                      learning_rate=0.1, optimizer="lbfgs")  # fmt: skip


ALL_LAYERS = {
    "conv_groupnorm_layernorm": (
        {"layers": [
            {"type": "conv2d", "out_channels": 4, "kernel_size": 3, "padding": 1},
            {"type": "groupnorm", "num_groups": 2}, {"type": "gelu"},
            {"type": "avgpool2d", "kernel_size": 2}, {"type": "maxpool2d", "kernel_size": 2},
            {"type": "flatten"}, {"type": "layernorm"}, {"type": "dropout", "p": 0.1},
            {"type": "linear", "out_features": 3}]},
        (1, 8, 8),
    ),
    "embedding": (
        {"layers": [{"type": "embedding", "num_embeddings": 20, "embedding_dim": 4},
                    {"type": "flatten"}, {"type": "tanh"}, {"type": "linear", "out_features": 3}]},
        (5,),
    ),
}  # fmt: skip


@pytest.mark.parametrize("mode", ["auto", "ghost", "hooks"])
@pytest.mark.parametrize("name", sorted(ALL_LAYERS))
def test_every_allowed_layer_trains_under_dp(name, mode):
    spec, shape = ALL_LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.integers(0, 20, size=(200, *shape)).astype(np.float32)
    y = rng.integers(0, 3, size=200)
    plan = plan_run(rows=200, epsilon=2.0, delta=1e-3, epochs=1, batch_size=40,
                    max_grad_norm=1.0)  # fmt: skip
    vocabulary = 20 if name == "embedding" else None  # integer codes in [0, 20)
    model = build_model(spec, input_shape=shape, num_classes=3, vocabulary=vocabulary)
    result = train_private(
        model=model, features=x, labels=y, plan=plan, learning_rate=0.01, grad_sample_mode=mode
    )
    assert result.grad_sample_mode == ("bk" if mode == "auto" else mode)
    assert result.steps == plan.steps


@st.composite
def feasible_requests(draw: st.DrawFn) -> tuple[int, float, int, int]:
    """Rows, epsilon, epochs and batch size of a request ``plan_run`` must accept: the batch
    fits the training rows (rows >= 2 x batch), and over this whole domain the noise stays
    far below the batch's signal (z / B is at most about 0.5, at 500 rows, epsilon 0.3,
    30 epochs, batch 32), so the noise-to-signal refusal cannot apply either."""
    batch_size = 2 ** draw(st.integers(5, 9))
    rows = draw(st.integers(max(500, 2 * batch_size), 100_000))
    return rows, draw(st.floats(0.3, 8.0)), draw(st.integers(1, 30)), batch_size


@settings(max_examples=6, deadline=None)
@given(request=feasible_requests())
def test_any_accepted_plan_spends_at_most_its_epsilon(request):
    """Every example is a feasible request, so a refusal fails here too: no example can
    pass by being refused (refusals: test_plan_rejections and the noise-over-batch test)."""
    rows, epsilon, epochs, batch_size = request
    plan = plan_run(rows=rows, epsilon=epsilon, delta=0.1 / rows, epochs=epochs,
                    batch_size=batch_size, max_grad_norm=1.0)  # fmt: skip
    assert plan.steps == epochs * math.ceil(plan.train_rows / batch_size)
    assert compose_epsilon(plan.records(), delta=plan.delta) <= epsilon
    assert plan.noise_multiplier / (plan.sample_rate * plan.train_rows) <= MAX_NOISE_TO_SIGNAL


def test_cosine_schedule_runs_from_the_rate_down_towards_zero():
    from privacy.training import _Schedule

    cosine = _Schedule("cosine", 0.8, 10)
    assert [round(cosine.rate(s), 6) for s in (0, 5, 10)] == [0.8, 0.4, 0.0]
    assert _Schedule("constant", 0.8, 10).rate(9) == 0.8


@pytest.mark.parametrize("mode", ["bk", "hooks"])
def test_each_logical_step_uses_its_scheduled_rate(digits, mode, monkeypatch):
    """The rates the optimizer stepped with, read from the real SGD as it steps."""
    seen: list[float] = []
    original = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    plan = plan_run(rows=len(digits.y), epsilon=2.0, delta=DELTA, epochs=2, batch_size=128,
                    max_grad_norm=1.0)  # fmt: skip
    model = build_model({"template": "logistic_regression"}, input_shape=(64,), num_classes=10)
    result = train_private(model=model, features=digits.x, labels=digits.y, plan=plan,
                           learning_rate=0.5, optimizer="sgd", lr_schedule="cosine",
                           grad_sample_mode=mode)  # fmt: skip
    assert result.steps == plan.steps and len(seen) == plan.steps
    expected = [0.5 * 0.5 * (1 + math.cos(math.pi * s / plan.steps)) for s in range(plan.steps)]
    assert seen == pytest.approx(expected)


def test_an_unknown_schedule_is_refused_before_training(digits):
    plan = plan_run(rows=len(digits.y), epsilon=2.0, delta=DELTA, epochs=1, batch_size=128,
                    max_grad_norm=1.0)  # fmt: skip
    model = build_model({"template": "logistic_regression"}, input_shape=(64,), num_classes=10)
    with pytest.raises(PlanError, match="lr_schedule"):
        train_private(model=model, features=digits.x, labels=digits.y, plan=plan,
                      learning_rate=0.5, lr_schedule="step")  # fmt: skip


def test_the_held_out_rows_are_capped_and_the_rest_trained_on():
    plan = plan_run(**{**GOOD, "rows": 60_000, "delta": 1e-6}, holdout_max_rows=2000)
    assert plan.holdout_rows == 2000 and plan.train_rows == 58_000
    assert plan.steps_per_epoch == math.ceil(58_000 / GOOD["batch_size"])
    small = plan_run(**GOOD, holdout_max_rows=5000)  # a fifth of 10,000 is under the cap
    assert small.holdout_rows == 2000 and small == plan_run(**GOOD)
    with pytest.raises(PlanError) as info:
        plan_run(**GOOD, holdout_max_rows=0)
    assert info.value.details["field"] == "holdout_max_rows"


def test_a_capped_holdout_holds_out_that_many_rows_in_expectation(digits):
    """The coins run at ``holdout_rows / rows``: the held-out count is that expectation up
    to binomial spread (5 standard deviations)."""
    from privacy.training import holdout_mask

    plan = plan_run(rows=len(digits.y), epsilon=2.0, delta=DELTA, epochs=1, batch_size=64,
                    max_grad_norm=1.0, holdout_max_rows=100)  # fmt: skip
    rate = plan.holdout_rows / plan.rows
    held = holdout_mask(digits.x, digits.y, fraction=rate, key=b"k" * 32)
    spread = 5 * math.sqrt(plan.rows * rate * (1 - rate))
    assert abs(int(held.sum()) - 100) <= spread
