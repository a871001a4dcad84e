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
the quote. A calibrated quote (``WorkerFit``) takes the worker's own measurements instead:

    T = startup_s[family] + steps x (step_s[family] + batch x MACs x sample_mac_s[family])
        + steps x batch x sample_s + rows x row_s + epochs x epoch_s

fitted at worker start from real DP-SGD runs on synthetic data timed by the run meter itself
(``market.trading.calibration``), and power from that same meter: the Green Algorithms formula
with the calibration's measured CPU utilisation and peak memory where the meter estimates, the
calibration's measured average power where it reads RAPL or NVML. The fit's relative residuals
give the quote's expected error. Without a calibration (no worker of the class has started)
the configured constants above are used, and the quote says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

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


#: Model families a worker calibrates separately: their fixed and per-step costs differ.
FAMILIES: tuple[str, ...] = ("linear", "mlp", "cnn")


@dataclass(frozen=True, slots=True)
class FamilyFit:
    """One family's fitted run time: a fixed part per run (Opacus set-up, the noisy metric
    release), a fixed part per step (sampling, clipping, noise, optimizer), a part per sample
    (loading and collating a row: ``sample_s``, the same for every family) and per sample and
    multiply-accumulate of the model (forward and backward work), a part per row of the
    dataset (the held-out coins and the evaluation pass: ``row_s``, shared too) and per epoch
    (a new sampler and batch manager: ``epoch_s``, shared)."""

    startup_s: float
    step_s: float
    sample_mac_s: float
    sample_s: float = 0.0
    row_s: float = 0.0
    epoch_s: float = 0.0

    def seconds(
        self, *, steps: int, batch: float, macs: float, rows: int = 0, epochs: int = 0
    ) -> float:
        per_step = self.step_s + batch * (self.sample_s + macs * self.sample_mac_s)
        return self.startup_s + steps * per_step + rows * self.row_s + epochs * self.epoch_s

    def to_dict(self) -> dict[str, float]:
        return {
            "startup_s": self.startup_s,
            "step_s": self.step_s,
            "sample_mac_s": self.sample_mac_s,
            "sample_s": self.sample_s,
            "row_s": self.row_s,
            "epoch_s": self.epoch_s,
        }


@dataclass(frozen=True, slots=True)
class CalibrationPoint:
    """One timed calibration run: its shape and what the run meter measured."""

    family: str
    steps: int
    batch: float
    macs: float
    seconds: float
    rows: int = 0
    epochs: int = 0
    cpu_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "steps": self.steps,
            "batch": self.batch,
            "macs": self.macs,
            "rows": self.rows,
            "epochs": self.epochs,
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
        }


def fit_families(points: Sequence[CalibrationPoint], *, cpu: bool = False) -> dict[str, FamilyFit]:
    """One least-squares fit of every family at once: per family a start-up, a per-step and
    a per-sample-MAC coefficient; shared by all, a per-sample and a per-row one. Rows are
    divided by the measured time (relative error: a 0.1 s run counts as much as a 10 s one)
    and coefficients are kept >= 0 (NNLS). With ``cpu``, the CPU seconds the meter measured
    are fitted instead of the wall time."""
    import numpy as np
    from scipy.optimize import nnls

    names = sorted({p.family for p in points})
    for name in names:
        if sum(1 for p in points if p.family == name) < 3:
            raise ValueError(f"family {name!r} needs at least three calibration runs")
    width = 3 * len(names) + 3
    rows = np.zeros((len(points), width))
    for i, p in enumerate(points):
        k = 3 * names.index(p.family)
        rows[i, k : k + 3] = (1.0, p.steps, p.steps * p.batch * p.macs)
        rows[i, -3:] = (p.steps * p.batch, p.rows, p.epochs)
    times = np.array([p.cpu_seconds if cpu else p.seconds for p in points])
    if (times <= 0).any():
        raise ValueError("calibration runs must take measurable time")
    scale = rows.max(axis=0)
    scale[scale == 0] = 1.0
    solution, _ = nnls(rows / scale / times[:, None], np.ones(len(points)))
    values = [float(v) for v in solution / scale]
    sample_s, row_s, epoch_s = values[-3], values[-2], values[-1]
    return {
        name: FamilyFit(
            startup_s=values[3 * i],
            step_s=values[3 * i + 1],
            sample_mac_s=values[3 * i + 2],
            sample_s=sample_s,
            row_s=row_s,
            epoch_s=epoch_s,
        )
        for i, name in enumerate(names)
    }


