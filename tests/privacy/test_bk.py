"""Book-keeping clipping: the same clipped, noised gradient as Opacus's per-sample hooks.

Reference: Opacus's ``GradSampleModule`` (per-sample gradients materialised by its hooks)
and ``DPOptimizer`` (clip each sample to C, sum, noise, divide by the expected batch), at
noise 0, in float64. BK must match it to 1e-5 relative for every supported layer, with
held-out rows (label -1) and a row far beyond the clipping norm in the batch.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from opacus import GradSampleModule
from opacus.optimizers import DPOptimizer
from torch import nn
from torch.nn import functional as F

from privacy.bookkeeping import BookkeepingDP, unsupported
from privacy.specs import build_model
from privacy.training import IGNORE_LABEL, plan_run, train_private

CLIP = 0.5
# Opacus's hooks (the reference) warn on every step when the input needs no gradient.
pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


def _seq(*layers: nn.Module) -> nn.Module:
    return nn.Sequential(*layers)


def models() -> dict[str, tuple[nn.Module, tuple[int, ...], bool]]:
    """name -> (model, input shape, integer input)."""
    torch.manual_seed(0)
    return {
        "linear_2d": (_seq(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)), (6,), False),
        # T (p + d) > p d: explicit per-sample matrices.
        "linear_3d_explicit": (
            _seq(nn.Linear(6, 5), nn.Tanh(), nn.Flatten(), nn.Linear(20, 3)),
            (4, 6),
            False,
        ),
        # T (p + d) <= p d: the ghost Gram route.
        "linear_3d_ghost": (
            _seq(nn.Linear(40, 30, bias=False), nn.Tanh(), nn.Flatten(), nn.Linear(90, 3)),
            (3, 40),
            False,
        ),
        "conv_explicit": (
            _seq(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(144, 3)),
            (1, 6, 6),
            False,
        ),
        "conv_ghost_strided": (
            _seq(nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)),
            (8, 6, 6),
            False,
        ),
        "conv_dilated": (
            _seq(nn.Conv2d(2, 3, 2, dilation=2, padding=1), nn.Flatten(), nn.Linear(75, 3)),
            (2, 5, 5),
            False,
        ),
        "embedding": (
            _seq(nn.Embedding(7, 4), nn.Flatten(), nn.Tanh(), nn.Linear(20, 3)),
            (5,),
            True,
        ),
        "groupnorm_layernorm": (
            _seq(
                nn.Conv2d(1, 4, 3, padding=1),
                nn.GroupNorm(2, 4),
                nn.GELU(),
                nn.AvgPool2d(2),
                nn.Flatten(),
                nn.LayerNorm(36),
                nn.Linear(36, 3),
            ),
            (1, 6, 6),
            False,
        ),
    }


def batch(shape, integer, n=24, seed=1):
    g = torch.Generator().manual_seed(seed)
    if integer:
        x = torch.randint(0, 7, (n, *shape), generator=g)  # repeated ids within a row
    else:
        x = torch.randn((n, *shape), generator=g, dtype=torch.float64)
        x[0] *= 1e3  # far beyond the clipping norm
    y = torch.randint(0, 3, (n,), generator=g)
    y[3] = IGNORE_LABEL
    y[7] = IGNORE_LABEL
    return x, y


def opacus_gradient(model, x, y, expected_batch):
    module = GradSampleModule(copy.deepcopy(model), loss_reduction="mean")
    optimizer = DPOptimizer(
        torch.optim.SGD(module.parameters(), lr=0.1),
        noise_multiplier=0.0,
        max_grad_norm=CLIP,
        expected_batch_size=expected_batch,
        loss_reduction="mean",
    )
    losses = F.cross_entropy(module(x), y, reduction="none", ignore_index=IGNORE_LABEL)
    (losses.sum() / len(y)).backward()
    optimizer.pre_step()
    return [p.grad.detach().clone() for p in module.parameters()]


def bk(model, expected_batch, noise=0.0, seed=0):
    return BookkeepingDP(
        copy.deepcopy(model),
        max_grad_norm=CLIP,
        noise_multiplier=noise,
        expected_batch_size=expected_batch,
        noise_generator=torch.Generator().manual_seed(seed),
        ignore_index=IGNORE_LABEL,
    )


def bk_gradient(model, x, y, expected_batch, chunks=1):
    dp = bk(model, expected_batch)
    dp.zero_grad()
    for xs, ys in zip(x.chunk(chunks), y.chunk(chunks), strict=True):
        dp.loss(dp.module(xs), ys).backward()
    dp.add_noise()
    return [p.grad.detach().clone() for p in dp.module.parameters()], dp


def assert_close(ours, reference):
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference, strict=True):
        assert a.shape == b.shape
        scale = float(b.norm())
        assert scale > 0
        assert float((a - b).norm()) <= 1e-5 * scale, float((a - b).norm()) / scale


@pytest.mark.parametrize("name", sorted(models()))
def test_bk_equals_opacus_hooks_at_noise_zero(name):
    model, shape, integer = models()[name]
    model = model.double()
    x, y = batch(shape, integer)
    assert unsupported(model) is None
    ours, dp = bk_gradient(model, x, y, expected_batch=20)
    assert_close(ours, opacus_gradient(model, x, y, expected_batch=20))
    # Clipping was active: the outlier (or some row) was scaled down, others were not.
    assert float(dp.last_norms.max()) > CLIP
    # Held-out rows have a zero gradient.
    assert float(dp.last_norms[3]) == 0.0 and float(dp.last_norms[7]) == 0.0


@pytest.mark.parametrize("name", ["linear_2d", "conv_explicit", "embedding"])
def test_physical_batches_accumulate_to_the_logical_sum(name):
    model, shape, integer = models()[name]
    model = model.double()
    x, y = batch(shape, integer)
    whole, _ = bk_gradient(model, x, y, expected_batch=20)
    parts, _ = bk_gradient(model, x, y, expected_batch=20, chunks=5)
    assert_close(parts, whole)


def test_float32_seed_mlp_matches_opacus_hooks():
    from privacy.specs import SEED_MLP

    torch.manual_seed(0)
    model = build_model(SEED_MLP, input_shape=(1, 8, 8), num_classes=10)
    x, y = batch((1, 8, 8), False, n=64)
    x = x.float()
    model[3].p = 0.0  # dropout off: both paths must see the same activations
    ours, _ = bk_gradient(model, x, y, expected_batch=60)
    assert_close(ours, opacus_gradient(model, x, y, expected_batch=60))


def test_noise_standard_deviation_matches_the_plan():
    """Empty batches: the gradient is pure noise, sigma * C / expected batch per
    coordinate, independent across coordinates and steps."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(50, 20))
    sigma, expected = 1.3, 32
    dp = bk(model, expected, noise=sigma, seed=5)
    draws = []
    for _ in range(300):
        dp.zero_grad()
        dp.add_noise()
        draws.append(dp.flat_grad.clone())
    noise = torch.stack(draws).double()  # 300 x 1020
    target = sigma * CLIP / expected
    assert dp.noise_std == pytest.approx(target)
    n = noise.numel()
    # The sample standard deviation's relative standard error is 1 / sqrt(2 n) = 0.13%.
    assert float(noise.std()) == pytest.approx(target, rel=6 / np.sqrt(2 * n))
    assert abs(float(noise.mean())) < 6 * target / np.sqrt(n)
    # Consecutive steps are independent draws, not the same buffer twice.
    correlation = float(
        torch.corrcoef(torch.stack([noise[:-1].flatten(), noise[1:].flatten()]))[0, 1]
    )
    assert abs(correlation) < 6 / np.sqrt(n)
    # The gradients are views of the flat buffer the noise was added to.
    assert all(p.grad.data_ptr() >= dp.flat_grad.data_ptr() for p in dp.params)


