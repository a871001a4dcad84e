"""The price model: every term of a run's price, from a measurement or an estimate.

The founding design's three terms, made measurable (T in hours, Decimal throughout)::

    compute      = T x price_per_resource_hour x resources             (C_time x C_resource)
    energy_kwh   = T x avg_power x PUE                                 (C_power x C_efficiency)
    energy cost  = energy_kwh x electricity_price_per_kwh
    emissions_kg = energy_kwh x grid_intensity / 1000                  (T x C_emission)
    environment  = emissions_kg / 1000 x carbon_price_per_tonne        (x C_impact)
    total        = compute + energy cost + environment + royalty (+ platform fee)

The platform fee is ``platform_fee_rate`` x (compute + energy + environment + royalty).

The receipt also states the Software Carbon Intensity of the run (Green Software Foundation
SCI specification, ISO/IEC 21031:2024), with one run as the functional unit R::

    SCI = (E x I) + M,   M = TE x (T / EL) x (RS / TR)

E x I is the operational emissions above; M is the run's share of the server's embodied
emissions TE: the fraction of its life EL the run took, times the fraction of its resources
(RS of TR) it held. Embodied emissions are reported, not priced: the hardware's cost is in
the compute tariff already, and the founding environment term is operational only.

Money: physical inputs enter as Decimal via their shortest repr (``to_decimal``); each money
term is kept exactly to ``costing.accrual_digits`` places (half to even, ``market.money.accrue``),
never rounded to the cent per run: a small run's compute term is 0.000049 EUR, not 0.00. The
total is the sum of those terms, so a receipt adds up as printed; the rounding to the cent
happens once, on the monthly statement (``market.statements``). Every money term is a
``Money``, and adding two currencies raises ``CurrencyMismatch``.

People read energy and emissions in the unit that suits their size (``human_energy``,
``human_emissions``: 23.2 Wh, 9.28 g CO2e), never as 2.32e-05 kWh.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from market.costing.settings import CostingSettings, RegionSettings, WorkerClassSettings
from market.money import Money, accrue, money_context, money_sum, to_decimal

SECONDS_PER_HOUR = Decimal(3600)
WH_PER_KWH = Decimal(1000)
GRAMS_PER_KG = Decimal(1000)
KG_PER_TONNE = Decimal(1000)


class RunUsage(Protocol):
    """What pricing needs from a Measurement or a RunEstimate."""

    @property
    def seconds(self) -> float: ...

    @property
    def avg_power_w(self) -> float: ...

    @property
    def method(self) -> str: ...


@dataclass(frozen=True, slots=True)
class CostBreakdown:
    """Every term of a run's price and footprint. Physical quantities are exact Decimals with
    their unit in the name; money terms are rounded ``Money``."""

    basis: str
    currency: str
    seconds: Decimal
    resources: int
    avg_power_w: Decimal
    it_energy_kwh: Decimal
    pue: Decimal
    energy_kwh: Decimal
    grid_intensity_g_per_kwh: Decimal
    emissions_kg: Decimal
    embodied_kg: Decimal
    sci_kg_per_run: Decimal
    price_per_resource_hour: Decimal
    electricity_price_per_kwh: Decimal
    carbon_price_per_tonne: Decimal
    platform_fee_rate: Decimal
    compute: Money
    energy: Money
    environment: Money
    royalty: Money
    platform_fee: Money
    total: Money

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON: Decimals as strings (never floats), money as {amount, currency}."""
        out: dict[str, Any] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, Money):
                out[name] = value.to_json()
            elif isinstance(value, Decimal):
                out[name] = format(value, "f")
            else:
                out[name] = value
        return out


