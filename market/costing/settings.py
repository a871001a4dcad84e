"""Typed settings of the cost model: worker classes, regions, the meter and the estimator.

They are ``Settings.costing``; their values, each commented with its source, are the
``[costing...]`` tables of ``config/default.toml`` (there are no code defaults for
coefficients). ``load_default_settings()`` reads just those tables, for the package's tests.

Money amounts are ``Decimal`` and are written as strings in TOML (``"0.0425"``) so that no
binary float ever enters a money path. Physical coefficients (watts, gCO2e/kWh, PUE) are
``Decimal`` too where they multiply into a price, and ``float`` where they only drive the
meter's physics.
"""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from market.money import exponent

DEFAULT_SETTINGS_FILE = Path(__file__).resolve().parents[2] / "config" / "default.toml"

MeterChoice = Literal["auto", "rapl", "nvml", "estimated"]
ClippingMode = Literal["none", "flat", "bk", "ghost", "hooks"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WorkerClassSettings(_Section):
    """One class of worker a run can be bought on (what the researcher picks in a quote)."""

    kind: Literal["cpu", "gpu"] = Field(
        description="What one resource is: a CPU core or a GPU. SOURCE: operator's choice."
    )
    resources: int = Field(
        gt=0,
        description="Resources one run holds (cores for cpu, GPUs for gpu); the C_resource term "
        "of the founding cost design. SOURCE: operator's choice, the worker's size.",
    )
    server_resources: int = Field(
        gt=0,
        description="Resources of the whole server the worker runs on, for the run's share of "
        "embodied emissions (SCI's resource-share RS). SOURCE: the hardware's datasheet.",
    )
    price_per_resource_hour: Decimal = Field(
        ge=0,
        description="Price of one resource for one hour (C_time), in `currency`. SOURCE: "
        "operator's tariff, of the order of on-demand cloud prices (AWS EC2 c6i.large, 2 vCPU, "
        "USD 0.085/h in us-east-1, 2024: about 0.04 per vCPU-hour).",
    )
    currency: str = Field(
        min_length=3,
        max_length=3,
        description="ISO 4217 code of `price_per_resource_hour`; must equal costing.currency "
        "(mixing is refused). SOURCE: operator's tariff.",
    )
    cores: int = Field(
        gt=0,
        description="CPU cores the worker process may use; the 'number of cores' of the Green "
        "Algorithms power estimate and the denominator of CPU utilisation. SOURCE: the "
        "worker's allocation.",
    )
    watts_per_core: float = Field(
        gt=0,
        description="Power per fully used core, W (TDP / cores). SOURCE: Green Algorithms "
        "(Lannelongue et al., Adv. Sci. 2021), default 'Any' CPU = 12 W per core.",
    )
    memory_gb: float = Field(
        gt=0,
        description="Memory reserved for a run, GB (GiB), used by the quote's estimate. "
        "SOURCE: the worker's allocation.",
    )
    gpus: int = Field(
        default=0,
        ge=0,
        description="GPUs a run holds (0 for a CPU worker). SOURCE: the worker's allocation.",
    )
    gpu_tdp_w: float = Field(
        default=0.0,
        ge=0,
        description="Thermal design power of one GPU, W, for the estimate when NVML cannot "
        "measure. SOURCE: the GPU's datasheet (NVIDIA A100 SXM4: 400 W).",
    )
    embodied_kgco2e: Decimal = Field(
        ge=0,
        description="Embodied (manufacturing) emissions of the whole server, kgCO2e: SCI's "
        "TE. SOURCE: vendor LCA (Dell PowerEdge R740 product carbon footprint, about "
        "1,300 kgCO2e manufacturing, as used by Cloud Carbon Footprint).",
    )
    lifetime_hours: Decimal = Field(
        gt=0,
        description="Expected service life of the server, hours: SCI's EL. SOURCE: Cloud "
        "Carbon Footprint's 4-year server lifespan (35,040 h).",
    )
    throughput_samples_per_s: float = Field(
        gt=0,
        description="Training throughput of the reference workload (samples/s, non-private) "
        "until a benchmark at worker start calibrates it. SOURCE: measured on this project's "
        "CI machine (docs/pitfalls.md).",
    )

    @model_validator(mode="after")
    def _gpu_consistent(self) -> WorkerClassSettings:
        if self.kind == "gpu" and (self.gpus == 0 or self.gpu_tdp_w == 0):
            raise ValueError("a gpu worker class needs gpus > 0 and gpu_tdp_w > 0")
        if self.resources > self.server_resources:
            raise ValueError("resources cannot exceed server_resources")
        return self


class RegionSettings(_Section):
    """Where a worker runs: what its electricity costs and emits."""

    pue: Decimal = Field(
        ge=1,
        description="Power Usage Effectiveness (facility energy / IT energy): C_efficiency. "
        "SOURCE: Uptime Institute Global Data Center Survey 2023, industry average 1.58; "
        "hyperscale fleets about 1.1 (Google 2023: 1.10).",
    )
    grid_intensity_g_per_kwh: Decimal = Field(
        ge=0,
        description="Average grid carbon intensity, gCO2e/kWh. SOURCE: Ember, annual "
        "electricity data (named per region in the TOML with its year).",
    )
    electricity_price_per_kwh: Decimal = Field(
        ge=0,
        description="Electricity price per kWh, in `currency`. SOURCE: Eurostat nrg_pc_205 "
        "(non-household consumers, excluding VAT), named per region in the TOML.",
    )
    currency: str = Field(
        min_length=3,
        max_length=3,
        description="ISO 4217 code of `electricity_price_per_kwh`; must equal "
        "costing.currency. SOURCE: the tariff.",
    )
    hourly_intensity_g_per_kwh: tuple[Decimal, ...] = Field(
        min_length=24,
        max_length=24,
        description="24 values, gCO2e/kWh for each UTC hour 0..23, for carbon-aware "
        "scheduling. SOURCE: a typical-day profile (named per region in the TOML); replace "
        "with ENTSO-E or Electricity Maps hourly data.",
    )


class MeterSettings(_Section):
    """How the meter around a training run measures energy."""

    method: MeterChoice = Field(
        default="auto",
        description="'auto' picks the best available (nvml for GPUs, then rapl, then "
        "estimated); a named method is used when available, else the meter falls back and "
        "says why. SOURCE: design choice (docs/costs.md).",
    )
    sample_interval_s: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="Seconds between samples of RSS and energy counters; also bounds RAPL "
        "wrap-around detection (one wrap per interval). SOURCE: design choice; RAPL updates "
        "about every 1 ms, NVML every 20-100 ms (PETSc notes), so 0.5 s loses nothing.",
    )
    rapl_root: Path = Field(
        default=Path("/sys/class/powercap"),
        description="Root of the Linux powercap sysfs tree. SOURCE: Linux kernel "
        "Documentation/power/powercap/powercap.rst.",
    )
    rapl_zone_prefix: str = Field(
        default="intel-rapl",
        description="Control type whose zones are read ('intel-rapl:N', also on AMD). "
        "'intel-rapl-mmio' duplicates the package domain and is not read. SOURCE: Linux "
        "powercap documentation.",
    )
    rapl_domains: tuple[str, ...] = Field(
        default=("package", "dram"),
        min_length=1,
        description="Zone names summed ('package' matches package-0, package-1...). 'core' "
        "and 'uncore' are inside 'package' and would be counted twice. SOURCE: Linux "
        "powercap documentation (intel-rapl zone names).",
    )
    nvml_enabled: bool = Field(
        default=True,
        description="Try nvidia-ml-py's nvmlDeviceGetTotalEnergyConsumption (mJ since driver "
        "load, Volta or newer). SOURCE: NVML API reference.",
    )
    gpu_indices: tuple[int, ...] = Field(
        default=(),
        description="NVML indices of the GPUs the run uses; empty means every GPU present. "
        "SOURCE: the worker's allocation.",
    )
    memory_watts_per_gb: float = Field(
        default=0.3725,
        gt=0,
        description="Memory power, W per GB, for the estimate. SOURCE: Green Algorithms "
        "(Lannelongue et al., Adv. Sci. 2021): 0.3725 W/GB.",
    )
    gpu_utilisation: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="GPU usage factor for the estimate when NVML cannot report one. SOURCE: "
        "Green Algorithms' default usage factor 1 (full use).",
    )