@dataclass(frozen=True, slots=True)
class WorkerFit:
    """A worker class's own calibration: per-family time fits, the meter's power figures,
    and the expected relative error of an estimate (from the fit's residuals)."""

    families: Mapping[str, FamilyFit]
    relative_error: float
    method: str
    avg_power_w: float
    cpu_utilisation: float
    peak_memory_gb: float
    points: tuple[CalibrationPoint, ...] = field(default=())
    host: str = ""
    measured_at: str = ""
    cpu_families: Mapping[str, FamilyFit] = field(default_factory=dict)
    cpu_relative_error: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "families": {name: fit.to_dict() for name, fit in self.families.items()},
            "relative_error": self.relative_error,
            "method": self.method,
            "avg_power_w": self.avg_power_w,
            "cpu_utilisation": self.cpu_utilisation,
            "peak_memory_gb": self.peak_memory_gb,
            "points": [p.to_dict() for p in self.points],
            "host": self.host,
            "measured_at": self.measured_at,
            "cpu_families": {name: fit.to_dict() for name, fit in self.cpu_families.items()},
            "cpu_relative_error": self.cpu_relative_error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerFit:
        return cls(
            families={str(name): _family(f) for name, f in data["families"].items()},
            relative_error=float(data["relative_error"]),
            method=str(data["method"]),
            avg_power_w=float(data["avg_power_w"]),
            cpu_utilisation=float(data["cpu_utilisation"]),
            peak_memory_gb=float(data["peak_memory_gb"]),
            points=tuple(
                CalibrationPoint(
                    family=str(p["family"]),
                    steps=int(p["steps"]),
                    batch=float(p["batch"]),
                    macs=float(p["macs"]),
                    seconds=float(p["seconds"]),
                    rows=int(p.get("rows", 0)),
                    epochs=int(p.get("epochs", 0)),
                    cpu_seconds=float(p.get("cpu_seconds", 0.0)),
                )
                for p in data.get("points", [])
            ),
            host=str(data.get("host", "")),
            measured_at=str(data.get("measured_at", "")),
            cpu_families={
                str(name): _family(f) for name, f in data.get("cpu_families", {}).items()
            },
            cpu_relative_error=None
            if data.get("cpu_relative_error") is None
            else float(data["cpu_relative_error"]),
        )


def _family(f: Mapping[str, Any]) -> FamilyFit:
    return FamilyFit(
        startup_s=float(f["startup_s"]),
        step_s=float(f["step_s"]),
        sample_mac_s=float(f["sample_mac_s"]),
        sample_s=float(f.get("sample_s", 0.0)),
        row_s=float(f.get("row_s", 0.0)),
        epoch_s=float(f.get("epoch_s", 0.0)),
    )


def fit_worker(
    points: Sequence[CalibrationPoint],
    *,
    method: str,
    avg_power_w: float,
    cpu_utilisation: float,
    peak_memory_gb: float,
    min_relative_error: float,
    host: str = "",
    measured_at: str = "",
) -> WorkerFit:
    """Fit every family present in ``points``; the expected error is twice the root mean
    square of the relative residuals over all points (about a 95% band if they were normal),
    and never below ``min_relative_error``: a few runs on a machine shared with other work
    cannot promise better."""
    families = fit_families(points)
    with_cpu = bool(points) and all(p.cpu_seconds > 0 for p in points)
    cpu_families = fit_families(points, cpu=True) if with_cpu else {}
    return WorkerFit(
        families=families,
        relative_error=_band(families, points, min_relative_error, cpu=False),
        method=method,
        avg_power_w=avg_power_w,
        cpu_utilisation=cpu_utilisation,
        peak_memory_gb=peak_memory_gb,
        points=tuple(points),
        host=host,
        measured_at=measured_at,
        cpu_families=cpu_families,
        cpu_relative_error=_band(cpu_families, points, min_relative_error, cpu=True)
        if with_cpu
        else None,
    )


def _band(
    families: Mapping[str, FamilyFit],
    points: Sequence[CalibrationPoint],
    floor: float,
    *,
    cpu: bool,
) -> float:
    """Twice the RMS relative residual of a fit over its points, at least ``floor``."""
    residuals: list[float] = []
    for p in points:
        predicted = families[p.family].seconds(
            steps=p.steps, batch=p.batch, macs=p.macs, rows=p.rows, epochs=p.epochs
        )
        measured = p.cpu_seconds if cpu else p.seconds
        residuals.append((measured - predicted) / predicted if predicted > 0 else 1.0)
    rms = math.sqrt(sum(r * r for r in residuals) / len(residuals)) if residuals else 1.0
    return max(2 * rms, floor)


def calibrated_run(
    fit: WorkerFit,
    worker: WorkerClassSettings,
    *,
    family: str,
    steps: int,
    batch: float,
    macs: float,
    rows: int,
    memory_watts_per_gb: float,
    epochs: int = 0,
) -> RunEstimate:
    """The quote's prediction from the class's own calibration (``fit`` must hold
    ``family``). Power is what the run meter will measure: where it estimates, the Green
    Algorithms formula with the calibrated CPU utilisation and peak memory (no GPU term: the
    meter never claims GPU watts it did not read); otherwise the calibration's measured
    average power by that meter.

    Where the meter estimates, it charges the CPU seconds the process used, and those are
    fitted too (``cpu_families``): the CPU term is then the predicted CPU seconds x W per
    core, which does not depend on how busy the machine is with other work (wall time does).
    """

    def predict(f: FamilyFit) -> float:
        return f.seconds(steps=steps, batch=batch, macs=macs, rows=rows, epochs=epochs)

    seconds = predict(fit.families[family])
    if fit.method == "estimated" and family in fit.cpu_families and seconds > 0:
        cpu_seconds = min(predict(fit.cpu_families[family]), worker.cores * seconds)
        joules = (
            cpu_seconds * worker.watts_per_core + fit.peak_memory_gb * memory_watts_per_gb * seconds
        )
        power = joules / seconds
    elif fit.method == "estimated":
        power = green_algorithms_power_w(
            cores=worker.cores,
            watts_per_core=worker.watts_per_core,
            cpu_utilisation=fit.cpu_utilisation,
            memory_gb=fit.peak_memory_gb,
            watts_per_gb=memory_watts_per_gb,
        )
    else:
        power = fit.avg_power_w
    return RunEstimate(seconds=seconds, avg_power_w=power)
