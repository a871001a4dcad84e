"""A quote's costs: estimate, price now, and the greenest start beside it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from market.costing.quote import quote_costs
from market.money import Money
from tests.costing.conftest import make_region, make_settings

NOW = datetime(2026, 11, 28, 22, 0, tzinfo=UTC)
ROYALTY = Money(Decimal("1.50"), "EUR")


def green_at_three() -> tuple[Decimal, ...]:
    return tuple(Decimal(100) if hour == 3 else Decimal(400) for hour in range(24))


def test_quote_without_deadline_prices_now() -> None:
    settings = make_settings()
    # 126,000 samples x 1 epoch x 2.04 / 63,000 samples/s = 4.08 s
    costs = quote_costs(
        settings,
        worker_class="cpu",
        samples=126_000,
        epochs=1,
        work_per_sample=1.0,
        clipping_mode="ghost",
        royalty=ROYALTY,
        now=NOW,
    )
    assert costs.estimate.seconds == pytest.approx(4.08)
    assert costs.estimate.avg_power_w == pytest.approx(2 * 12 + 8 * 0.3725)
    assert costs.now.basis == "estimate"
    assert costs.now.grid_intensity_g_per_kwh == Decimal(400)
    assert costs.schedule is None and costs.greenest is None
    json.dumps(costs.to_dict())


def test_quote_with_deadline_shows_the_greenest_start_beside_now() -> None:
    settings = make_settings(
        regions={"test": make_region(hourly_intensity_g_per_kwh=green_at_three())}
    )
    # 63,000 x 50 samples at 63,000/s non-private: 50 s, well inside hour 3.
    costs = quote_costs(
        settings,
        worker_class="cpu",
        samples=63_000,
        epochs=50,
        work_per_sample=1.0,
        clipping_mode="none",
        royalty=ROYALTY,
        now=NOW,
        deadline=datetime(2026, 11, 29, 6, tzinfo=UTC),
    )
    assert costs.schedule is not None and costs.greenest is not None
    assert costs.schedule.start == datetime(2026, 11, 29, 3, tzinfo=UTC)
    assert costs.greenest.emissions_kg < costs.now.emissions_kg
    assert costs.greenest.emissions_kg * 4 == costs.now.emissions_kg
    assert costs.schedule.emissions_now_kg == costs.now.emissions_kg
    assert costs.schedule.emissions_start_kg == costs.greenest.emissions_kg
    data = json.loads(json.dumps(costs.to_dict()))
    assert data["schedule"]["start"] == "2026-11-29T03:00:00+00:00"


def test_unknown_names_are_refused() -> None:
    settings = make_settings()
    common = {
        "samples": 1,
        "epochs": 1,
        "work_per_sample": 1.0,
        "royalty": ROYALTY,
        "now": NOW,
    }
    with pytest.raises(KeyError, match="worker class"):
        quote_costs(settings, worker_class="tpu", clipping_mode="none", **common)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="region"):
        quote_costs(settings, worker_class="cpu", clipping_mode="none", region="mars", **common)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="clipping mode"):
        quote_costs(settings, worker_class="cpu", clipping_mode="hooks", **common)  # type: ignore[arg-type]