def test_an_unwrapped_loss_fails_loudly():
    model, shape, integer = models()["linear_2d"]
    dp = bk(model.double(), 20)
    x, y = batch(shape, integer)
    dp.zero_grad()
    with pytest.raises(RuntimeError, match="outside the DP loss"):
        F.cross_entropy(dp.module(x), y.clamp(min=0)).backward()
    assert float(dp.flat_grad.abs().sum()) == 0.0


def test_unsupported_layers_are_named_and_the_trainer_falls_back():
    class Scale(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.s = nn.Parameter(torch.ones(3))

        def forward(self, x):
            return x * self.s

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3)).astype(np.float32)
    y = rng.integers(0, 3, 200)
    plan = plan_run(rows=200, epsilon=2.0, delta=1e-3, epochs=1, batch_size=40,
                    max_grad_norm=1.0)  # fmt: skip
    model = nn.Sequential(nn.Linear(3, 3), Scale())
    assert "Scale" in unsupported(model)
    result = train_private(model=model, features=x, labels=y, plan=plan, learning_rate=0.01)
    assert result.grad_sample_mode == "ghost" and result.steps == plan.steps
    # A layer used twice per pass: found by the trainer's probe on zeros of the public
    # shape (before any row is read), which then leaves BK for the next mode.
    shared = nn.Linear(3, 3)
    tied = nn.Sequential(shared, nn.Tanh(), shared)
    assert unsupported(tied) is None
    with pytest.raises(NotImplementedError, match="twice"):
        bk(tied, 20).probe((3,))


