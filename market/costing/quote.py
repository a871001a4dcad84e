"""A quote's cost side: predicted time, energy, emissions and price, now and at the greenest
start, from the same formulas the receipt uses (so the receipt's error is the estimate's).

The grid intensity of a priced window is the mean of the region's hourly profile over it
(``mean_intensity``), for "now" as for the greenest start, so the two are compared on one
basis; the receipt should price the actual window the same way.

Two honesty fields travel with every quote. ``accuracy``: the expected relative error of the
time and energy estimate and the band it gives, from the worker class's own calibration
(``WorkerFit``), or ``calibrated: false`` with the configured constants when no worker of the
class has calibrated. ``availability``: whether a worker of the class is alive (a fresh
heartbeat) now; a quote for a class without one says so and cannot be bought.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from market.costing.estimate import (
    RunEstimate,
    WorkerFit,
    calibrated_run,
    estimate_run,
    estimate_seconds,
)
from market.costing.pricing import CostBreakdown, price_run
from market.costing.schedule import ScheduleChoice, greenest_start, mean_intensity
from market.costing.settings import ClippingMode, CostingSettings
from market.money import Money


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether a worker of the quoted class is alive now (``live_workers`` fresh heartbeats)."""

    live_workers: int | None = None

    @property
    def live(self) -> bool | None:
        return None if self.live_workers is None else self.live_workers > 0

    def to_dict(self, worker_class: str) -> dict[str, Any]:
        if self.live_workers is None:
            message = "worker availability was not checked"
        elif self.live_workers:
            message = f"{self.live_workers} live worker(s) of class {worker_class}"
        else:
            message = (
                f"no live worker of class {worker_class}: this quote cannot be bought until "
                "one is running"
            )
        return {"live": self.live, "live_workers": self.live_workers, "message": message}


@dataclass(frozen=True, slots=True)
class Accuracy:
    """The estimate's expected relative error and where its figures came from."""

    calibrated: bool
    relative_error: float | None
    basis: str

    def to_dict(self, estimate: RunEstimate) -> dict[str, Any]:
        band = self.relative_error
        return {
            "calibrated": self.calibrated,
            "relative_error": band,
            "seconds_low": None if band is None else estimate.seconds * max(0.0, 1 - band),
            "seconds_high": None if band is None else estimate.seconds * (1 + band),
            "basis": self.basis,
        }


@dataclass(frozen=True, slots=True)
class QuoteCosts:
    """The estimate and its price now; with a deadline, the greenest start and its price."""

    worker_class: str
    region: str
    estimate: RunEstimate
    now: CostBreakdown
    schedule: ScheduleChoice | None
    greenest: CostBreakdown | None
    accuracy: Accuracy = Accuracy(False, None, "configured constants")
    availability: Availability = Availability()

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker_class": self.worker_class,
            "region": self.region,
            "estimate": self.estimate.to_dict(),
            "now": self.now.to_dict(),
            "schedule": None if self.schedule is None else self.schedule.to_dict(),
            "greenest": None if self.greenest is None else self.greenest.to_dict(),
            "accuracy": self.accuracy.to_dict(self.estimate),
            "availability": self.availability.to_dict(self.worker_class),
        }


