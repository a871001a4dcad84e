"""Privacy self-audit: the product tests its own DP-SGD with canaries (docs/privacy-audit.md).

A one-run audit after Steinke, Nasr and Jagielski, "Privacy Auditing with One (1) Training
Run" (NeurIPS 2023). ``m`` gradient canaries are each included with probability 1/2 in a
synthetic dataset, which is trained with the product's own ``train_private`` at the
production settings of a configuration (model family, clipping mode as the product picks
it, the noise multiplier, sampling rate and steps of ``plan_run``), with plain SGD
(``AuditHooks``). Canary ``j`` is a row whose features are zero except for a large value
in input ``j`` of an *audit layer* (``nn.Linear(m, 1)``, zero-initialised) appended to the
model; the layer's output touches the loss's gradient but not its value (``a - a.detach()``
added to logit 0), so the canary's per-sample gradient is, to 1e-4 of its norm, a known
large vector on its own coordinate ``w_j``: clipping makes it ``-C e_j``, every ordinary row
leaves ``w_j`` alone. The score of canary ``j`` is ``w_j``'s final value in units of one
clipped step (``w_j * B / (lr * C)``): for a left-out canary it is pure noise,
``N(0, z^2 T)``; an included one adds the number of times it was sampled.

The lower bound. The auditor guesses "included" for the ``k+`` highest scores and "left
out" for the ``k-`` lowest and counts the correct guesses ``v`` of ``r = k+ + k-``. Theorem
5.2 of the paper: for an (eps, delta)-DP mechanism, ``P[v correct] <= f(v) + 2 m delta
max_{1<=i<=v} (f(v-i) - f(v)) / i`` with ``f(v) = P[Binomial(r, e^eps/(e^eps+1)) >= v]``.
The bound is the largest eps that the observed ``v`` rejects at ``0.05 / S`` for ``S``
pre-registered guess settings (Bonferroni), maximised over the settings.

The conformance check reads the same run: the spread of the left-out scores over the
spread the claimed noise predicts (``z sqrt(T)``; flagged outside 0.85-1.15) and the shift
of the included scores' mean over the left-out mean in units of that spread (flagged
above 4). A lower bound only: an audit can refute a claim, never prove one.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import stats
from torch import nn

from privacy.specs import SEED_MLP, build_model, template_defaults
from privacy.training import AUDIT_FAULTS, AuditHooks, RunPlan, plan_run, train_private

__all__ = [
    "AUDIT_FAULTS",
    "CAVEATS",
    "FAMILIES",
    "AuditReport",
    "AuditSettings",
    "epsilon_lower_bound",
    "p_value",
    "run_audit",
]

#: The model families an audit can train: the seed MLP (the demo's and the benchmarks'
#: reference) and multinomial logistic regression, both on 28x28 one-channel inputs.
FAMILIES: dict[str, dict[str, Any]] = {
    "seed_mlp": SEED_MLP,
    "logistic_regression": {"template": "logistic_regression"},
}
INPUT_SHAPE = (1, 28, 28)
CLASSES = 10
#: A canary's input value: its gradient is this many times larger than any clipping norm
#: sold, so clipping leaves it on its own coordinate (the rest is below 1e-4 of C).
CANARY_SCALE = 1.0e5
#: Pre-registered guess settings, as fractions of m: (k+, k-) = (f m, f m) for each f.
GUESS_FRACTIONS = (0.01, 0.05, 0.1, 0.25, 0.5)
CONFIDENCE = 0.95
SPREAD_RANGE = (0.85, 1.15)
MAX_SHIFT = 4.0
REFUTED = "claim refuted at 95%"
NOT_REFUTED = "no evidence against the claim"
CAVEATS = (
    "A lower bound only: passing shows no violation was found, never that the claim holds.",
    "With m = 1,000 canaries the bound cannot exceed about 5-6, so larger claims cannot be "
    "refuted by the bound (the conformance check still sees the noise and the clipping).",
    "Errors in the accountant alone (a wrong epsilon for correct noise) are invisible: the "
    "audit checks the noise against the plan's own noise multiplier.",
)


def p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    """P[at least ``v`` of ``r`` guesses correct] under (epsilon, delta)-DP (Theorem 5.2)."""
    if not 0 <= v <= r <= m:
        raise ValueError("need 0 <= v <= r <= m")
    q = 1.0 / (1.0 + math.exp(-epsilon))
    beta = float(stats.binom.sf(v - 1, r, q))  # f(v) = P[Binomial(r, q) >= v]
    alpha = 0.0
    if v > 0 and delta > 0:
        # (f(v - i) - f(v)) / i = P[v - i <= Binomial < v] / i, for i = 1..v
        pmf = stats.binom.pmf(np.arange(v - 1, -1, -1), r, q)
        alpha = float(np.max(np.cumsum(pmf) / np.arange(1, v + 1)))
    return min(1.0, beta + 2 * m * delta * alpha)


def epsilon_lower_bound(m: int, r: int, v: int, delta: float, level: float) -> float:
    """The largest epsilon that ``v`` correct guesses of ``r`` reject at ``level`` (0 if none)."""
    if r == 0 or p_value(m, r, v, 0.0, delta) >= level:
        return 0.0
    lo, hi = 0.0, 1.0
    while p_value(m, r, v, hi, delta) < level:
        lo, hi = hi, hi * 2
        if hi > 64:
            return lo
    for _ in range(40):
        mid = (lo + hi) / 2
        if p_value(m, r, v, mid, delta) < level:
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class AuditSettings:
    """One configuration to audit: the product's settings for it, and the audit's own."""

    config: str = "cpu"
    family: str = "seed_mlp"
    epsilon: float = 1.0
    delta: float = 1e-5
    rows: int = 10_000
    epochs: int | None = None  # None: the family's template default
    batch_size: int | None = None
    max_grad_norm: float | None = None
    learning_rate: float | None = None
    accountant: str = "rdp"
    holdout_fraction: float = 0.2
    holdout_max_rows: int | None = None
    max_physical_batch_size: int = 256
    grad_sample_mode: str = "auto"
    canaries: int = 1000
    seed: int = 0
    fault: str | None = None


@dataclass(frozen=True)
class AuditReport:
    """What an audit found; ``to_json`` is the audit-log entry's data."""

    config: str
    family: str
    claim_epsilon: float
    claim_delta: float
    purchased_epsilon: float
    lower_bound: float
    canaries: int
    included: int
    guesses: list[dict[str, float]]
    spread_ratio: float
    shift: float
    spread_flag: bool
    shift_flag: bool
    verdict: str
    noise_multiplier: float
    sample_rate: float
    steps: int
    grad_sample_mode: str
    seed: int
    fault: str | None
    seconds: float
    caveats: list[str] = field(default_factory=lambda: list(CAVEATS))

    @property
    def refuted(self) -> bool:
        return self.verdict == REFUTED

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        lines = [
            f"configuration {self.config} ({self.family}, {self.grad_sample_mode}): claim "
            f"epsilon {self.claim_epsilon:.3f} (training part of {self.purchased_epsilon:g}), "
            f"delta {self.claim_delta:g}; z {self.noise_multiplier:.4f}, q {self.sample_rate:.4g}, "
            f"{self.steps} steps",
            f"  {CONFIDENCE:.0%} lower bound on epsilon: {self.lower_bound:.3f} "
            f"(m = {self.canaries}, {self.included} included, seed {self.seed})",
            "  guesses (k+, k-, correct): "
            + ", ".join(
                f"({g['k_plus']:.0f}, {g['k_minus']:.0f}, {g['correct']:.0f}) -> {g['bound']:.2f}"
                for g in self.guesses
            ),
            f"  spread ratio {self.spread_ratio:.3f} (flag outside {SPREAD_RANGE[0]}-"
            f"{SPREAD_RANGE[1]}), shift {self.shift:.2f} spreads (flag above {MAX_SHIFT:g})",
            f"  verdict: {self.verdict} ({self.seconds:.1f} s)",
        ]
        lines += [f"  caveat: {c}" for c in self.caveats]
        return "\n".join(lines)


