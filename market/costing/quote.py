"""A quote's cost side: predicted time, energy, emissions and price, now and at the greenest
start, from the same formulas the receipt uses (so the receipt's error is the estimate's).

The grid intensity of a priced window is the mean of the region's hourly profile over it
(``mean_intensity``), for "now" as for the greenest start, so the two are compared on one
basis; the receipt should price the actual window the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from market.costing.estimate import RunEstimate, estimate_run, estimate_seconds
from market.costing.pricing import CostBreakdown, price_run
from market.costing.schedule import ScheduleChoice, greenest_start, mean_intensity
from market.costing.settings import ClippingMode, CostingSettings
from market.money import Money


@dataclass(frozen=True, slots=True)
class QuoteCosts:
    """The estimate and its price now; with a deadline, the greenest start and its price."""

    worker_class: str
    region: str
    estimate: RunEstimate
    now: CostBreakdown
    schedule: ScheduleChoice | None
    greenest: CostBreakdown | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker_class": self.worker_class,
            "region": self.region,
            "estimate": self.estimate.to_dict(),
            "now": self.now.to_dict(),
            "schedule": None if self.schedule is None else self.schedule.to_dict(),
            "greenest": None if self.greenest is None else self.greenest.to_dict(),
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
) -> QuoteCosts:
    """Estimate and price a run. ``throughput_samples_per_s`` is the worker class's calibrated
    figure when one is stored, else the configured default is used."""
    if worker_class not in settings.worker_classes:
        raise KeyError(f"unknown worker class {worker_class!r}")
    region_name = region or settings.default_region
    if region_name not in settings.regions:
        raise KeyError(f"unknown region {region_name!r}")
    worker = settings.worker_classes[worker_class]
    where = settings.regions[region_name]
    if clipping_mode not in settings.estimate.dp_overhead:
        raise KeyError(f"no DP overhead configured for clipping mode {clipping_mode!r}")
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
    duration = timedelta(seconds=seconds)
    profile = where.hourly_intensity_g_per_kwh

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
        return QuoteCosts(worker_class, region_name, estimate, now_cost, None, None)
    choice = greenest_start(profile, now, duration, deadline, energy_kwh=now_cost.energy_kwh)
    return QuoteCosts(worker_class, region_name, estimate, now_cost, choice, priced(choice.start))