def quote_costs(
    settings: CostingSettings,
    *,
    worker_class: str,
    samples: int,
    epochs: int,
    work_per_sample: float,
    clipping_mode: ClippingMode,
    royalty: Money,
    now: datetime,
    region: str | None = None,
    deadline: datetime | None = None,
    reference_work_per_sample: float | None = None,
    throughput_samples_per_s: float | None = None,
    steps: int = 0,
    cpu_utilisation: float = 1.0,
    fit: WorkerFit | None = None,
    family: str | None = None,
    batch: float | None = None,
    macs: float | None = None,
    rows: int = 0,
    live_workers: int | None = None,
) -> QuoteCosts:
    """Estimate and price a run.

    With ``fit`` (the class's own calibration) holding ``family``, time and power come from
    it (``calibrated_run``: ``steps`` of expected ``batch`` rows on a model of ``macs``
    multiply-accumulates per sample, on a dataset of ``rows``). Otherwise the configured
    constants are used:
    ``throughput_samples_per_s`` (a stored reference throughput, else the configured one),
    ``startup_seconds``, ``step_seconds`` and the clipping mode's overhead."""
    if worker_class not in settings.worker_classes:
        raise KeyError(f"unknown worker class {worker_class!r}")
    region_name = region or settings.default_region
    if region_name not in settings.regions:
        raise KeyError(f"unknown region {region_name!r}")
    worker = settings.worker_classes[worker_class]
    if clipping_mode not in settings.estimate.dp_overhead:
        raise KeyError(f"no DP overhead configured for clipping mode {clipping_mode!r}")
    if (
        fit is not None
        and family is not None
        and family in fit.families
        and batch is not None
        and macs is not None
    ):
        estimate = calibrated_run(
            fit,
            worker,
            family=family,
            steps=steps,
            batch=batch,
            macs=macs,
            rows=rows,
            epochs=epochs,
            memory_watts_per_gb=settings.meter.memory_watts_per_gb,
        )
        accuracy = Accuracy(
            True,
            fit.relative_error,
            f"calibrated by a {worker_class} worker on {fit.host or 'its host'} at "
            f"{fit.measured_at or 'start'} ({len(fit.points)} timed runs, {fit.method} power)",
        )
    else:
        estimate, accuracy = _uncalibrated_estimate(
            settings,
            worker_class,
            samples=samples,
            epochs=epochs,
            work_per_sample=work_per_sample,
            clipping_mode=clipping_mode,
            reference_work_per_sample=reference_work_per_sample,
            throughput_samples_per_s=throughput_samples_per_s,
            steps=steps,
            cpu_utilisation=cpu_utilisation,
        )
    return _priced(
        settings,
        worker_class,
        region_name,
        estimate,
        accuracy,
        royalty,
        now,
        deadline,
        live_workers,
    )


def _uncalibrated_estimate(
    settings: CostingSettings,
    worker_class: str,
    *,
    samples: int,
    epochs: int,
    work_per_sample: float,
    clipping_mode: ClippingMode,
    reference_work_per_sample: float | None,
    throughput_samples_per_s: float | None,
    steps: int,
    cpu_utilisation: float,
) -> tuple[RunEstimate, Accuracy]:
    """The configured constants' estimate, before any worker of the class has calibrated."""
    worker = settings.worker_classes[worker_class]
    seconds = estimate_seconds(
        samples=samples,
        epochs=epochs,
        work_per_sample=work_per_sample,
        reference_work_per_sample=reference_work_per_sample,
        dp_overhead_factor=settings.estimate.dp_overhead[clipping_mode],
        throughput_samples_per_s=throughput_samples_per_s or worker.throughput_samples_per_s,
        startup_seconds=settings.estimate.startup_seconds,
        steps=steps,
        step_seconds=settings.estimate.step_seconds,
    )
    estimate = estimate_run(
        seconds,
        worker,
        memory_watts_per_gb=settings.meter.memory_watts_per_gb,
        gpu_utilisation=settings.meter.gpu_utilisation,
        cpu_utilisation=cpu_utilisation,
    )
    accuracy = Accuracy(
        False,
        None,
        f"no {worker_class} worker has calibrated yet: configured constants, error unknown",
    )
    return estimate, accuracy


def _priced(
    settings: CostingSettings,
    worker_class: str,
    region_name: str,
    estimate: RunEstimate,
    accuracy: Accuracy,
    royalty: Money,
    now: datetime,
    deadline: datetime | None,
    live_workers: int | None,
) -> QuoteCosts:
    worker = settings.worker_classes[worker_class]
    where = settings.regions[region_name]
    duration = timedelta(seconds=estimate.seconds)
    profile = where.hourly_intensity_g_per_kwh
    availability = Availability(live_workers)

    def priced(start: datetime) -> CostBreakdown:
        return price_run(
            estimate,
            worker,
            where,
            royalty=royalty,
            settings=settings,
            grid_intensity_g_per_kwh=mean_intensity(profile, start, duration),
        )

    now_cost = priced(now)
    if deadline is None:
        return QuoteCosts(
            worker_class, region_name, estimate, now_cost, None, None, accuracy, availability
        )
    choice = greenest_start(profile, now, duration, deadline, energy_kwh=now_cost.energy_kwh)
    return QuoteCosts(
        worker_class,
        region_name,
        estimate,
        now_cost,
        choice,
        priced(choice.start),
        accuracy,
        availability,
    )