def price_run(
    usage: RunUsage,
    worker: WorkerClassSettings,
    region: RegionSettings,
    *,
    royalty: Money,
    settings: CostingSettings,
    grid_intensity_g_per_kwh: Decimal | None = None,
    resources: int | None = None,
) -> CostBreakdown:
    """Price a run (formulas in the module docstring).

    ``grid_intensity_g_per_kwh`` overrides the region's annual average, e.g. with the mean of
    its hourly profile over the scheduled window (``greenest_start``); ``resources`` overrides
    the worker class's, for a run that held fewer or more.
    """
    ctx = money_context()
    digits = settings.accrual_digits

    def exact(amount: Decimal, currency: str) -> Money:
        return Money(accrue(amount, digits, currency), currency)

    held = worker.resources if resources is None else resources
    if held <= 0:
        raise ValueError("resources must be > 0")
    if usage.seconds < 0 or usage.avg_power_w < 0:
        raise ValueError("seconds and power must be >= 0")
    seconds = to_decimal(usage.seconds)
    hours = ctx.divide(seconds, SECONDS_PER_HOUR)
    power_w = to_decimal(usage.avg_power_w)
    intensity = region.grid_intensity_g_per_kwh
    if grid_intensity_g_per_kwh is not None:
        intensity = grid_intensity_g_per_kwh

    compute_amount = ctx.multiply(ctx.multiply(hours, worker.price_per_resource_hour), held)
    it_energy_kwh = ctx.divide(ctx.multiply(hours, power_w), WH_PER_KWH)
    energy_kwh = ctx.multiply(it_energy_kwh, region.pue)
    energy_amount = ctx.multiply(energy_kwh, region.electricity_price_per_kwh)
    emissions_kg = ctx.divide(ctx.multiply(energy_kwh, intensity), GRAMS_PER_KG)
    environment_amount = ctx.multiply(
        ctx.divide(emissions_kg, KG_PER_TONNE), settings.carbon_price_per_tonne
    )
    life_share = ctx.divide(hours, worker.lifetime_hours)
    resource_share = ctx.divide(Decimal(held), Decimal(worker.server_resources))
    embodied_kg = ctx.multiply(ctx.multiply(worker.embodied_kgco2e, life_share), resource_share)

    compute = exact(compute_amount, worker.currency)
    energy = exact(energy_amount, region.currency)
    environment = exact(environment_amount, settings.currency)
    royalty_q = exact(royalty.amount, royalty.currency)
    subtotal = money_sum([compute, energy, environment, royalty_q], settings.currency)
    fee = exact(ctx.multiply(subtotal.amount, settings.platform_fee_rate), settings.currency)
    total = exact((subtotal + fee).amount, settings.currency)

    return CostBreakdown(
        basis=usage.method,
        currency=settings.currency,
        seconds=seconds,
        resources=held,
        avg_power_w=power_w,
        it_energy_kwh=it_energy_kwh,
        pue=region.pue,
        energy_kwh=energy_kwh,
        grid_intensity_g_per_kwh=intensity,
        emissions_kg=emissions_kg,
        embodied_kg=embodied_kg,
        sci_kg_per_run=ctx.add(emissions_kg, embodied_kg),
        price_per_resource_hour=worker.price_per_resource_hour,
        electricity_price_per_kwh=region.electricity_price_per_kwh,
        carbon_price_per_tonne=settings.carbon_price_per_tonne,
        platform_fee_rate=settings.platform_fee_rate,
        compute=compute,
        energy=energy,
        environment=environment,
        royalty=royalty_q,
        platform_fee=fee,
        total=total,
    )


def _scaled(value: Decimal, units: list[tuple[Decimal, str]]) -> str:
    """``value`` in the first unit (largest first) it reaches, to 3 significant digits."""
    magnitude = abs(value)
    if magnitude == 0:
        return f"0 {units[1][1]}"
    for factor, unit in units:
        if magnitude >= factor or factor == units[-1][0]:
            return f"{float(value / factor):.3g} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def human_energy(kwh: Decimal | str | float | None) -> str:
    """Energy for people: kWh, Wh, mWh or µWh, whichever keeps the number readable."""
    if kwh is None or kwh == "":
        return "—"
    value = to_decimal(kwh) if not isinstance(kwh, str) else Decimal(kwh)
    return _scaled(
        value,
        [
            (Decimal(1), "kWh"),
            (Decimal("0.001"), "Wh"),
            (Decimal("0.000001"), "mWh"),
            (Decimal("0.000000001"), "µWh"),
        ],
    )


def human_emissions(kg: Decimal | str | float | None) -> str:
    """Emissions for people: t, kg, g or mg CO2e, whichever keeps the number readable."""
    if kg is None or kg == "":
        return "—"
    value = to_decimal(kg) if not isinstance(kg, str) else Decimal(kg)
    return _scaled(
        value,
        [
            (Decimal(1000), "t CO2e"),
            (Decimal(1), "kg CO2e"),
            (Decimal("0.001"), "g CO2e"),
            (Decimal("0.000001"), "mg CO2e"),
        ],
    )
