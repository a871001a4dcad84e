"""The JSON records of the cost side, as pydantic models: what a quote's estimate and a run's
cost receipt store, field for field (``CostBreakdown.to_dict``, ``Measurement.to_dict``,
``QuoteCosts.to_dict``). They describe the stored JSON in the OpenAPI document and check it
where a receipt is built; they never change it (same names, same order, Decimals as strings).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MoneyRecord(BaseModel):
    """An amount of money: a decimal string (never a float) and its ISO 4217 currency."""

    amount: str = Field(examples=["12.34", "0.000049213"])
    currency: str = Field(examples=["EUR"])


class CostTerms(BaseModel):
    """Every term of a price and footprint (``market.costing.pricing.CostBreakdown``).

    Physical quantities are decimal strings with their unit in the name; money terms are
    exact to ``costing.accrual_digits`` places, never rounded to the cent per run ("0.000049213"):
    they accrue to the monthly statement, which rounds once (``market.money``)."""

    basis: str = Field(description="Where the usage came from: a meter method or 'estimate'.")
    currency: str
    seconds: str
    resources: int
    avg_power_w: str
    it_energy_kwh: str
    pue: str
    energy_kwh: str
    grid_intensity_g_per_kwh: str
    emissions_kg: str
    embodied_kg: str
    sci_kg_per_run: str
    price_per_resource_hour: str
    electricity_price_per_kwh: str
    carbon_price_per_tonne: str
    platform_fee_rate: str
    compute: MoneyRecord
    energy: MoneyRecord
    environment: MoneyRecord
    royalty: MoneyRecord
    platform_fee: MoneyRecord
    total: MoneyRecord


class MeasurementRecord(BaseModel):
    """What a run used, as measured (``market.costing.meter.Measurement``)."""

    method: str
    started_at: str = Field(description="ISO 8601 with a time zone.")
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    energy_kwh: float
    avg_power_w: float
    cpu_utilisation: float
    cores: int
    samples: int
    completed: bool
    energy_components_kwh: dict[str, float]
    notes: list[str]


class EstimateRecord(BaseModel):
    """A quote's predicted usage (``market.costing.estimate.RunEstimate``)."""

    method: str
    seconds: float
    avg_power_w: float
    energy_kwh: float


class ScheduleRecord(BaseModel):
    """The greenest start before a deadline (``market.costing.schedule.ScheduleChoice``)."""

    now: str
    start: str
    duration_s: float
    intensity_now_g_per_kwh: str
    intensity_start_g_per_kwh: str
    emissions_now_kg: str | None
    emissions_start_kg: str | None
    saving_fraction: str


class QuoteCostsRecord(BaseModel):
    """A quote's cost side (``market.costing.quote.QuoteCosts``): the estimate, its price
    now and, with a deadline, at the greenest start."""

    model_config = ConfigDict(extra="allow")

    worker_class: str
    region: str
    estimate: EstimateRecord
    now: CostTerms
    schedule: ScheduleRecord | None
    greenest: CostTerms | None
