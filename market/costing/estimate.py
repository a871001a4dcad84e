"""Predictions for quotes: run time from the work asked, power from the Green Algorithms model.

Run time::

    T = startup_seconds
        + steps x step_seconds
        + samples x epochs x (work_per_sample / reference_work_per_sample)
          x dp_overhead_factor / throughput_samples_per_s

The per-step term is DP-SGD's fixed cost of each step (Poisson batch, per-sample clipping,
noise, optimizer): on small models it dominates, and without it small runs were predicted
20x to 100,000x too short (bench/quote_accuracy.py, 2026-11-28).

``throughput_samples_per_s`` is what the worker class achieved, non-private, on the reference
workload of the benchmark at worker start (``calibrate_throughput``), whose work per sample is
``reference_work_per_sample`` (e.g. its forward+backward FLOPs). A spec with twice the work per
sample takes twice as long; DP-SGD multiplies by the clipping mode's measured overhead
(``costing.estimate.dp_overhead``). The caller supplies the work per sample (from the model
spec) and the workload: nothing here imports torch.

Power (Green Algorithms, Lannelongue et al., Adv. Sci. 2021)::

    P = cores x watts_per_core x cpu_utilisation + memory_GB x watts_per_GB
        + gpus x gpu_tdp_W x gpu_utilisation

The same formula serves the meter's fallback (with measured utilisation and peak memory) and
the quote (with the class's reserved memory and full use).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from market.costing.rapl import JOULES_PER_KWH
from market.costing.settings import WorkerClassSettings

BYTES_PER_GB = 1 << 30  # GB as memory is sold (GiB); Green Algorithms counts DIMM gigabytes


def green_algorithms_power_w(
    *,
    cores: int,
    watts_per_core: float,
    cpu_utilisation: float,
    memory_gb: float,
    watts_per_gb: float,
    gpus: int = 0,
    gpu_tdp_w: float = 0.0,
    gpu_utilisation: float = 0.0,
) -> float:
    """Average power draw in watts; utilisations are fractions 0..1 (clamped)."""
    cpu_use = min(max(cpu_utilisation, 0.0), 1.0)
    gpu_use = min(max(gpu_utilisation, 0.0), 1.0)
    return cores * watts_per_core * cpu_use + memory_gb * watts_per_gb + gpus * gpu_tdp_w * gpu_use


def estimate_seconds(
    *,
    samples: int,
    epochs: int,
    work_per_sample: float,
    dp_overhead_factor: float,
    throughput_samples_per_s: float,
    reference_work_per_sample: float | None = None,
    startup_seconds: float = 0.0,
    steps: int = 0,
    step_seconds: float = 0.0,
) -> float:
    """Predicted wall time of a training run, seconds (formula in the module docstring).

    ``reference_work_per_sample`` defaults to ``work_per_sample``: the throughput was then
    measured on this very workload.
    """
    if samples < 0 or epochs < 0:
        raise ValueError("samples and epochs must be >= 0")
    if work_per_sample <= 0 or throughput_samples_per_s <= 0 or dp_overhead_factor < 1:
        raise ValueError("work and throughput must be > 0 and the DP overhead >= 1")
    reference = work_per_sample if reference_work_per_sample is None else reference_work_per_sample
    if reference <= 0:
        raise ValueError("reference_work_per_sample must be > 0")
    relative_work = work_per_sample / reference
    if steps < 0 or step_seconds < 0:
        raise ValueError("steps and step_seconds must be >= 0")
    return (
        startup_seconds
        + steps * step_seconds
        + samples * epochs * relative_work * dp_overhead_factor / throughput_samples_per_s
    )


def calibrate_throughput(
    run_benchmark: Callable[[], int],
    *,
    warmup: int = 1,
    repeats: int = 3,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Samples per second of ``run_benchmark``, which trains on a fixed workload and returns
    how many samples it processed.

    Warm-up calls are not timed (allocator, caches, lazy initialisation); of the timed repeats
    the fastest is kept, the usual choice for micro-benchmarks since slower repeats measure
    interference from other processes, not the worker.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    for _ in range(warmup):
        run_benchmark()
    best = 0.0
    for _ in range(repeats):
        started = clock()
        samples = run_benchmark()
        elapsed = clock() - started
        if samples <= 0:
            raise ValueError("the benchmark must report the samples it processed")
        if elapsed <= 0:
            raise ValueError("the benchmark took no measurable time; give it more samples")
        best = max(best, samples / elapsed)
    return best


@dataclass(frozen=True, slots=True)
class RunEstimate:
    """What a quote predicts: the same physical fields a Measurement carries."""

    seconds: float
    avg_power_w: float
    method: Literal["estimate"] = "estimate"

    @property
    def energy_kwh(self) -> float:
        """IT energy (before PUE), kWh."""
        return self.avg_power_w * self.seconds / JOULES_PER_KWH

    def to_dict(self) -> dict[str, object]:
        return {
            "method": self.method,
            "seconds": self.seconds,
            "avg_power_w": self.avg_power_w,
            "energy_kwh": self.energy_kwh,
        }


def estimate_run(
    seconds: float,
    worker: WorkerClassSettings,
    *,
    memory_watts_per_gb: float,
    cpu_utilisation: float = 1.0,
    gpu_utilisation: float = 1.0,
) -> RunEstimate:
    """The quote's prediction for a run of ``seconds`` on ``worker``: full use, by default,
    of the cores and GPUs it holds and of the memory it reserves (Green Algorithms' defaults).
    """
    power = green_algorithms_power_w(
        cores=worker.cores,
        watts_per_core=worker.watts_per_core,
        cpu_utilisation=cpu_utilisation,
        memory_gb=worker.memory_gb,
        watts_per_gb=memory_watts_per_gb,
        gpus=worker.gpus,
        gpu_tdp_w=worker.gpu_tdp_w,
        gpu_utilisation=gpu_utilisation,
    )
    return RunEstimate(seconds=seconds, avg_power_w=power)
