"""Planning and running DP-SGD training (the only module that touches Opacus's engine).

``plan_run`` turns a quote (rows, epsilon, delta, epochs, batch size, clipping norm) into
a frozen ``RunPlan``: the noise multiplier, sampling rate and steps of DP-SGD, plus the
Gaussian releases of the held-out metrics. ``train_private`` executes exactly that plan.

Budget split. A run's purchased epsilon pays for *everything* released from the run:
the DP-SGD steps and the noisy held-out metrics (accuracy and loss). ``plan_run`` first
gives the metrics their own Gaussian noise, calibrated so that the two metric releases
alone would cost ``metrics_fraction`` (default 10%) of the epsilon, then searches the
smallest training noise for which the *composition* of training and metrics is at most
the epsilon. Composition is sub-additive, so training effectively keeps more than 90%.

Neighbouring relation: add/remove one row, as in Opacus's analysis, and it holds for the
whole run. Each row's place (training or held out) is a keyed coin computed from that row's
own content and a per-run secret (``holdout_mask``): adding or removing one row changes no
other row's assignment. Poisson sampling runs over *all* rows at the planned rate and a
held-out row contributes zero to every step (its label is ``IGNORE_LABEL``), so each step
is the planned subsampled Gaussian for every row, whichever side of the split it fell on.
The held-out size is then private: it is released like the metrics (a noisy count), and
training and metrics are composed *sequentially* over the whole dataset.

Randomness: the split key, Poisson sampling and gradient noise all come from OS entropy:
a seed a buyer could know would let the noise be subtracted. Opacus's ``secure_mode`` is
not used because ``torchcsprng`` does not build for current torch.

Outcomes that do not depend on a row. Nothing private steers control flow: shapes come
from the public schema (probes use zeros), a model's activations pass through
``privacy.specs.FiniteSequential`` (a non-finite row becomes zeros), and non-finite
per-sample gradients are zeroed before clipping (``_guard_non_finite``): the step still
happens, and a row's contribution stays a function of that row alone, clipped to C.
A failure after training starts raises ``TrainingError`` with a fixed message and the
plan's full records as spent: never "stopped after k steps".

Clipping modes. ``auto`` picks, from the model's layers alone, book-keeping clipping
(``bk``, ``privacy.bookkeeping``: one backward pass, the clipped sum formed from each
layer's activations and output gradients, Poisson samples drawn by geometric gaps in
``privacy.sampling`` and one flat noise draw per step) where every trainable layer has a
book-keeping rule, else Opacus's ghost clipping, else per-sample hooks; the mode used is
in the result and the receipt (``grad_sample_mode``). All three release the same
mechanism: the planned subsampled Gaussian with clipping norm C, divided by the expected
batch. In BK mode a backward from any loss but the DP one raises (``_BKStep``).

Ghost clipping. With ``grad_sample_mode="ghost"`` Opacus returns a *new* criterion and
silently skips clipping if the original one is used. Here the original criterion is
created inside the call to ``make_private`` and never bound to a name; the training loop
can only reach the criterion Opacus returned (``_PrivateStep``). A test trains on an
outlier row and checks that the update norm stays within the clipping bound.
"""

from __future__ import annotations

import copy
import hashlib
import math
import secrets
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from opacus import PrivacyEngine
from opacus.data_loader import DPDataLoader
from opacus.utils.batch_memory_manager import BatchMemoryManager
from opacus.utils.fast_gradient_clipping_utils import DPLossFastGradientClipping
from scipy.optimize import brentq
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from privacy.accounting import ACCOUNTANTS, compose_epsilon
from privacy.bookkeeping import BookkeepingDP
from privacy.errors import AccountingError, PlanError, TrainingCancelled, TrainingError
from privacy.records import GaussianRecord, MechanismRecord, SubsampledGaussianRecord
from privacy.relation import NEIGHBOURING_RELATION
from privacy.release import gaussian_noise_multiplier, gaussian_release
from privacy.sampling import PoissonSampler

__all__ = [
    "NEIGHBOURING_RELATION",
    "AuditHooks",
    "RunPlan",
    "TrainingResult",
    "plan_run",
    "train_private",
]

#: A plan is refused when the per-step noise standard deviation (z * C) exceeds this
#: multiple of the largest possible clipped signal of an expected batch (B * C), i.e.
#: when z / B > 1: every update would then be dominated by noise even if all B
#: per-example gradients pointed the same way, and training cannot learn anything.
MAX_NOISE_TO_SIGNAL = 1.0
#: Per-example losses are clipped to [0, LOSS_BOUND] before the noisy loss sum is
#: released; a power of two so that sigma / sensitivity is exact in floating point.
LOSS_BOUND = 4.0
#: The held-out releases, in order: correct predictions (sensitivity 1), the clipped loss
#: sum (sensitivity ``LOSS_BOUND``) and the held-out row count (sensitivity 1).
METRICS = ("accuracy", "loss", "holdout_rows")
#: The label a held-out row carries in the training tensor: its loss and gradient are zero.
IGNORE_LABEL = -1

#: In hooks mode every physical batch materialises per-sample gradients (batch x params
#: floats). Above glibc's dynamic mmap threshold (32 MiB at most) each step maps and
#: unmaps that buffer, and training becomes page-fault bound (docs/pitfalls.md).
#: Physical batches are capped so the buffer stays well below it (24 MiB leaves room
#: for the other per-step allocations): on the seed MLP (batch 61) this measured about
#: 3x faster than batches of 256, with less memory. Ghost mode is unaffected.
HOOKS_BUFFER_BYTES = 24 * 1024 * 1024
#: In BK mode a physical batch holds what non-private training holds (each layer's input
#: and output gradient, measured per row by ``BookkeepingDP.probe`` on zeros) and no
#: per-sample gradient, so physical batches are at least as large as fit in this many
#: bytes, and never smaller than ``max_physical_batch_size``: splitting a logical batch
#: costs a pass, and at 256 half of all Poisson batches of 256 rows would be split.
BK_BUFFER_BYTES = 64 * 1024 * 1024
OPTIMIZERS = ("adam", "sgd")
#: How the learning rate moves over a run's logical steps: ``constant``, or ``cosine`` (from
#: the given rate at the first step down towards zero at the last: a schedule of public
#: values only, so it changes nothing in the privacy analysis).
LR_SCHEDULES = ("constant", "cosine")
#: ``auto`` is book-keeping, falling back to ghost and then hooks (module docstring).
GRAD_SAMPLE_MODES = ("auto", "bk", "ghost", "hooks")
#: Faults the self-audit injects to show it catches them (``AuditHooks.fault``).
AUDIT_FAULTS = ("skip_clipping", "no_noise", "half_noise")

