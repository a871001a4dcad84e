"""Accuracy the product measured on public reference data, shown beside the quote form.

A buyer choosing epsilon needs to know what it costs in accuracy; the owner's rows cannot
tell them (any figure computed on them would be a release). These figures come from public
data sets instead (MNIST, UCI Adult), bought through the product's own API with the recipe
the form offers (``bench/accuracy.py``), and are labelled as such on the page. Each figure
names the result files it averages (``bench/results/``); ``tests/trading/test_reference.py``
checks every number against them, so this table cannot drift from what was measured.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReferencePoint:
    epsilon: float
    accuracy: float  # mean test accuracy of the purchases in ``results``
    results: tuple[str, ...]  # result files under bench/results/


@dataclass(frozen=True)
class ReferenceFigures:
    data: str  # the public data set, in words
    model: str  # the model, in words
    nonprivate: float  # the same model and encoding without privacy
    points: tuple[ReferencePoint, ...]


_SEED_MLP_12 = tuple(
    ["accuracy-held2000-2026-11-30.json"]
    + [f"accuracy-seed-mlp-eps1.2-rebuy{i}-2026-11-30.json" for i in range(1, 5)]
)
_SEED_MLP_3 = tuple(
    ["accuracy-held2000-2026-11-30.json"]
    + [f"accuracy-seed-mlp-eps3-rebuy{i}-2026-11-30.json" for i in range(1, 4)]
)
_ADULT = ("accuracy-adult-lr-bins-age-hours-categorical-2026-11-30.json",)
_CNN = ("accuracy-mnist-cnn-held2000-2026-11-30.json",)
_MNIST = "MNIST (60,000 training images listed, scored on its 10,000 test images)"

#: Per kind of data and form template, what was measured (templates absent: not measured).
REFERENCE: dict[tuple[str, str], ReferenceFigures] = {
    ("image", "layers"): ReferenceFigures(
        data=_MNIST,
        model="the layer list flatten, dense 128 ReLU, dropout 0.2, dense 10",
        nonprivate=0.9760,
        points=(
            ReferencePoint(1.2, 0.93156, _SEED_MLP_12),
            ReferencePoint(3.0, 0.95235, _SEED_MLP_3),
        ),
    ),
    ("image", "cnn"): ReferenceFigures(
        data=_MNIST,
        model="the cnn template (Tramer and Boneh's tanh CNN)",
        nonprivate=0.9896,
        points=(ReferencePoint(1.2, 0.9714, _CNN), ReferencePoint(3.0, 0.9816, _CNN)),
    ),
    ("tabular", "logistic_regression"): ReferenceFigures(
        data="UCI Adult (32,561 rows listed, scored on its 16,281 test rows)",
        model="the logistic_regression template",
        nonprivate=0.8568,
        points=(
            ReferencePoint(0.5, 0.8523, _ADULT),
            ReferencePoint(1.0, 0.8554, _ADULT),
            ReferencePoint(3.0, 0.8573, _ADULT),
        ),
    ),
}


def reference_for(data_kind: str) -> dict[str, ReferenceFigures]:
    """The figures for this kind of data (``"image"`` or ``"tabular"``), by form template."""
    return {template: f for (kind, template), f in REFERENCE.items() if kind == data_kind}
