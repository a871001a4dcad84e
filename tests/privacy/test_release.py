"""Noisy releases: the records they produce and the noise they add."""

from __future__ import annotations

import numpy as np
import pytest

from privacy.accounting import compose_epsilon, normalize_record
from privacy.errors import AccountingError
from privacy.release import gaussian_noise_multiplier, gaussian_release, laplace_release


def test_gaussian_record_and_noise_scale():
    rng = np.random.default_rng(1)
    values = [
        gaussian_release(10.0, sensitivity=2.0, noise_multiplier=3.0, rng=rng) for _ in range(4000)
    ]
    record = values[0].record
    assert normalize_record(record) == record
    assert record == {"mechanism": "gaussian", "sigma": 6.0, "sensitivity": 2.0, "count": 1}
    noisy = np.array([v.value for v in values])
    assert noisy.mean() == pytest.approx(10.0, abs=0.5)
    assert noisy.std() == pytest.approx(6.0, rel=0.05)


def test_laplace_record_and_noise_scale():
    rng = np.random.default_rng(2)
    values = [laplace_release(0.0, sensitivity=1.0, epsilon=0.5, rng=rng) for _ in range(4000)]
    record = values[0].record
    assert record == {"mechanism": "laplace", "scale": 2.0, "sensitivity": 1.0, "count": 1}
    noisy = np.array([v.value for v in values])
    assert np.abs(noisy).mean() == pytest.approx(2.0, rel=0.06)  # E|Lap(b)| = b


def test_releases_use_fresh_entropy_by_default():
    a = gaussian_release(0.0, sensitivity=1.0, noise_multiplier=1.0)
    b = gaussian_release(0.0, sensitivity=1.0, noise_multiplier=1.0)
    assert a.value != b.value


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sensitivity": 0.0, "noise_multiplier": 1.0},
        {"sensitivity": 1.0, "noise_multiplier": -1.0},
        {"sensitivity": float("inf"), "noise_multiplier": 1.0},
    ],
)
def test_gaussian_rejects_bad_parameters(kwargs):
    with pytest.raises(AccountingError):
        gaussian_release(1.0, **kwargs)


def test_laplace_rejects_bad_epsilon():
    with pytest.raises(AccountingError):
        laplace_release(1.0, sensitivity=1.0, epsilon=0.0)


@pytest.mark.parametrize(("epsilon", "releases"), [(0.1, 2), (1.0, 1), (0.01, 2)])
def test_calibrated_noise_spends_at_most_epsilon(epsilon, releases):
    z = gaussian_noise_multiplier(epsilon=epsilon, delta=1e-5, releases=releases)
    record = {"mechanism": "gaussian", "sigma": z, "sensitivity": 1.0, "count": releases}
    spent = compose_epsilon([record], delta=1e-5)
    assert spent <= epsilon
    assert spent > 0.99 * epsilon