ProgressFn = Callable[[int, int, float], None]


@dataclass(frozen=True)
class AuditHooks:
    """Settings of a self-audit run (``privacy.audit``), never of a sold run.

    Only ``privacy.audit`` builds one; nothing in a request can (the marketplace calls
    ``train_private`` without ``audit``). With it, the optimizer is plain SGD without
    momentum (the audit reads the canaries' weights, which momentum and Adam would blur),
    Poisson sampling and gradient noise come from generators seeded with ``seed`` (an
    audit is reproducible; a sold run never is), and ``fault`` (tests only) breaks the
    step on purpose: clipping skipped, noise off, or noise halved.
    """

    seed: int
    fault: str | None = None


@dataclass(frozen=True)
class RunPlan:
    """A planned DP-SGD run and its metric releases, as plain data.

    ``records()`` is what the ledger must be able to hold before the run is sold.
    """

    rows: int
    train_rows: int
    holdout_rows: int
    epsilon: float
    delta: float
    epochs: int
    batch_size: int
    max_grad_norm: float
    noise_multiplier: float
    sample_rate: float
    steps_per_epoch: int
    steps: int
    accountant: str
    metrics_noise_multiplier: float | None
    metrics_fraction: float
    epsilon_training: float
    epsilon_metrics: float
    loss_bound: float = LOSS_BOUND
    metrics: tuple[str, ...] = field(default=METRICS)

    def training_record(self, steps: int | None = None) -> SubsampledGaussianRecord:
        return SubsampledGaussianRecord(
            mechanism="subsampled_gaussian",
            noise_multiplier=self.noise_multiplier,
            sample_rate=self.sample_rate,
            steps=self.steps if steps is None else steps,
        )

    def metric_records(self) -> list[GaussianRecord]:
        if self.metrics_noise_multiplier is None:
            return []
        z = self.metrics_noise_multiplier
        bound = self.loss_bound
        records = [
            GaussianRecord(mechanism="gaussian", sigma=z * 1.0, sensitivity=1.0, count=1),
            GaussianRecord(mechanism="gaussian", sigma=z * bound, sensitivity=bound, count=1),
        ]
        if "holdout_rows" in self.metrics:
            records.append(
                GaussianRecord(mechanism="gaussian", sigma=z * 1.0, sensitivity=1.0, count=1)
            )
        return records

    def records(self) -> list[MechanismRecord]:
        """Every mechanism the run will release: DP-SGD steps, then the metrics."""
        return [self.training_record(), *self.metric_records()]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["metrics"] = list(self.metrics)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunPlan:
        data = dict(data)
        data["metrics"] = tuple(data.get("metrics", METRICS))
        return cls(**data)


def _plan_error(message: str, field_name: str, **extra: Any) -> PlanError:
    return PlanError(message, details={"field": field_name, **extra})


def holdout_size(rows: int, fraction: float, max_rows: int | None = None) -> int:
    """Rows *expected* to be held out for the metrics (a function of public values only);
    the real count is a sum of per-row coins, released only as a noisy count.

    ``max_rows`` caps it: past a few thousand rows a larger held-out set hardly sharpens
    the metrics (their sampling error shrinks as one over its square root) while every
    row it takes is a row not trained on (docs/benchmarks.md, "held-out rows")."""
    expected = int(math.floor(rows * fraction))
    return expected if max_rows is None else min(expected, max_rows)


_WORD = np.dtype("<u8")
#: Rows hashed at once (bounds the product's memory: 4,096 MNIST rows are 13 MB).
_HASH_CHUNK_ROWS = 4096


