"""Poisson sampling in O(expected batch): geometric gaps instead of a Bernoulli mask.

DP-SGD's amplification by subsampling assumes that every step includes each row
independently with probability ``q`` (Poisson sampling). A mask of ``rows`` Bernoulli
draws costs O(rows) per step; on the seed MLP it measured 13-31% of a step. The same
distribution comes from the gaps between chosen rows: in a sequence of independent
Bernoulli(q) trials, the distance from one success to the next is Geometric(q) on
{1, 2, ...}, independently of everything before. So the chosen rows of one step are the
partial sums ``G_1 - 1, G_1 + G_2 - 1, ...`` that fall below ``rows``: exactly the set a
Bernoulli(q) mask would choose, drawn in O(rows * q) work. ``tests/privacy/test_sampling.py``
checks batch sizes and per-row inclusion frequencies against Binomial bounds.

Randomness comes from the generator the caller passes: OS entropy for a sold run,
a fixed seed only for the self-audit (``privacy.training``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

__all__ = ["PoissonSampler", "poisson_indices"]


def poisson_indices(
    rows: int, sample_rate: float, rng: np.random.Generator, *, chunk: int | None = None
) -> np.ndarray:
    """The sorted row indices of one Poisson sample: each of ``rows`` independently with
    probability ``sample_rate``, via geometric gaps. Possibly empty.

    ``chunk`` is how many gaps are drawn at a time (by default enough to pass the end
    almost always, mean + 6 sd); it changes the work, never the distribution."""
    if rows <= 0 or sample_rate <= 0:
        return np.empty(0, dtype=np.int64)
    if sample_rate >= 1:
        return np.arange(rows, dtype=np.int64)
    expected = rows * sample_rate
    if chunk is None:
        chunk = int(expected + 6 * math.sqrt(expected) + 16)
    positions = np.cumsum(rng.geometric(sample_rate, size=chunk)) - 1
    parts = [positions]
    while positions[-1] < rows:
        positions = positions[-1] + np.cumsum(rng.geometric(sample_rate, size=chunk))
        parts.append(positions)
    chosen = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return chosen[: int(np.searchsorted(chosen, rows))].astype(np.int64, copy=False)


class PoissonSampler:
    """``steps`` Poisson samples of ``range(rows)`` at rate ``sample_rate`` (one epoch).

    The epoch is drawn at once: step ``s``, row ``r`` is position ``s * rows + r`` of one
    stream of ``steps * rows`` independent Bernoulli(q) trials, whose chosen positions are
    geometric gaps as in ``poisson_indices``. Every (step, row) pair is still included
    independently with probability q, so each step is the same Poisson sample as before,
    for a handful of array operations per epoch instead of per step."""

    def __init__(self, rows: int, sample_rate: float, steps: int, rng: np.random.Generator):
        self.rows = rows
        self.sample_rate = sample_rate
        self.steps = steps
        self.rng = rng

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[np.ndarray]:
        positions = poisson_indices(self.rows * self.steps, self.sample_rate, self.rng)
        bounds = np.searchsorted(positions, np.arange(1, self.steps) * self.rows)
        for step, chosen in enumerate(np.split(positions, bounds)):
            yield chosen - step * self.rows
