"""Noisy releases: the only way a number computed from private rows leaves the library.

Each function takes the exact value, adds noise scaled to the value's *sensitivity*
and returns the noisy value together with the mechanism record the ledger composes.

Neighbouring relation: add/remove one row (as in Opacus's DP-SGD analysis). Under it:

- a **count** (e.g. correct predictions on a held-out split) changes by at most 1;
- a **sum of values clipped to [0, B]** (e.g. per-example losses) changes by at most B;
- a **mean over a public denominator m** is the sum divided by m after the noise, so its
  sensitivity is 1/m (or B/m). The held-out size m is derived from the dataset's row
  count, which the marketplace publishes with the listing, so dividing by it reveals
  nothing new. We release the noisy *sum* and divide afterwards (post-processing), which
  keeps the stated sensitivity independent of m.

The same bounds hold under replace-one for counts and clipped sums, so the records stay
valid if the market ever switches relation.

Randomness comes from the operating system (``numpy.random.default_rng()`` with fresh
entropy), never from a caller-provided seed: a known seed would let anyone subtract the
noise. Floating-point Laplace/Gaussian sampling is subject to Mironov's (2012) attack in
theory; Opacus's ``secure_mode`` cannot be used because ``torchcsprng`` does not build
against current torch, and this module shares that limitation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from privacy.errors import AccountingError
from privacy.records import GaussianRecord, LaplaceRecord


@dataclass(frozen=True)
class Release:
    """A noisy value and the mechanism record that paid for it."""

    value: float
    record: GaussianRecord | LaplaceRecord


def _check(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AccountingError(f"{name} must be a number", details={"field": name})
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise AccountingError(f"{name} must be positive and finite", details={"field": name})
    return value


def _rng(rng: np.random.Generator | None) -> np.random.Generator:
    # A fresh OS-seeded generator per release; the optional argument exists for tests
    # that check the noise distribution, never for production callers.
    return rng if rng is not None else np.random.default_rng()


def gaussian_release(
    value: float,
    *,
    sensitivity: float,
    noise_multiplier: float,
    rng: np.random.Generator | None = None,
) -> Release:
    """Add N(0, (noise_multiplier * sensitivity)^2) to ``value``.

    The record is ``{"mechanism": "gaussian", "sigma", "sensitivity", "count": 1}``.
    """
    sensitivity = _check("sensitivity", sensitivity)
    z = _check("noise_multiplier", noise_multiplier)
    sigma = z * sensitivity
    noisy = float(value) + float(_rng(rng).normal(0.0, sigma))
    return Release(
        noisy,
        GaussianRecord(mechanism="gaussian", sigma=sigma, sensitivity=sensitivity, count=1),
    )


def laplace_release(
    value: float,
    *,
    sensitivity: float,
    epsilon: float,
    rng: np.random.Generator | None = None,
) -> Release:
    """Add Laplace(sensitivity / epsilon) noise: (epsilon, 0)-DP on its own.

    The record is ``{"mechanism": "laplace", "scale", "sensitivity", "count": 1}``; the
    ledger composes it through its RDP curve (Mironov 2017, Prop. 6), which is much
    tighter than adding ``epsilon`` when releases accumulate.
    """
    sensitivity = _check("sensitivity", sensitivity)
    epsilon = _check("epsilon", epsilon)
    scale = sensitivity / epsilon
    noisy = float(value) + float(_rng(rng).laplace(0.0, scale))
    return Release(
        noisy,
        LaplaceRecord(mechanism="laplace", scale=scale, sensitivity=sensitivity, count=1),
    )


def gaussian_noise_multiplier(
    *, epsilon: float, delta: float, releases: int = 1, accountant: str = "rdp"
) -> float:
    """Smallest noise multiplier z such that ``releases`` Gaussian releases at z are
    (epsilon, delta)-DP together under the chosen accountant (bisection, 0.1% tolerance).
    """
    from privacy.accounting import compose_epsilon

    epsilon = _check("epsilon", epsilon)
    if releases < 1:
        raise AccountingError("releases must be at least 1", details={"field": "releases"})

    def eps_at(z: float) -> float:
        record = GaussianRecord(mechanism="gaussian", sigma=z, sensitivity=1.0, count=releases)
        return compose_epsilon([record], delta=delta, accountant=accountant)

    lo, hi = 1e-3, 1.0
    while eps_at(hi) > epsilon:
        lo, hi = hi, hi * 2
        if hi > 1e7:
            raise AccountingError("epsilon is too small to calibrate", details={"field": "epsilon"})
    while (hi - lo) / hi > 1e-3:
        mid = math.sqrt(lo * hi)
        if eps_at(mid) > epsilon:
            lo = mid
        else:
            hi = mid
    return hi