def holdout_mask(
    features: np.ndarray, labels: np.ndarray, *, fraction: float, key: bytes
) -> np.ndarray:
    """True for the rows held out: a keyed coin per row, from the row's own bytes.

    A row's coin depends on nothing but its content and ``key``, so adding or removing a
    row leaves every other row where it was: the add/remove-one relation holds. The coin
    is ``mix(k0 + sum_j w_j k_j) < fraction * 2**64`` over the row's 64-bit words ``w_j``
    (features, then label), with keys ``k`` drawn from ``key`` by SHAKE-256 and a bijective
    64-bit mixer: ``k0`` is uniform, so every row's coin is exactly a ``fraction`` coin.
    Vectorised: a BLAKE2b per row took 85 ms for UCI Adult's 32,561 rows.
    """
    rows = len(labels)
    mask = np.zeros(rows, dtype=bool)
    if fraction <= 0 or rows == 0:
        return mask
    features = np.asarray(features).reshape(rows, -1)
    width = -(-features.shape[1] * features.dtype.itemsize // 8) + 1  # words per row
    keys = np.frombuffer(hashlib.shake_256(b"holdout" + key).digest(8 * (width + 1)), _WORD)
    threshold = np.uint64(min(int(fraction * 2.0**64), 2**64 - 1))
    with np.errstate(over="ignore"):
        for start in range(0, rows, _HASH_CHUNK_ROWS):
            end = start + _HASH_CHUNK_ROWS
            words = _row_words(features[start:end], np.asarray(labels)[start:end])
            h = (words * keys[1:]).sum(axis=1, dtype=np.uint64) + keys[0]
            mask[start:end] = _mix64(h) < threshold
    return mask


def _row_words(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each row's bytes (features, then its int64 label) as little-endian 64-bit words."""
    rows = len(labels)
    flat = np.ascontiguousarray(features).view(np.uint8).reshape(rows, -1)
    codes = np.ascontiguousarray(np.asarray(labels).astype("<i8")).view(np.uint8).reshape(rows, 8)
    pad = (-flat.shape[1]) % 8
    parts = [flat, np.zeros((rows, pad), dtype=np.uint8), codes] if pad else [flat, codes]
    return np.ascontiguousarray(np.concatenate(parts, axis=1)).view(_WORD)


def _mix64(h: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of 64-bit words that spreads every input bit."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def plan_run(
    *,
    rows: int,
    epsilon: float,
    delta: float,
    epochs: int,
    batch_size: int,
    max_grad_norm: float,
    accountant: str = "rdp",
    holdout_fraction: float = 0.2,
    metrics_fraction: float = 0.1,
    holdout_max_rows: int | None = None,
) -> RunPlan:
    """Plan a DP-SGD run that, with its metric releases, spends at most ``epsilon``.

    Args:
        rows: the dataset's row count (public, from the listing).
        epsilon, delta: the purchased guarantee; ``delta`` must be below ``1 / rows``.
        epochs, batch_size: expected passes and expected (Poisson) batch size.
        max_grad_norm: per-example clipping norm C.
        accountant: ``rdp`` (default), ``prv`` or ``pld`` (see ``privacy.accounting``).
        holdout_fraction: share of rows held out for the noisy metrics (0 disables them).
        metrics_fraction: share of epsilon the metrics would cost on their own.
        holdout_max_rows: at most this many rows held out (None: no cap); the coins then
            hold each row out with probability ``holdout_rows / rows``.

    Raises:
        PlanError: with the rule that failed in the message and ``details["field"]``.
    """
    _check_request(
        rows=rows,
        epsilon=epsilon,
        delta=delta,
        epochs=epochs,
        max_grad_norm=max_grad_norm,
        accountant=accountant,
        holdout_fraction=holdout_fraction,
        metrics_fraction=metrics_fraction,
    )
    if holdout_max_rows is not None and holdout_max_rows < 1:
        raise _plan_error("holdout_max_rows must be at least 1", "holdout_max_rows")
    holdout = holdout_size(rows, holdout_fraction, holdout_max_rows)
    with_metrics = holdout > 0 and metrics_fraction > 0
    if holdout_fraction > 0 and holdout == 0:
        raise _plan_error("too few rows to hold any out for metrics", "holdout_fraction")
    train_rows = rows - holdout
    _check_batch_size(batch_size, train_rows)
    # Exactly Opacus's sampling: the DP data loader samples each row with probability
    # 1 / len(loader) and runs len(loader) steps per epoch.
    steps_per_epoch = math.ceil(train_rows / batch_size)
    sample_rate = 1.0 / steps_per_epoch
    steps = epochs * steps_per_epoch

    metrics_z: float | None = None
    metric_records: list[MechanismRecord] = []
    if with_metrics:
        metrics_z = _metrics_noise(epsilon, delta, metrics_fraction, accountant)
        metric_records = [
            GaussianRecord(
                mechanism="gaussian", sigma=metrics_z, sensitivity=1.0, count=len(METRICS)
            )
        ]
    z = _training_noise(
        epsilon,
        delta,
        accountant,
        sample_rate=sample_rate,
        steps=steps,
        train_rows=train_rows,
        metric_records=metric_records,
    )
    return RunPlan(
        rows=rows,
        train_rows=train_rows,
        holdout_rows=holdout,
        epsilon=float(epsilon),
        delta=float(delta),
        epochs=epochs,
        batch_size=batch_size,
        max_grad_norm=float(max_grad_norm),
        noise_multiplier=z,
        sample_rate=sample_rate,
        steps_per_epoch=steps_per_epoch,
        steps=steps,
        accountant=accountant,
        metrics_noise_multiplier=metrics_z,
        metrics_fraction=metrics_fraction if with_metrics else 0.0,
        epsilon_training=compose_epsilon(
            [_sgd_record(z, sample_rate, steps)], delta=delta, accountant=accountant
        ),
        epsilon_metrics=(
            compose_epsilon(metric_records, delta=delta, accountant=accountant)
            if metric_records
            else 0.0
        ),
    )


def _check_request(
    *,
    rows: int,
    epsilon: float,
    delta: float,
    epochs: int,
    max_grad_norm: float,
    accountant: str,
    holdout_fraction: float,
    metrics_fraction: float,
) -> None:
    """``plan_run``'s arguments one by one, in this order (the first rule broken is named)."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 2:
        raise _plan_error("the dataset needs at least 2 rows", "rows")
    if not (isinstance(epsilon, int | float) and math.isfinite(epsilon) and epsilon > 0):
        raise _plan_error("epsilon must be a positive number", "epsilon")
    if not (isinstance(delta, int | float) and 0 < delta < 1.0 / rows):
        raise _plan_error(
            f"delta must be positive and below 1/rows = {1.0 / rows:.3g}: a larger delta "
            "allows mechanisms that publish a whole row",
            "delta",
        )
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise _plan_error("epochs must be a positive integer", "epochs")
    if not (isinstance(max_grad_norm, int | float) and 0 < max_grad_norm < math.inf):
        raise _plan_error("max_grad_norm must be positive", "max_grad_norm")
    if accountant not in ACCOUNTANTS:
        raise _plan_error(f"accountant must be one of {list(ACCOUNTANTS)}", "accountant")
    if not 0 <= holdout_fraction <= 0.5:
        raise _plan_error("holdout_fraction must be in [0, 0.5]", "holdout_fraction")
    if not 0 <= metrics_fraction < 1:
        raise _plan_error("metrics_fraction must be in [0, 1)", "metrics_fraction")


def _check_batch_size(batch_size: int, train_rows: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise _plan_error("batch_size must be a positive integer", "batch_size")
    if batch_size > train_rows:
        raise _plan_error(
            f"batch_size {batch_size} is larger than the {train_rows} training rows",
            "batch_size",
        )


def _metrics_noise(epsilon: float, delta: float, metrics_fraction: float, accountant: str) -> float:
    """The metrics' Gaussian noise multiplier: the releases alone cost ``metrics_fraction``
    of ``epsilon``."""
    try:
        return gaussian_noise_multiplier(
            epsilon=epsilon * metrics_fraction,
            delta=delta,
            releases=len(METRICS),
            accountant=accountant,
        )
    except AccountingError:
        raise _plan_error(
            f"epsilon {epsilon:g} is too small to pay for the held-out metrics "
            f"({epsilon * metrics_fraction:.3g} of it): raise epsilon",
            "metrics_fraction",
        ) from None


def _sgd_record(z: float, sample_rate: float, steps: int) -> SubsampledGaussianRecord:
    return SubsampledGaussianRecord(
        mechanism="subsampled_gaussian", noise_multiplier=z, sample_rate=sample_rate, steps=steps
    )


def _training_noise(
    epsilon: float,
    delta: float,
    accountant: str,
    *,
    sample_rate: float,
    steps: int,
    train_rows: int,
    metric_records: list[MechanismRecord],
) -> float:
    """The smallest DP-SGD noise multiplier for which training composed with the metric
    releases spends at most ``epsilon``; refused when it would drown every batch's signal."""

    def total(z: float) -> float:
        records = [_sgd_record(z, sample_rate, steps), *metric_records]
        return compose_epsilon(records, delta=delta, accountant=accountant)

    z = _calibrate(total, target=epsilon)
    expected_batch = sample_rate * train_rows
    if z / expected_batch > MAX_NOISE_TO_SIGNAL:
        raise _plan_error(
            f"the noise needed for epsilon {epsilon:g} (multiplier {z:.3g}) exceeds the "
            f"largest clipped signal of a batch of {expected_batch:.0f} rows, so training "
            "would learn nothing: raise epsilon or batch_size, or lower epochs",
            "epsilon",
            noise_multiplier=z,
            expected_batch_size=expected_batch,
        )
    return z


def _calibrate(total: Callable[[float], float], *, target: float) -> float:
    """Smallest noise multiplier (to about 0.01%) whose composed epsilon is <= ``target``.

    Like Opacus's ``get_noise_multiplier`` but over the whole run (training and metric
    releases), and with Brent's method instead of bisection: about ten evaluations of
    the accountant instead of thirty, which is what a quote waits for. The returned value
    is always on the feasible side.
    """

    def excess(z: float) -> float:
        return min(total(z) - target, 1e6)  # finite for Brent even where epsilon is inf

    lo, hi = 0.5, 1.0
    if excess(hi) > 0:
        while excess(hi) > 0:
            lo, hi = hi, hi * 2
            if hi > 1e6:
                raise _plan_error(f"epsilon {target:g} is too small for this many steps", "epsilon")
    else:
        while excess(lo) <= 0:
            lo, hi = lo / 2, lo
            if lo < 1e-4:
                return hi
    z = float(brentq(excess, lo, hi, rtol=1e-6))
    while excess(z) > 0:
        z *= 1 + 1e-5
    return z


@dataclass(frozen=True)
class TrainingResult:
    """What a finished run hands back; nothing here is a statistic of the raw rows.

    ``records`` go to the ledger (DP-SGD steps, then the metric releases); ``epsilon``
    is their composition under the plan's accountant (at most ``plan.epsilon``).
    ``epsilon_training`` composes the steps Opacus's own accountant counted (RDP on
    the ledger's order grid, or PRV for PRV plans; Opacus has no PLD, so PLD plans
    report the looser RDP figure here). ``metrics`` hold the noisy held-out accuracy
    and loss, their noise standard deviation and the (public) held-out size.
    """

    state_dict: dict[str, torch.Tensor]
    records: list[MechanismRecord]
    metrics: dict[str, float]
    steps: int
    epsilon: float
    epsilon_training: float
    grad_sample_mode: str
    timings: dict[str, float]

    def receipt(self) -> dict[str, Any]:
        """JSON-ready summary for the privacy receipt (everything but the weights)."""
        return {
            "records": self.records,
            "metrics": self.metrics,
            "steps": self.steps,
            "epsilon": self.epsilon,
            "epsilon_training": self.epsilon_training,
            "grad_sample_mode": self.grad_sample_mode,
            "timings": self.timings,
        }


class _TrainRowsLoss(nn.Module):
    """Cross-entropy where held-out rows (label ``IGNORE_LABEL``) count zero.

    ``mean`` divides by the physical batch length, held-out rows included, which is what
    Opacus's per-sample scaling assumes; ``none`` gives per-sample losses (ghost mode).
    """

    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_sample = nn.functional.cross_entropy(
            logits, target, reduction="none", ignore_index=IGNORE_LABEL
        )
        if self.reduction == "none":
            return per_sample
        if self.reduction == "sum":
            return per_sample.sum()
        return per_sample.sum() / max(len(per_sample), 1)


class _PrivateStep:
    """The DP model, optimizer and loss, bound together so they cannot be mixed up.

    In ghost mode the loss *must* be the criterion Opacus returns; the plain loss is
    created inline in the ``make_private`` call and never kept.
    """

    def __init__(
        self,
        *,
        module: nn.Module,
        plan: RunPlan,
        learning_rate: float,
        optimizer: str,
        loader: DataLoader,
        mode: str,
        audit: AuditHooks | None = None,
    ) -> None:
        self.engine = PrivacyEngine(accountant="prv" if plan.accountant == "prv" else "rdp")
        params = [p for p in module.parameters() if p.requires_grad]
        base = _base_optimizer(params, optimizer, learning_rate, audit)
        seed = secrets.randbits(63) if audit is None else audit.seed + 1
        noise = torch.Generator().manual_seed(seed)
        common: dict[str, Any] = {
            "module": module,
            "optimizer": base,
            # Already a Poisson loader over all rows at the planned rate (``_loader``).
            "data_loader": loader,
            "noise_multiplier": plan.noise_multiplier,
            "max_grad_norm": plan.max_grad_norm,
            "poisson_sampling": False,
            "noise_generator": noise,
        }
        if mode == "ghost":
            model, opt, criterion, data = self.engine.make_private(
                **common, criterion=_TrainRowsLoss(), grad_sample_mode="ghost"
            )
            if not isinstance(criterion, DPLossFastGradientClipping):
                raise TrainingError("ghost clipping did not return its DP loss", details={})
            self._loss: Callable[[torch.Tensor, torch.Tensor], Any] = criterion
        else:
            model, opt, data = self.engine.make_private(**common, grad_sample_mode="hooks")
            self._loss = _TrainRowsLoss()
        # The mean is over the expected *training* rows of a batch (public), as before the
        # held-out rows joined the loader with zero weight.
        opt.expected_batch_size = max(1, round(plan.sample_rate * plan.train_rows))
        _guard_non_finite(model, opt, mode)
        if audit is not None and audit.fault is not None:
            _inject_fault(model, opt, mode, audit.fault)
        self.model = model
        self.optimizer = opt
        self.data_loader = data
        self.mode = mode

    def step(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        """One physical batch; returns True when a logical (noised) step was taken."""
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return not self.optimizer._is_last_step_skipped

    @property
    def inner(self) -> nn.Module:
        return self.model._module


def _base_optimizer(
    params: list[nn.Parameter], optimizer: str, learning_rate: float, audit: AuditHooks | None
) -> torch.optim.Optimizer:
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=learning_rate)
    momentum = 0.9 if audit is None else 0.0
    return torch.optim.SGD(params, lr=learning_rate, momentum=momentum)


class _BKStep:
    """Book-keeping clipping (``privacy.bookkeeping``) bound to its optimizer, sampler
    generator and accountant. The only loss reachable is ``BookkeepingDP.loss``; a
    backward from any other loss raises instead of skipping clipping."""

    mode = "bk"

    def __init__(
        self,
        *,
        module: nn.Module,
        plan: RunPlan,
        learning_rate: float,
        optimizer: str,
        input_shape: tuple[int, ...],
        audit: AuditHooks | None = None,
    ) -> None:
        noise = torch.Generator().manual_seed(
            secrets.randbits(63) if audit is None else audit.seed + 1
        )
        self.bk = BookkeepingDP(
            module,
            max_grad_norm=plan.max_grad_norm,
            noise_multiplier=plan.noise_multiplier,
            # The mean is over the expected *training* rows of a batch (public).
            expected_batch_size=max(1, round(plan.sample_rate * plan.train_rows)),
            noise_generator=noise,
            ignore_index=IGNORE_LABEL,
            fault=None if audit is None else audit.fault,
        )
        self.bk.probe(input_shape)
        self.sampling = np.random.default_rng(
            secrets.randbits(128) if audit is None else audit.seed
        )
        self.optimizer = _base_optimizer(self.bk.params, optimizer, learning_rate, audit)
        self.engine = PrivacyEngine(accountant="prv" if plan.accountant == "prv" else "rdp")
        self.plan = plan
        self.model = module

    def backward(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One physical batch: its clipped per-sample gradients join the sum."""
        self.bk.loss(self.model(x), y).backward()

    def finish_step(self) -> None:
        """Noise the logical batch's clipped sum, step, and count the step."""
        self.bk.add_noise()
        self.optimizer.step()
        self.engine.accountant.step(
            noise_multiplier=self.plan.noise_multiplier, sample_rate=self.plan.sample_rate
        )

    @property
    def inner(self) -> nn.Module:
        return self.model


def _guard_non_finite(model: Any, optimizer: Any, mode: str) -> None:
    """Zero a sample's contribution where its gradient is not finite, before clipping.

    A non-finite per-sample gradient would otherwise turn the noisy sum into NaN: a model
    wrecked or not depending on one row, which no accountant counts. Zeroing is applied to
    every sample and depends on that sample alone, so clipping still bounds it by C and
    the step is the planned Gaussian mechanism. Ghost mode: a NaN or infinite norm gets a
    clipping coefficient of 0 (activations are finite by ``FiniteSequential``, so the
    second backward pass of that sample is exactly zero). Hooks mode: non-finite
    per-sample gradient entries become 0 before the norms are taken.
    """
    if mode == "ghost":
        coefficient = model.get_clipping_coef

        def finite_coefficient() -> torch.Tensor:
            return torch.nan_to_num(coefficient(), nan=0.0, posinf=0.0, neginf=0.0)

        model.get_clipping_coef = finite_coefficient
        return
    clip_and_accumulate = optimizer.clip_and_accumulate

    def finite_clip_and_accumulate() -> None:
        for p in optimizer.params:
            samples = p.grad_sample
            for g in samples if isinstance(samples, list) else [samples]:
                if g is not None:
                    torch.nan_to_num_(g, nan=0.0, posinf=0.0, neginf=0.0)
        clip_and_accumulate()

    optimizer.clip_and_accumulate = finite_clip_and_accumulate


def _inject_fault(model: Any, optimizer: Any, mode: str, fault: str) -> None:
    """Break the step on purpose (self-audit tests only, through ``AuditHooks``)."""
    if fault == "no_noise":
        optimizer.noise_multiplier = 0.0
    elif fault == "half_noise":
        optimizer.noise_multiplier = optimizer.noise_multiplier / 2
    elif mode == "ghost":  # skip_clipping: every per-sample coefficient 1
        coefficient = model.get_clipping_coef
        model.get_clipping_coef = lambda: torch.ones_like(coefficient())
    else:
        clip_and_accumulate = optimizer.clip_and_accumulate

        def unclipped() -> None:
            bound = optimizer.max_grad_norm
            optimizer.max_grad_norm = math.inf
            try:
                clip_and_accumulate()
            finally:
                optimizer.max_grad_norm = bound

        optimizer.clip_and_accumulate = unclipped


def train_private(
    *,
    model: nn.Module,
    features: np.ndarray,
    labels: np.ndarray,
    plan: RunPlan,
    learning_rate: float,
    max_physical_batch_size: int = 256,
    split_key: bytes | None = None,
    progress: ProgressFn | None = None,
    optimizer: str = "adam",
    lr_schedule: str = "constant",
    grad_sample_mode: str = "auto",
    num_threads: int | None = 1,
    progress_interval_s: float = 0.5,
    cancel: threading.Event | None = None,
    audit: AuditHooks | None = None,
) -> TrainingResult:
    """Train ``model`` with DP-SGD as planned, then release held-out metrics.

    Args:
        model: an untrained module from ``build_model``; it is copied, never modified.
        features, labels: all ``plan.rows`` preprocessed rows (float features, int labels).
        plan: from ``plan_run`` for this dataset; its records are what gets spent.
        learning_rate: see ``privacy.specs.template_defaults``.
        max_physical_batch_size: memory bound; Opacus's ``BatchMemoryManager`` splits
            logical Poisson batches into physical ones of at most this size (in hooks
            mode further capped, see ``HOOKS_BUFFER_BYTES``).
        split_key: the secret of the held-out coins (``holdout_mask``); random if None.
        progress: called as ``progress(step, steps, epsilon_so_far)`` at most every
            ``progress_interval_s`` seconds and after the last step.
        optimizer: ``adam`` or ``sgd`` (momentum 0.9).
        lr_schedule: ``constant`` or ``cosine`` (``LR_SCHEDULES``).
        grad_sample_mode: ``auto`` (book-keeping clipping, falling back to ghost and then
            hooks when the model's layers need it), ``bk``, ``ghost`` or ``hooks``.
        num_threads: torch threads during training (1 on shared cores).
        cancel: when set (from another thread), training stops at the next physical batch
            with ``TrainingCancelled``.
        audit: the self-audit's settings (``AuditHooks``); None for every sold run.

    Raises:
        PlanError: the arguments do not match the plan (checked before any training).
        TrainingCancelled: ``cancel`` was set.
        TrainingError: training failed; a fixed message, the plan's records as spent.
    """
    if optimizer not in OPTIMIZERS:
        raise PlanError(
            f"optimizer must be one of {list(OPTIMIZERS)}", details={"field": "optimizer"}
        )
    if audit is not None and (optimizer != "sgd" or audit.fault not in (None, *AUDIT_FAULTS)):
        raise PlanError("an audit trains with sgd and a known fault", details={})
    if lr_schedule not in LR_SCHEDULES:
        raise PlanError(
            f"lr_schedule must be one of {list(LR_SCHEDULES)}", details={"field": "lr_schedule"}
        )
    if grad_sample_mode not in GRAD_SAMPLE_MODES:
        raise PlanError(f"grad_sample_mode must be one of {list(GRAD_SAMPLE_MODES)}", details={})
    if not (learning_rate > 0 and math.isfinite(learning_rate)):
        raise PlanError("learning_rate must be positive", details={"field": "learning_rate"})
    x_all, y_all = _as_tensors(features, labels, plan)
    _check_labels(model, x_all, y_all)

    previous_threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    try:
        return _train(
            model=model,
            x_all=x_all,
            y_all=y_all,
            plan=plan,
            learning_rate=learning_rate,
            max_physical_batch_size=max_physical_batch_size,
            split_key=split_key if split_key is not None else secrets.token_bytes(32),
            progress=progress,
            optimizer=optimizer,
            lr_schedule=_Schedule(lr_schedule, learning_rate, plan.steps),
            grad_sample_mode=grad_sample_mode,
            progress_interval_s=progress_interval_s,
            cancel=cancel,
            audit=audit,
        )
    except (PlanError, TrainingCancelled):
        raise
    except Exception as exc:
        # One outcome for every failure once training has started: which step (or which
        # row) failed must not show, and the whole plan is charged.
        raise TrainingError("training failed", details={}, records_spent=plan.records()) from exc
    finally:
        torch.set_num_threads(previous_threads)


def _as_tensors(
    features: np.ndarray, labels: np.ndarray, plan: RunPlan
) -> tuple[torch.Tensor, torch.Tensor]:
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.shape[0] != plan.rows or labels.shape != (plan.rows,):
        raise PlanError(
            f"the plan is for {plan.rows} rows; features and labels must have that many",
            details={"field": "rows"},
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise PlanError("labels must be integer class indices", details={"field": "labels"})
    x_rows = np.ascontiguousarray(features, dtype=np.float32)
    with warnings.catch_warnings():
        # A worker's cached table is read-only (``privacy.prepared``); training only reads it.
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        x = torch.from_numpy(x_rows)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def _check_labels(model: nn.Module, x_all: torch.Tensor, y_all: torch.Tensor) -> None:
    """Labels must be class indices of the model's output (a caller's precondition: the
    marketplace encodes labels from declared categories, so this never fires there).

    The output width comes from a probe on zeros of the public input shape, never a row.
    """
    probe = copy.deepcopy(model).eval()
    with torch.no_grad():
        out = probe(torch.zeros((1, *x_all.shape[1:]), dtype=x_all.dtype))
    if out.dim() != 2:
        raise PlanError("the model must output one logit vector per row", details={})
    width = int(out.shape[1])
    if len(y_all) and (int(y_all.min()) < 0 or int(y_all.max()) >= width):
        # No values in the message: only the rule.
        raise PlanError(
            f"labels must be class indices in [0, {width})", details={"field": "labels"}
        )


def _loader(
    x_all: torch.Tensor, y_train: torch.Tensor, plan: RunPlan, seed: int | None = None
) -> DPDataLoader:
    """Poisson sampling over all rows at the planned rate, for exactly the planned steps
    per epoch (held-out rows are sampled too and weigh zero); ``seed`` for audits only."""
    sampling = torch.Generator().manual_seed(secrets.randbits(63) if seed is None else seed)
    loader = DPDataLoader(
        TensorDataset(x_all, y_train), sample_rate=plan.sample_rate, generator=sampling
    )
    # int(1 / q) can round below the planned count; the plan's figure is the contract.
    loader.batch_sampler.steps = plan.steps_per_epoch
    return loader


def _train(
    *,
    model: nn.Module,
    x_all: torch.Tensor,
    y_all: torch.Tensor,
    plan: RunPlan,
    learning_rate: float,
    max_physical_batch_size: int,
    split_key: bytes,
    progress: ProgressFn | None,
    optimizer: str,
    lr_schedule: _Schedule,
    grad_sample_mode: str,
    progress_interval_s: float,
    cancel: threading.Event | None,
    audit: AuditHooks | None = None,
) -> TrainingResult:
    started = time.perf_counter()
    held_out = torch.from_numpy(
        holdout_mask(
            x_all.numpy(),
            y_all.numpy(),
            fraction=plan.holdout_rows / plan.rows if plan.metrics_noise_multiplier else 0.0,
            key=split_key,
        )
    )
    y_train = torch.where(held_out, torch.full_like(y_all, IGNORE_LABEL), y_all)
    dp = _privatize(
        model=model,
        plan=plan,
        learning_rate=learning_rate,
        optimizer=optimizer,
        loader=lambda: _loader(x_all, y_train, plan, None if audit is None else audit.seed),
        grad_sample_mode=grad_sample_mode,
        input_shape=tuple(x_all.shape[1:]),
        audit=audit,
    )
    if isinstance(dp, _BKStep):
        steps = _run_bk_epochs(
            dp, x_all, y_train, plan, max_physical_batch_size, progress, progress_interval_s,
            cancel, lr_schedule,
        )  # fmt: skip
    else:
        if dp.mode == "hooks":
            max_physical_batch_size = min(max_physical_batch_size, _hooks_batch_cap(model))
        with warnings.catch_warnings():
            # Opacus's per-sample hooks trigger this torch notice on every step when the
            # input needs no gradient (it never does here); it says nothing about privacy.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            steps = _run_epochs(
                dp, plan, max_physical_batch_size, progress, progress_interval_s, cancel,
                lr_schedule,
            )  # fmt: skip
    if steps != plan.steps:  # pragma: no cover - the sampler yields exactly the planned steps
        raise RuntimeError("the run did not take its planned steps")
    trained_s = time.perf_counter() - started
    epsilon_training = _opacus_epsilon(dp.engine, plan.delta)

    inner = dp.inner
    inner.eval()
    state = {k: v.detach().clone() for k, v in inner.state_dict().items()}
    eval_started = time.perf_counter()
    records: list[MechanismRecord] = [plan.training_record(steps)]
    metrics: dict[str, float] = {}
    if plan.metrics_noise_multiplier is not None:
        metrics, metric_records = _release_metrics(
            inner, x_all[held_out], y_all[held_out], plan=plan
        )
        records += metric_records
    eval_s = time.perf_counter() - eval_started
    return TrainingResult(
        state_dict=state,
        records=records,
        metrics=metrics,
        steps=steps,
        epsilon=compose_epsilon(records, delta=plan.delta, accountant=plan.accountant),
        epsilon_training=epsilon_training,
        grad_sample_mode=dp.mode,
        timings={"train_s": trained_s, "eval_s": eval_s},
    )


def _hooks_batch_cap(model: nn.Module) -> int:
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return max(1, int(HOOKS_BUFFER_BYTES // (4 * max(params, 1))))


class _Schedule:
    """The learning rate of each logical step (``LR_SCHEDULES``), set on the optimizer."""

    def __init__(self, kind: str, base: float, steps: int) -> None:
        self.kind, self.base, self.steps = kind, base, steps

    def rate(self, step: int) -> float:
        """The rate of the ``step``-th logical step (0-based)."""
        if self.kind == "constant" or self.steps <= 1:
            return self.base
        return self.base * 0.5 * (1.0 + math.cos(math.pi * step / self.steps))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> None:
        if self.kind != "constant":
            for group in optimizer.param_groups:
                group["lr"] = self.rate(step)


def _run_epochs(
    dp: _PrivateStep,
    plan: RunPlan,
    max_physical_batch_size: int,
    progress: ProgressFn | None,
    progress_interval_s: float,
    cancel: threading.Event | None,
    schedule: _Schedule,
) -> int:
    """The DP-SGD loop; returns the logical steps taken (always the planned number)."""
    steps = 0
    report = _Progress(plan, progress, progress_interval_s)
    for _ in range(plan.epochs):
        with BatchMemoryManager(
            data_loader=dp.data_loader,
            max_physical_batch_size=max_physical_batch_size,
            optimizer=dp.optimizer,
        ) as physical:
            for x, y in physical:
                _check_cancel(cancel)
                if not dp.step(x, y):
                    continue
                steps += 1
                schedule.apply(dp.optimizer, steps)
                report(steps)
    return steps


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise TrainingCancelled("training was cancelled", details={})


class _Progress:
    """Calls ``progress(step, steps, epsilon_so_far)`` at most every interval and after
    the last step."""

    def __init__(self, plan: RunPlan, progress: ProgressFn | None, interval_s: float) -> None:
        self.plan = plan
        self.progress = progress
        self.interval_s = interval_s
        self.interval = interval_s
        self.last_report = -math.inf

    def __call__(self, steps: int) -> None:
        plan = self.plan
        now = time.perf_counter()
        if self.progress and (steps == plan.steps or now - self.last_report >= self.interval):
            spent = compose_epsilon(
                [plan.training_record(steps)], delta=plan.delta, accountant=plan.accountant
            )
            self.progress(steps, plan.steps, spent)
            # PRV answers take up to seconds: unless every step was asked for
            # (interval 0), never spend over ~10% of the run on reports.
            if self.interval_s > 0:
                cost = time.perf_counter() - now
                self.interval = max(self.interval_s, 10 * cost)
            self.last_report = now


def _run_bk_epochs(
    dp: _BKStep,
    x_all: torch.Tensor,
    y_train: torch.Tensor,
    plan: RunPlan,
    max_physical_batch_size: int,
    progress: ProgressFn | None,
    progress_interval_s: float,
    cancel: threading.Event | None,
    schedule: _Schedule,
) -> int:
    """The BK loop: each logical Poisson batch (possibly empty: still a step) is split
    into physical batches whose clipped sums accumulate; then one noise draw and a step."""
    steps = 0
    report = _Progress(plan, progress, progress_interval_s)
    chunk = max(1, max_physical_batch_size, BK_BUFFER_BYTES // dp.bk.bytes_per_row)
    for _ in range(plan.epochs):
        for indices in PoissonSampler(
            len(y_train), plan.sample_rate, plan.steps_per_epoch, dp.sampling
        ):
            _check_cancel(cancel)
            dp.bk.zero_grad()
            rows = torch.from_numpy(indices)
            for start in range(0, len(rows), chunk):
                if start:
                    _check_cancel(cancel)
                part = rows[start : start + chunk]
                dp.backward(x_all.index_select(0, part), y_train.index_select(0, part))
            dp.finish_step()
            steps += 1
            schedule.apply(dp.optimizer, steps)
            report(steps)
    return steps


def _opacus_epsilon(engine: PrivacyEngine, delta: float) -> float:
    """The steps Opacus's own accountant counted (its history), composed on the ledger's
    RDP order grid. The curves are the ones ``privacy.accounting`` already computed for
    this run's progress reports (Opacus's ``compute_rdp``, cached): asking Opacus to
    recompute them cost 90-270 ms per run, a fixed cost larger than short runs' training."""
    accountant = engine.accountant
    if accountant.mechanism() == "rdp":
        records: list[MechanismRecord] = [
            {
                "mechanism": "subsampled_gaussian",
                "noise_multiplier": float(noise),
                "sample_rate": float(rate),
                "steps": int(steps),
            }
            for noise, rate, steps in accountant.history
        ]
        return compose_epsilon(records, delta=delta, accountant="rdp") if records else 0.0
    return float(accountant.get_epsilon(delta))


def _privatize(
    *,
    model: nn.Module,
    plan: RunPlan,
    learning_rate: float,
    optimizer: str,
    loader: Callable[[], DataLoader],
    grad_sample_mode: str,
    input_shape: tuple[int, ...],
    audit: AuditHooks | None = None,
) -> _PrivateStep | _BKStep:
    """Book-keeping clipping where every layer allows it, else ghost clipping, else
    per-sample hooks (decided by the model's layers alone, never by the data)."""
    modes = ["bk", "ghost", "hooks"] if grad_sample_mode == "auto" else [grad_sample_mode]
    failure: Exception | None = None
    for mode in modes:
        try:
            if mode == "bk":
                return _BKStep(
                    module=copy.deepcopy(model).train(),
                    plan=plan,
                    learning_rate=learning_rate,
                    optimizer=optimizer,
                    input_shape=input_shape,
                    audit=audit,
                )
            return _PrivateStep(
                module=copy.deepcopy(model).train(),
                plan=plan,
                learning_rate=learning_rate,
                optimizer=optimizer,
                loader=loader(),
                mode=mode,
                audit=audit,
            )
        except (NotImplementedError, ValueError) as exc:
            failure = exc
    raise TrainingError(
        f"Opacus cannot train this model: {failure}", details={"modes": modes}
    ) from failure


def _release_metrics(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, *, plan: RunPlan
) -> tuple[dict[str, float], list[MechanismRecord]]:
    """Noisy accuracy, loss and held-out count, each through ``privacy.release``.

    The exact count of correct predictions, the exact sum of clipped losses and the exact
    number of held-out rows never leave this function. Accuracy and loss are the noisy
    sums over the noisy count (post-processing).
    """
    assert plan.metrics_noise_multiplier is not None
    z = plan.metrics_noise_multiplier
    correct = 0.0
    loss_sum = 0.0
    with torch.no_grad():
        for start in range(0, len(y), 1024):
            logits = module(x[start : start + 1024])
            target = y[start : start + 1024]
            correct += float((logits.argmax(dim=1) == target).sum())
            losses = nn.functional.cross_entropy(logits, target, reduction="none")
            losses = torch.nan_to_num(losses, nan=plan.loss_bound, posinf=plan.loss_bound)
            loss_sum += float(losses.clamp(0.0, plan.loss_bound).sum())
    accuracy = gaussian_release(correct, sensitivity=1.0, noise_multiplier=z)
    loss = gaussian_release(loss_sum, sensitivity=plan.loss_bound, noise_multiplier=z)
    count = gaussian_release(float(len(y)), sensitivity=1.0, noise_multiplier=z)
    # The denominator is the noisy count, floored at the public expectation's tenth so a
    # small noisy count cannot blow the ratios up.
    m = max(count.value, plan.holdout_rows / 10, 1.0)
    metrics = {
        "accuracy": min(1.0, max(0.0, accuracy.value / m)),
        "loss": min(plan.loss_bound, max(0.0, loss.value / m)),
        "accuracy_noise_std": z / max(plan.holdout_rows, 1),
        "holdout_rows": float(max(0.0, round(count.value))),
        "holdout_rows_expected": float(plan.holdout_rows),
    }
    return metrics, [accuracy.record, loss.record, count.record]