class EstimateSettings(_Section):
    """How a quote predicts the run time from the spec and the worker's throughput."""

    dp_overhead: dict[ClippingMode, float] = Field(
        description="Slow-down of DP-SGD over non-private training per clipping mode "
        "(throughput ratio inverted). SOURCE: measured here (docs/pitfalls.md): ghost "
        "0.49x -> 2.04, per-sample hooks 0.025x -> 40.",
    )
    startup_seconds: float = Field(
        default=0.0,
        ge=0,
        description="Fixed time per run (Opacus set-up, model copy, metric release), s. "
        "SOURCE: bench/quote_accuracy.py on this project's 2-core machine, 2026-11-28.",
    )
    step_seconds: float = Field(
        default=0.0,
        ge=0,
        description="Fixed time per DP-SGD step (Poisson batch, clipping, noise, optimizer), "
        "s. SOURCE: bench/quote_accuracy.py on this project's 2-core machine, 2026-11-28.",
    )
    benchmark_samples: int = Field(
        default=2048,
        gt=0,
        description="Samples the worker-start benchmark trains on to calibrate throughput. "
        "SOURCE: design choice (about a second on one core).",
    )
    calibrate: bool = Field(
        default=True,
        description="Whether a worker fits its own start-up and per-step costs per model "
        "family at start (real DP-SGD runs on synthetic data, timed by the run meter). "
        "SOURCE: design choice (docs/costs.md).",
    )
    min_relative_error: float = Field(
        default=0.15,
        ge=0,
        le=10,
        description="Floor of a calibrated quote's expected relative error: a dozen short "
        "runs on a machine shared with other work cannot promise better. SOURCE: "
        "bench/quote_accuracy.py on this project's 2-core machine (docs/benchmarks.md).",
    )