class _AuditModel(nn.Module):
    """The model under audit plus the audit layer: input ``[x.flatten(), canary one-hot]``."""

    def __init__(self, base: nn.Module, input_shape: tuple[int, ...], canaries: int) -> None:
        super().__init__()
        self.base = base
        self.input_shape = input_shape
        self.width = math.prod(input_shape)
        self.audit = nn.Linear(canaries, 1, bias=False)
        nn.init.zeros_(self.audit.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.base(x[:, : self.width].reshape(-1, *self.input_shape))
        a = self.audit(x[:, self.width :])
        # The gradient of the loss w.r.t. a flows, its value does not: the canary's
        # predicted probabilities (and so its gradient's sign) never depend on w.
        bump = torch.zeros_like(logits)
        bump[:, :1] = a - a.detach()
        return logits + bump


def _plans(settings: AuditSettings, defaults: dict[str, Any]) -> tuple[RunPlan, int]:
    """The production plan for ``settings.rows`` rows, and the expected canaries in it."""
    expected = settings.canaries // 2
    plan = plan_run(
        rows=settings.rows,
        epsilon=settings.epsilon,
        delta=settings.delta,
        epochs=settings.epochs or int(defaults["epochs"]),
        batch_size=settings.batch_size or int(defaults["batch_size"]),
        max_grad_norm=settings.max_grad_norm or float(defaults["max_grad_norm"]),
        accountant=settings.accountant,
        holdout_fraction=settings.holdout_fraction,
        holdout_max_rows=settings.holdout_max_rows,
    )
    return plan, expected


def run_audit(settings: AuditSettings) -> AuditReport:
    """Train once with canaries at ``settings``' production plan and report (module doc)."""
    started = time.perf_counter()
    if settings.family not in FAMILIES:
        raise ValueError(f"family must be one of {list(FAMILIES)}")
    m = settings.canaries
    if m < 20 or m >= settings.rows // 2:
        raise ValueError("canaries must be at least 20 and under half the rows")
    spec = FAMILIES[settings.family]
    defaults = template_defaults(spec)
    plan, expected = _plans(settings, defaults)
    rng = np.random.default_rng(settings.seed)
    included = rng.random(m) < 0.5
    base_rows = settings.rows - expected
    width = math.prod(INPUT_SHAPE)
    n = base_rows + int(included.sum())
    features = np.zeros((n, width + m), dtype=np.float32)
    features[:base_rows, :width] = rng.standard_normal((base_rows, width), dtype=np.float32)
    labels = np.zeros(n, dtype=np.int64)
    labels[:base_rows] = rng.integers(0, CLASSES, base_rows)
    ids = np.flatnonzero(included)
    features[base_rows + np.arange(len(ids)), width + ids] = CANARY_SCALE
    # The product's plan (noise, rate, steps), run on every row: the canaries must not be
    # held out, so the metrics (and their share of epsilon) stay out of the audited claim.
    run_plan = dataclasses.replace(
        plan, rows=n, train_rows=n, holdout_rows=0, metrics_noise_multiplier=None
    )
    base = build_model(spec, input_shape=INPUT_SHAPE, num_classes=CLASSES)
    torch.manual_seed(settings.seed)
    model = _AuditModel(base, INPUT_SHAPE, m)
    lr = settings.learning_rate or float(defaults["learning_rate"])
    result = train_private(
        model=model,
        features=features,
        labels=labels,
        plan=run_plan,
        learning_rate=lr,
        optimizer="sgd",
        max_physical_batch_size=settings.max_physical_batch_size,
        grad_sample_mode=settings.grad_sample_mode,
        audit=AuditHooks(seed=settings.seed, fault=settings.fault),
    )
    batch = max(1, round(run_plan.sample_rate * run_plan.train_rows))
    weights = result.state_dict["audit.weight"].double().numpy().reshape(-1)
    scores = weights * batch / (lr * plan.max_grad_norm)
    return _report(
        settings,
        plan=plan,
        scores=scores,
        included=included,
        grad_sample_mode=result.grad_sample_mode,
        seconds=time.perf_counter() - started,
    )


def _report(
    settings: AuditSettings,
    *,
    plan: RunPlan,
    scores: np.ndarray,
    included: np.ndarray,
    grad_sample_mode: str,
    seconds: float,
) -> AuditReport:
    m = len(scores)
    claim = plan.epsilon_training
    level = (1 - CONFIDENCE) / len(GUESS_FRACTIONS)
    order = np.argsort(scores, kind="stable")
    guesses: list[dict[str, float]] = []
    for fraction in GUESS_FRACTIONS:
        k = max(1, int(round(fraction * m)))
        low, high = order[:k], order[m - k :]
        correct = int(included[high].sum() + (~included[low]).sum())
        bound = epsilon_lower_bound(m, 2 * k, correct, plan.delta, level)
        guesses.append({"k_plus": k, "k_minus": k, "correct": correct, "bound": bound})
    lower = max(g["bound"] for g in guesses)
    predicted = plan.noise_multiplier * math.sqrt(plan.steps)
    left_out, kept = scores[~included], scores[included]
    ratio = float(np.std(left_out, ddof=1) / predicted) if len(left_out) > 1 else 0.0
    shift = (
        float((kept.mean() - left_out.mean()) / predicted) if len(kept) and len(left_out) else 0.0
    )
    spread_flag = not SPREAD_RANGE[0] <= ratio <= SPREAD_RANGE[1]
    shift_flag = shift > MAX_SHIFT
    refuted = lower > claim or spread_flag or shift_flag
    return AuditReport(
        config=settings.config,
        family=settings.family,
        claim_epsilon=claim,
        claim_delta=plan.delta,
        purchased_epsilon=plan.epsilon,
        lower_bound=lower,
        canaries=m,
        included=int(included.sum()),
        guesses=guesses,
        spread_ratio=ratio,
        shift=min(shift, 1e12),
        spread_flag=spread_flag,
        shift_flag=shift_flag,
        verdict=REFUTED if refuted else NOT_REFUTED,
        noise_multiplier=plan.noise_multiplier,
        sample_rate=plan.sample_rate,
        steps=plan.steps,
        grad_sample_mode=grad_sample_mode,
        seed=settings.seed,
        fault=settings.fault,
        seconds=seconds,
    )
