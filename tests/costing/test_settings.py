"""The cost model's settings: every key documented with its source, and checked on load."""

from __future__ import annotations

import re
import tomllib
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from market.costing.settings import (
    DEFAULT_SETTINGS_FILE,
    CostingSettings,
    EstimateSettings,
    MeterSettings,
    RegionSettings,
    WorkerClassSettings,
    load_default_settings,
)
from tests.costing.conftest import make_region, make_settings, make_worker

MODELS: list[type[BaseModel]] = [
    CostingSettings,
    MeterSettings,
    EstimateSettings,
    RegionSettings,
    WorkerClassSettings,
]
KEY_LINE = re.compile(r"^([A-Za-z0-9_-]+)\s*=")


def test_defaults_load_and_are_consistent() -> None:
    settings = load_default_settings()
    assert settings.currency == "EUR"
    assert settings.minor_unit == Decimal("0.01")
    assert settings.default_region in settings.regions
    assert {"cpu", "gpu"} <= set(settings.worker_classes)
    assert settings.worker_classes["gpu"].kind == "gpu"


def test_profiles_average_to_the_annual_intensity_they_cite() -> None:
    for name, region in load_default_settings().regions.items():
        mean = sum(region.hourly_intensity_g_per_kwh, Decimal(0)) / 24
        assert abs(mean - region.grid_intensity_g_per_kwh) <= 1, name


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_field_names_its_source(model: type[BaseModel]) -> None:
    for name, field in model.model_fields.items():
        assert field.description and "SOURCE" in field.description, f"{model.__name__}.{name}"


def test_every_key_of_the_toml_has_a_comment_above_it() -> None:
    lines = DEFAULT_SETTINGS_FILE.read_text().splitlines()
    in_array = False
    for number, line in enumerate(lines, start=1):
        if in_array:
            in_array = not line.strip().startswith("]")
            continue
        match = KEY_LINE.match(line)
        if not match:
            continue
        above = lines[number - 2].strip()
        assert above.startswith("#"), f"line {number}: {match.group(1)} has no comment above"
        in_array = line.rstrip().endswith("[")


def _assert_complete(model: type[BaseModel], table: dict[str, Any], where: str) -> None:
    missing = set(model.model_fields) - set(table)
    assert not missing, f"{where} does not state {sorted(missing)}"


def test_the_toml_states_every_setting_explicitly() -> None:
    """A default that lives only in Python is a coefficient without a cited source."""
    data = tomllib.loads(DEFAULT_SETTINGS_FILE.read_text())["costing"]
    _assert_complete(CostingSettings, data, "[costing]")
    _assert_complete(MeterSettings, data["meter"], "[costing.meter]")
    _assert_complete(EstimateSettings, data["estimate"], "[costing.estimate]")
    for name, region in data["regions"].items():
        _assert_complete(RegionSettings, region, f"[costing.regions.{name}]")
    for name, worker in data["worker_classes"].items():
        _assert_complete(WorkerClassSettings, worker, f"[costing.worker_classes.{name}]")


def test_money_in_the_toml_is_written_as_strings() -> None:
    data = tomllib.loads(DEFAULT_SETTINGS_FILE.read_text())["costing"]
    assert isinstance(data["carbon_price_per_tonne"], str)
    for region in data["regions"].values():
        assert isinstance(region["electricity_price_per_kwh"], str)
    for worker in data["worker_classes"].values():
        assert isinstance(worker["price_per_resource_hour"], str)


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        MeterSettings.model_validate({"sample_intervall_s": 1.0})


def test_settings_are_frozen() -> None:
    with pytest.raises(ValidationError):
        MeterSettings().sample_interval_s = 2.0  # type: ignore[misc]


def test_inconsistent_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="gpus > 0"):
        make_worker(kind="gpu")
    with pytest.raises(ValidationError, match="server_resources"):
        make_worker(resources=64)
    with pytest.raises(ValidationError, match="default_region"):
        make_settings(default_region="nowhere")
    with pytest.raises(ValidationError, match="at least 24"):
        make_region(hourly_intensity_g_per_kwh=(Decimal(1),) * 23)
    with pytest.raises(ValidationError):
        make_region(pue=Decimal("0.9"))  # a PUE below 1 is impossible
