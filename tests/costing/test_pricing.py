"""The price model against hand-computed values, the currency check, and linearity in T.

The hand example: 2 hours on 2 cores at EUR 0.04 per core-hour, 100 W average, PUE 1.5,
400 gCO2e/kWh, EUR 0.25/kWh, EUR 80/t, royalty EUR 1.50:

    compute      = 2 h x 0.04 x 2                 = 0.16
    IT energy    = 2 h x 100 W                    = 0.2 kWh
    energy       = 0.2 x 1.5                      = 0.3 kWh -> 0.3 x 0.25 = 0.075 -> 0.08
    emissions    = 0.3 kWh x 400 g / 1000         = 0.12 kg
    environment  = 0.12 / 1000 t x 80             = 0.0096 -> 0.01
    embodied     = 1300 x (2 / 35040) x (2 / 48)  = 5200 / 1681920 kg
    subtotal     = 0.16 + 0.08 + 0.01 + 1.50      = 1.75
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.costing.errors import CurrencyMismatch
from market.costing.estimate import RunEstimate
from market.costing.pricing import price_run
from market.costing.settings import CostingSettings, RegionSettings, WorkerClassSettings
from market.money import Money, money_context
from tests.costing.conftest import make_region, make_settings, make_worker

EUR = "EUR"


@dataclass(frozen=True)
class Usage:
    seconds: float
    avg_power_w: float
    method: str = "rapl"


def royalty(amount: str = "1.50", currency: str = EUR) -> Money:
    return Money(Decimal(amount), currency)


def test_every_term_of_the_hand_example(
    worker: WorkerClassSettings, region: RegionSettings, costing: CostingSettings
) -> None:
    cost = price_run(Usage(7200, 100.0), worker, region, royalty=royalty(), settings=costing)
    assert cost.basis == "rapl"
    assert cost.seconds == Decimal(7200)
    assert cost.it_energy_kwh == Decimal("0.2")
    assert cost.energy_kwh == Decimal("0.3")
    assert cost.emissions_kg == Decimal("0.12")
    assert cost.embodied_kg == money_context().divide(Decimal(5200), Decimal(1681920))
    assert cost.sci_kg_per_run == Decimal("0.12") + cost.embodied_kg
    assert cost.compute == Money(Decimal("0.16"), EUR)
    assert cost.energy == Money(Decimal("0.075"), EUR)  # exact: no per-run rounding
    assert cost.environment == Money(Decimal("0.0096"), EUR)
    assert cost.royalty == Money(Decimal("1.50"), EUR)
    assert cost.platform_fee == Money(Decimal("0.00"), EUR)
    assert cost.total == Money(Decimal("1.7446"), EUR)
    assert str(cost.royalty.amount) == "1.50"  # at least the minor digits, trailing zeros cut


def test_a_tiny_run_keeps_every_term_exact(
    worker: WorkerClassSettings, region: RegionSettings, costing: CostingSettings
) -> None:
    # One second at 10 W: every term is far below a cent and none of them is zero.
    cost = price_run(Usage(1, 10.0), worker, region, royalty=royalty("0"), settings=costing)
    for term in (cost.compute, cost.energy, cost.environment):
        assert Decimal(0) < term.amount < Decimal("0.001")
        assert term.amount == term.amount.quantize(Decimal("1e-9"))
    assert cost.compute.amount == Decimal("0.000022222")  # 0.08/3600, half to even at 1e-9
    assert cost.total.amount == sum(
        t.amount for t in (cost.compute, cost.energy, cost.environment, cost.platform_fee)
    )


@pytest.mark.parametrize(
    ("rate", "fee", "total"),
    [
        ("0.1", "0.17446", "1.91906"),  # exact shares of the exact subtotal 1.7446
        ("0.05", "0.08723", "1.83183"),
        ("0.3", "0.52338", "2.26798"),
    ],
)
def test_platform_fee_is_an_exact_share_of_the_subtotal(
    worker: WorkerClassSettings, region: RegionSettings, rate: str, fee: str, total: str
) -> None:
    costing = make_settings(platform_fee_rate=Decimal(rate))
    cost = price_run(Usage(7200, 100.0), worker, region, royalty=royalty(), settings=costing)
    assert cost.platform_fee.amount == Decimal(fee)
    assert cost.total.amount == Decimal(total)


def test_total_is_the_sum_of_the_printed_terms(costing: CostingSettings) -> None:
    # Terms just above a half cent stay as they are: the receipt adds up as printed.
    worker = make_worker(price_per_resource_hour=Decimal("0.00505"), resources=1)
    region = make_region(electricity_price_per_kwh=Decimal("0.0505"), pue=Decimal("1"))
    cost = price_run(Usage(3600, 100.0), worker, region, royalty=royalty("0"), settings=costing)
    terms = [cost.compute, cost.energy, cost.environment, cost.royalty, cost.platform_fee]
    assert cost.total.amount == sum(term.amount for term in terms)
    assert cost.compute.amount == Decimal("0.00505")
    assert cost.energy.amount == Decimal("0.00505")  # 0.1 kWh x 0.0505


def test_minor_unit_follows_the_currency() -> None:
    worker, region = make_worker(currency="BHD"), make_region(currency="BHD")
    three = make_settings(
        currency="BHD",
        minor_unit_digits=3,
        regions={"test": region},
        worker_classes={"cpu": worker},
    )
    cost = price_run(
        Usage(7200, 100.0), worker, region, royalty=royalty(currency="BHD"), settings=three
    )
    assert str(cost.energy.amount) == "0.075"
    assert str(cost.environment.amount) == "0.0096"  # exact, at least 3 places
    assert str(cost.royalty.amount) == "1.500"


def test_a_royalty_in_another_currency_is_refused(
    worker: WorkerClassSettings, region: RegionSettings, costing: CostingSettings
) -> None:
    with pytest.raises(CurrencyMismatch):
        price_run(
            Usage(60, 10.0), worker, region, royalty=royalty(currency="USD"), settings=costing
        )


def test_a_region_priced_in_another_currency_is_refused(
    worker: WorkerClassSettings, costing: CostingSettings
) -> None:
    usd_region = make_region(currency="USD")
    with pytest.raises(CurrencyMismatch):
        price_run(Usage(60, 10.0), worker, usd_region, royalty=royalty(), settings=costing)


def test_settings_refuse_a_minor_unit_other_than_the_currencys() -> None:
    with pytest.raises(ValueError, match="ISO 4217 minor unit of EUR"):
        make_settings(minor_unit_digits=3)


def test_settings_refuse_mixed_currencies() -> None:
    with pytest.raises(ValueError, match="priced in USD"):
        make_settings(worker_classes={"cpu": make_worker(currency="USD")})
    with pytest.raises(ValueError, match="priced in USD"):
        make_settings(regions={"test": make_region(currency="USD")})


def test_an_estimate_is_priced_like_a_measurement(
    worker: WorkerClassSettings, region: RegionSettings, costing: CostingSettings
) -> None:
    estimate = RunEstimate(seconds=7200, avg_power_w=100.0)
    cost = price_run(estimate, worker, region, royalty=royalty(), settings=costing)
    measured = price_run(Usage(7200, 100.0), worker, region, royalty=royalty(), settings=costing)
    assert cost.basis == "estimate"
    assert cost.total == measured.total


def test_intensity_and_resources_can_be_overridden(
    worker: WorkerClassSettings, region: RegionSettings, costing: CostingSettings
) -> None:
    cost = price_run(
        Usage(7200, 100.0),
        worker,
        region,
        royalty=royalty(),
        settings=costing,
        grid_intensity_g_per_kwh=Decimal("100"),
        resources=1,
    )
    assert cost.emissions_kg == Decimal("0.03")
    assert cost.compute.amount == Decimal("0.08")
    assert cost.embodied_kg == money_context().divide(Decimal(2600), Decimal(1681920))


def test_breakdown_is_plain_json_with_decimals_as_strings(
    worker: WorkerClassSettings, region: RegionSettings, costing: CostingSettings
) -> None:
    cost = price_run(Usage(7200, 100.0), worker, region, royalty=royalty(), settings=costing)
    data = json.loads(json.dumps(cost.to_dict()))
    assert data["total"] == {"amount": "1.7446", "currency": "EUR"}
    assert Decimal(data["energy_kwh"]) == Decimal("0.3")
    assert "E" not in data["embodied_kg"]  # fixed-point, not scientific notation
    assert not any(isinstance(value, float) for value in data.values())


def test_negative_inputs_are_refused(
    worker: WorkerClassSettings, region: RegionSettings, costing: CostingSettings
) -> None:
    with pytest.raises(ValueError):
        price_run(Usage(-1, 10.0), worker, region, royalty=royalty(), settings=costing)
    with pytest.raises(ValueError):
        price_run(Usage(1, 10.0), worker, region, royalty=royalty(), settings=costing, resources=0)


HALF_CENT = Decimal("0.005")


@settings(max_examples=60, deadline=None)
@given(
    seconds=st.integers(min_value=0, max_value=10**7),
    factor=st.integers(min_value=1, max_value=50),
    power=st.integers(min_value=0, max_value=5000),
)
def test_terms_scale_linearly_in_t(seconds: int, factor: int, power: int) -> None:
    costing = make_settings()
    worker, region = make_worker(), make_region()
    one = price_run(
        Usage(seconds, float(power)), worker, region, royalty=royalty("0"), settings=costing
    )
    many = price_run(
        Usage(seconds * factor, float(power)),
        worker,
        region,
        royalty=royalty("0"),
        settings=costing,
    )
    # Physical terms: exact up to the 28-digit context's last place.
    for name in ("it_energy_kwh", "energy_kwh", "emissions_kg", "embodied_kg", "sci_kg_per_run"):
        scaled = getattr(one, name) * factor
        assert abs(getattr(many, name) - scaled) <= abs(scaled) * Decimal("1e-24"), name
    # Money terms: each is rounded once, so k x rounded(T) is within (k + 1) half-cents.
    for name in ("compute", "energy", "environment"):
        difference = abs(getattr(many, name).amount - getattr(one, name).amount * factor)
        assert difference <= HALF_CENT * (factor + 1), name