class CostingSettings(_Section):
    """Every coefficient of the price model; merged into Settings as ``costing``."""

    currency: str = Field(
        default="EUR",
        min_length=3,
        max_length=3,
        description="ISO 4217 code of every price. SOURCE: operator's choice.",
    )
    minor_unit_digits: int = Field(
        default=2,
        ge=0,
        le=4,
        description="Decimal places of the currency's minor unit; every money term is rounded "
        "to it, half to even. Must be the currency's ISO 4217 exponent (market.money). "
        "SOURCE: ISO 4217 (EUR: 2).",
    )
    accrual_digits: int = Field(
        default=9,
        ge=6,
        le=12,
        description="Decimal places a run's cost terms are kept to (half to even) before they "
        "accrue to monthly statements, which round once to the minor unit (market.money). "
        "SOURCE: design choice (1e-9 of the currency: a one-second run's terms are not zero).",
    )
    carbon_price_per_tonne: Decimal = Field(
        ge=0,
        description="Price of one tonne of CO2e (C_impact), in `currency`. SOURCE: EU ETS "
        "allowance price, about EUR 80/t (2023 average about EUR 84, 2024 about EUR 65).",
    )
    platform_fee_rate: Decimal = Field(
        default=Decimal("0"),
        ge=0,
        lt=1,
        description="Optional platform fee, a fraction of the subtotal (0 = none). SOURCE: "
        "operator's choice.",
    )
    default_region: str = Field(
        description="Region used when none is named. SOURCE: operator's deployment."
    )
    regions: dict[str, RegionSettings] = Field(
        min_length=1, description="Regions by name. SOURCE: see each region's keys."
    )
    worker_classes: dict[str, WorkerClassSettings] = Field(
        min_length=1, description="Worker classes by name. SOURCE: see each class's keys."
    )
    meter: MeterSettings = Field(
        default=MeterSettings(), description="The energy meter. SOURCE: see its keys."
    )
    estimate: EstimateSettings = Field(description="The run-time estimator. SOURCE: see its keys.")

    @model_validator(mode="after")
    def _consistent(self) -> CostingSettings:
        if self.minor_unit_digits != exponent(self.currency):
            raise ValueError(
                f"minor_unit_digits must be {exponent(self.currency)}, the ISO 4217 minor unit "
                f"of {self.currency} (market.money)"
            )
        if self.accrual_digits < self.minor_unit_digits:
            raise ValueError("accrual_digits must be at least minor_unit_digits")
        if self.default_region not in self.regions:
            raise ValueError(f"default_region {self.default_region!r} is not a region")
        for name, region in self.regions.items():
            if region.currency != self.currency:
                raise ValueError(f"region {name!r} is priced in {region.currency}")
        for name, worker in self.worker_classes.items():
            if worker.currency != self.currency:
                raise ValueError(f"worker class {name!r} is priced in {worker.currency}")
        return self

    @property
    def minor_unit(self) -> Decimal:
        """The quantum every money term is rounded to, e.g. Decimal('0.01') for EUR."""
        return Decimal(1).scaleb(-self.minor_unit_digits)


def load_default_settings(path: Path = DEFAULT_SETTINGS_FILE) -> CostingSettings:
    """The shipped defaults (``[costing]`` of config/default.toml), validated."""
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    return CostingSettings.model_validate(data["costing"])
