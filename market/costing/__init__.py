"""The sustainability meter and the price model (docs/costs.md), free of Flask and the database.

Layers, each usable alone::

    settings   pydantic models of every coefficient (default_settings.toml, with sources)
    (money)    Money lives in market.money: the one minor-unit rule, re-exported here
    rapl/nvml  hardware energy counters; estimate: the Green Algorithms model and run time
    meter      measure(): the context manager around a run -> Measurement
    pricing    price_run(): Measurement or RunEstimate -> CostBreakdown (and SCI)
    schedule   greenest_start(): the lowest-carbon start before a deadline
    quote      quote_costs(): estimate + price now and at the greenest start, for quotes
"""

from market.costing.errors import CostingError, CurrencyMismatch, DeadlineTooSoon
from market.costing.estimate import (
    RunEstimate,
    calibrate_throughput,
    estimate_run,
    estimate_seconds,
    green_algorithms_power_w,
)
from market.costing.meter import (
    EnergyMeter,
    Measurement,
    MeterRun,
    measure,
    select_meter,
)
from market.costing.pricing import CostBreakdown, price_run
from market.costing.quote import QuoteCosts, quote_costs
from market.costing.schedule import ScheduleChoice, greenest_start, mean_intensity
from market.costing.settings import (
    CostingSettings,
    EstimateSettings,
    MeterSettings,
    RegionSettings,
    WorkerClassSettings,
    load_default_settings,
)
from market.money import Money, quantize

__all__ = [
    "CostBreakdown",
    "CostingError",
    "CostingSettings",
    "CurrencyMismatch",
    "DeadlineTooSoon",
    "EnergyMeter",
    "EstimateSettings",
    "Measurement",
    "MeterRun",
    "MeterSettings",
    "Money",
    "QuoteCosts",
    "RegionSettings",
    "RunEstimate",
    "ScheduleChoice",
    "WorkerClassSettings",
    "calibrate_throughput",
    "estimate_run",
    "estimate_seconds",
    "green_algorithms_power_w",
    "greenest_start",
    "load_default_settings",
    "mean_intensity",
    "measure",
    "price_run",
    "quantize",
    "quote_costs",
    "select_meter",
]
