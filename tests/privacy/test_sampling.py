"""The geometric-gap Poisson sampler draws the same distribution as a Bernoulli(q) mask.

Statistical checks with fixed seeds (no timing): batch sizes against Binomial(rows, q) by
a chi-square test, each row's inclusion count against Binomial(draws, q), and pairs of
neighbouring rows against q^2 (independence). Thresholds are at p = 1e-4, so a correct
sampler fails one of them about once in thousands of seeds, and these seeds are fixed.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from privacy.sampling import PoissonSampler, poisson_indices

ROWS, RATE, DRAWS = 400, 0.05, 4000


def draw(seed: int, chunk: int | None = None) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = np.zeros((DRAWS, ROWS), dtype=bool)
    for k in range(DRAWS):
        idx = poisson_indices(ROWS, RATE, rng, chunk=chunk)
        assert np.all(np.diff(idx) > 0) and (len(idx) == 0 or (idx[0] >= 0 and idx[-1] < ROWS))
        mask[k, idx] = True
    return mask


def chi_square_batch_sizes(sizes: np.ndarray) -> float:
    """p-value of the batch sizes against Binomial(ROWS, RATE), tail bins pooled so each
    expects at least 5."""
    lo, hi = stats.binom.ppf([0.001, 0.999], ROWS, RATE).astype(int)
    edges = np.arange(lo, hi + 2)
    observed = np.array(
        [np.sum(sizes < lo)] + [np.sum(sizes == k) for k in edges[:-1]] + [np.sum(sizes > hi)]
    )
    probs = np.concatenate(
        [
            [stats.binom.cdf(lo - 1, ROWS, RATE)],
            stats.binom.pmf(edges[:-1], ROWS, RATE),
            [stats.binom.sf(hi, ROWS, RATE)],
        ]
    )
    expected = probs * len(sizes)
    # Pool neighbouring bins until each expects >= 5.
    obs_pooled, exp_pooled, o, e = [], [], 0.0, 0.0
    for ob, ex in zip(observed, expected, strict=True):
        o, e = o + ob, e + ex
        if e >= 5:
            obs_pooled.append(o)
            exp_pooled.append(e)
            o, e = 0.0, 0.0
    exp_pooled[-1] += e
    obs_pooled[-1] += o
    stat = sum((a - b) ** 2 / b for a, b in zip(obs_pooled, exp_pooled, strict=True))
    return float(stats.chi2.sf(stat, len(obs_pooled) - 1))


@pytest.mark.parametrize("chunk", [None, 1, 3])
def test_batch_sizes_and_inclusions_match_bernoulli(chunk):
    mask = draw(seed=11, chunk=chunk)  # chunk 1 and 3: the path that draws more gaps
    sizes = mask.sum(1)
    assert chi_square_batch_sizes(sizes) > 1e-4
    # Each row: Binomial(DRAWS, RATE) inclusions; all within the two-sided 1e-4 / ROWS band.
    counts = mask.sum(0)
    lo, hi = stats.binom.ppf([0.5e-4 / ROWS, 1 - 0.5e-4 / ROWS], DRAWS, RATE)
    assert counts.min() >= lo and counts.max() <= hi
    # Jointly: sum of squared standardised counts is chi-square with ROWS degrees.
    z = (counts - DRAWS * RATE) / np.sqrt(DRAWS * RATE * (1 - RATE))
    assert stats.chi2.sf(float((z**2).sum()), ROWS) > 1e-4
    # Neighbours are independent: both in a batch with probability RATE^2.
    pairs = int((mask[:, :-1] & mask[:, 1:]).sum())
    n_pairs = DRAWS * (ROWS - 1)
    assert stats.binom.cdf(pairs, n_pairs, RATE**2) > 0.5e-4
    assert stats.binom.sf(pairs - 1, n_pairs, RATE**2) > 0.5e-4


def test_a_wrong_rate_is_detected():
    """The test above has power: a sampler at 0.055 instead of 0.05 fails it."""
    rng = np.random.default_rng(3)
    sizes = np.array([len(poisson_indices(ROWS, 0.055, rng)) for _ in range(DRAWS)])
    assert chi_square_batch_sizes(sizes) < 1e-4


def test_edges_and_the_epoch_iterator():
    rng = np.random.default_rng(0)
    assert poisson_indices(10, 1.0, rng).tolist() == list(range(10))
    assert poisson_indices(10, 0.0, rng).tolist() == []
    assert poisson_indices(0, 0.5, rng).tolist() == []
    sampler = PoissonSampler(1000, 1e-4, 50, rng)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 50
    assert sum(len(b) for b in batches) < 10  # mostly empty batches, each one a step
    assert all(b.dtype == np.int64 for b in batches)


def test_the_epoch_sampler_matches_bernoulli_per_step():
    """The epoch-at-once sampler: every step a Poisson sample of its own."""
    rng = np.random.default_rng(5)
    steps = 20
    mask = np.zeros((DRAWS, ROWS), dtype=bool)
    for epoch in range(DRAWS // steps):
        batches = list(PoissonSampler(ROWS, RATE, steps, rng))
        assert len(batches) == steps
        for s, idx in enumerate(batches):
            assert np.all(np.diff(idx) > 0) and (len(idx) == 0 or (idx[0] >= 0 and idx[-1] < ROWS))
            mask[epoch * steps + s, idx] = True
    assert chi_square_batch_sizes(mask.sum(1)) > 1e-4
    counts = mask.sum(0)
    z = (counts - DRAWS * RATE) / np.sqrt(DRAWS * RATE * (1 - RATE))
    assert stats.chi2.sf(float((z**2).sum()), ROWS) > 1e-4
    # Consecutive steps are independent: a row in both with probability RATE^2.
    both = int((mask[:-1] & mask[1:]).sum())
    n = (DRAWS - 1) * ROWS
    assert stats.binom.cdf(both, n, RATE**2) > 0.5e-4
    assert stats.binom.sf(both - 1, n, RATE**2) > 0.5e-4
