"""Carbon-aware scheduling on an hourly profile: the greenest start before the deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.costing.errors import DeadlineTooSoon
from market.costing.schedule import candidate_starts, greenest_start, mean_intensity

HIGH, LOW = Decimal(400), Decimal(100)


def profile(low_hours: set[int]) -> tuple[Decimal, ...]:
    return tuple(LOW if hour in low_hours else HIGH for hour in range(24))


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def test_greenest_hour_inside_the_deadline_is_chosen() -> None:
    choice = greenest_start(
        profile({3}), at(28, 22), timedelta(hours=1), at(29, 6), energy_kwh=Decimal("10")
    )
    assert choice.start == at(29, 3)
    assert choice.delay == timedelta(hours=5)
    assert choice.intensity_start_g_per_kwh == LOW
    assert choice.intensity_now_g_per_kwh == HIGH
    assert choice.emissions_start_kg == Decimal(1)  # 10 kWh x 100 g
    assert choice.emissions_now_kg == Decimal(4)
    assert choice.emissions_start_kg < choice.emissions_now_kg
    assert choice.saving_fraction == Decimal("0.75")


def test_greenest_hour_after_the_deadline_is_not_chosen() -> None:
    choice = greenest_start(profile({3}), at(28, 22), timedelta(hours=1), at(29, 3))
    assert choice.start == at(28, 22)  # all allowed windows are equally dirty: start now
    assert choice.emissions_now_kg is None


def test_a_deadline_inside_the_green_hour_takes_the_part_it_can() -> None:
    # Finishing by 03:30, the latest start 02:30 runs half in the clean hour: (400 + 100) / 2.
    choice = greenest_start(profile({3}), at(28, 22), timedelta(hours=1), at(29, 3, 30))
    assert choice.start == at(29, 2, 30)
    assert choice.intensity_start_g_per_kwh == Decimal(250)


def test_a_run_spanning_hours_is_averaged_over_each_hour() -> None:
    # 90 minutes with hour 5 the only clean one: the best window holds all of hour 5 and
    # starts 30 minutes before it (its end on the 06:00 boundary): (30 x 400 + 60 x 100) / 90.
    choice = greenest_start(profile({5}), at(28, 0, 10), timedelta(minutes=90), at(28, 12))
    assert choice.start == at(28, 4, 30)
    assert choice.intensity_start_g_per_kwh == Decimal(200)


def test_mean_intensity_over_partial_hours() -> None:
    # 10:30 to 12:15 on a profile where hour h is worth h: (30 x 10 + 60 x 11 + 15 x 12) / 105
    ramp = tuple(Decimal(hour) for hour in range(24))
    mean = mean_intensity(ramp, at(28, 10, 30), timedelta(minutes=105))
    assert mean == Decimal(300 + 660 + 180) / Decimal(105)


def test_a_run_crossing_midnight_wraps_the_profile() -> None:
    ramp = tuple(Decimal(hour) for hour in range(24))
    assert mean_intensity(ramp, at(28, 23), timedelta(hours=2)) == Decimal("11.5")  # (23 + 0) / 2


def test_deadline_too_soon_is_refused() -> None:
    with pytest.raises(DeadlineTooSoon) as caught:
        greenest_start(profile({3}), at(28, 22), timedelta(hours=3), at(29, 0))
    assert caught.value.code == "deadline_too_soon"


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        greenest_start(profile({3}), datetime(2026, 11, 28, 22), timedelta(hours=1), at(29, 6))
    with pytest.raises(ValueError, match="timezone-aware"):
        greenest_start(profile({3}), at(28, 22), timedelta(hours=1), datetime(2026, 11, 29, 6))


def test_other_time_zones_are_read_as_utc() -> None:
    paris = timezone(timedelta(hours=1))
    now = datetime(2026, 11, 28, 23, 0, tzinfo=paris)  # 22:00 UTC
    choice = greenest_start(profile({3}), now, timedelta(hours=1), at(29, 6))
    assert choice.start == at(29, 3)
    assert choice.start.tzinfo is UTC


def test_profile_must_have_24_values() -> None:
    with pytest.raises(ValueError, match="24 values"):
        greenest_start((HIGH,) * 23, at(28, 0), timedelta(hours=1), at(28, 5))


def test_choice_serialises_to_plain_json() -> None:
    data = greenest_start(profile({3}), at(28, 22), timedelta(hours=1), at(29, 6)).to_dict()
    assert data["start"] == "2026-11-29T03:00:00+00:00"
    assert data["intensity_start_g_per_kwh"] == "100"
    assert data["emissions_start_kg"] is None


intensities = st.lists(st.integers(min_value=0, max_value=900), min_size=24, max_size=24)


@settings(max_examples=25, deadline=None)
@given(
    values=intensities,
    now_minute=st.integers(min_value=0, max_value=24 * 60 - 1),
    duration_min=st.integers(min_value=1, max_value=5 * 60),
    slack_min=st.integers(min_value=0, max_value=12 * 60),
)
def test_no_start_on_a_five_minute_grid_beats_the_choice(
    values: list[int], now_minute: int, duration_min: int, slack_min: int
) -> None:
    hourly = tuple(Decimal(v) for v in values)
    now = at(28, 0) + timedelta(minutes=now_minute)
    duration = timedelta(minutes=duration_min)
    deadline = now + duration + timedelta(minutes=slack_min)
    choice = greenest_start(hourly, now, duration, deadline)
    assert now <= choice.start <= deadline - duration
    assert choice.intensity_start_g_per_kwh <= choice.intensity_now_g_per_kwh
    for offset in range(0, slack_min + 1, 5):
        other = mean_intensity(hourly, now + timedelta(minutes=offset), duration)
        assert choice.intensity_start_g_per_kwh <= other + Decimal("1e-20")


def test_candidates_include_both_ends_and_boundaries() -> None:
    starts = candidate_starts(at(28, 0, 10), at(28, 2, 0), timedelta(minutes=90))
    assert starts[0] == at(28, 0, 10) and starts[-1] == at(28, 2)
    assert at(28, 1) in starts and at(28, 0, 30) in starts  # on a boundary; ending on 02:00


def test_a_deadline_days_away_picks_the_first_green_window() -> None:
    choice = greenest_start(profile({3}), at(1, 22), timedelta(hours=1), at(28, 0))
    assert choice.start == at(2, 3)