def test_bk_run_takes_empty_batches_as_steps_and_honours_held_out_rows():
    """A tiny sampling rate: most logical batches are empty, and each is still a step."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5)).astype(np.float32)
    y = rng.integers(0, 2, 400)
    plan = plan_run(rows=400, epsilon=8.0, delta=1e-3, epochs=1, batch_size=1,
                    max_grad_norm=1.0, holdout_fraction=0.0)  # fmt: skip
    assert plan.sample_rate == 1 / 400
    model = build_model({"template": "logistic_regression"}, input_shape=(5,), num_classes=2)
    result = train_private(model=model, features=x, labels=y, plan=plan, learning_rate=0.01)
    assert result.grad_sample_mode == "bk"
    assert result.steps == plan.steps == 400


def test_probe_measures_memory_per_row_from_the_public_shape():
    from privacy.specs import SEED_MLP

    model = build_model(SEED_MLP, input_shape=(1, 28, 28), num_classes=10)
    dp = bk(model, 32)
    dp.probe((1, 28, 28))
    # Inputs and output gradients of both linear layers: (784 + 128) + (128 + 10) floats.
    assert dp.bytes_per_row == 4 * (784 + 128 + 128 + 10)
    assert float(dp.flat_grad.abs().sum()) == 0.0  # the probe leaves no gradient behind
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Flatten(), nn.Linear(144, 3))
    dp = bk(conv, 32)
    dp.probe((1, 6, 6))
    # Unfolded input 9 x 36, output gradient 4 x 36, per-row matrix min(2 * 36^2, 4 x 9).
    assert dp.bytes_per_row == 4 * (9 * 36 + 4 * 36 + 4 * 9 + 144 + 3)


NON_FINITE_MODELS = {
    # Flatten first: FiniteSequential zeroes the row before the first linear layer, which
    # then sees a zero row (a finite, clipped contribution).
    "flatten_first": ({"template": "mlp", "hidden": [8]}, (1, 4, 4)),
    # Conv first: its input is the raw row; the row's norm is not finite, its coefficient 0.
    "conv_first": (
        {"layers": [{"type": "conv2d", "out_channels": 3, "kernel_size": 3, "padding": 1},
                    {"type": "flatten"}, {"type": "linear", "out_features": 3}]},
        (1, 4, 4),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NON_FINITE_MODELS))
def test_a_non_finite_row_adds_a_finite_contribution_of_its_own(name):
    spec, shape = NON_FINITE_MODELS[name]
    torch.manual_seed(0)
    model = build_model(spec, input_shape=shape, num_classes=3)
    x, y = batch(shape, False, n=16)
    x = x.float()
    x[0] = float("inf")
    x[1, 0, 0, 0] = float("nan")
    ours, _ = bk_gradient(model, x, y, expected_batch=16)
    assert all(bool(torch.isfinite(g).all()) for g in ours)
    if name == "flatten_first":  # as if the two rows were zeros
        clean = x.clone()
        clean[:2] = 0.0
        expected, _ = bk_gradient(model, clean, y, expected_batch=16)
    else:  # as if the two rows were absent
        expected, _ = bk_gradient(model, x[2:], y[2:], expected_batch=16)
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
