"""Round-number settings whose prices can be worked out by hand in the tests."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from market.costing.settings import (
    CostingSettings,
    EstimateSettings,
    MeterSettings,
    RegionSettings,
    WorkerClassSettings,
)

FLAT_PROFILE = tuple(Decimal(400) for _ in range(24))


def make_worker(**changes: object) -> WorkerClassSettings:
    values: dict[str, object] = {
        "kind": "cpu",
        "resources": 2,
        "server_resources": 48,
        "price_per_resource_hour": Decimal("0.04"),
        "currency": "EUR",
        "cores": 2,
        "watts_per_core": 12.0,
        "memory_gb": 8.0,
        "embodied_kgco2e": Decimal("1300"),
        "lifetime_hours": Decimal("35040"),
        "throughput_samples_per_s": 63000.0,
    }
    values.update(changes)
    return WorkerClassSettings.model_validate(values)


def make_region(**changes: object) -> RegionSettings:
    values: dict[str, object] = {
        "pue": Decimal("1.5"),
        "grid_intensity_g_per_kwh": Decimal("400"),
        "electricity_price_per_kwh": Decimal("0.25"),
        "currency": "EUR",
        "hourly_intensity_g_per_kwh": FLAT_PROFILE,
    }
    values.update(changes)
    return RegionSettings.model_validate(values)


def make_settings(**changes: object) -> CostingSettings:
    values: dict[str, object] = {
        "currency": "EUR",
        "minor_unit_digits": 2,
        "carbon_price_per_tonne": Decimal("80"),
        "platform_fee_rate": Decimal("0"),
        "default_region": "test",
        "regions": {"test": make_region()},
        "worker_classes": {"cpu": make_worker()},
        "estimate": EstimateSettings(dp_overhead={"none": 1.0, "ghost": 2.04}),
    }
    values.update(changes)
    return CostingSettings.model_validate(values)


@pytest.fixture
def worker() -> WorkerClassSettings:
    return make_worker()


@pytest.fixture
def region() -> RegionSettings:
    return make_region()


@pytest.fixture
def costing() -> CostingSettings:
    return make_settings()


@pytest.fixture
def no_rapl(tmp_path: Path) -> MeterSettings:
    """Meter settings pointing at an empty powercap root, so tests never read the host's."""
    return MeterSettings(rapl_root=tmp_path / "no-powercap", sample_interval_s=0.05)
