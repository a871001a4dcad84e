"""Carbon-aware scheduling: the start, before a deadline, with the least emissions.

A region's hourly profile gives the grid intensity (gCO2e/kWh) of each UTC hour of a typical
day, constant within the hour. At constant power, a run's emissions are proportional to the
integral of intensity over its window [start, start + duration), so the start minimising the
mean intensity over the window minimises emissions.

Why only a few candidate starts are tried: that integral is piecewise linear in the start,
with kinks only where the window's start or end crosses an hour boundary, so its minimum lies
at one of: now, the latest start (deadline - duration), a start on an hour boundary, or a
start whose end falls on an hour boundary. Evaluating those is exact, and ties go to the
earliest start (sooner results at equal emissions).

The deadline is when the run must have finished. All times are timezone-aware; naive ones are
refused, and everything is computed in UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from market.costing.errors import DeadlineTooSoon
from market.money import money_context

HOUR = timedelta(hours=1)


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (UTC), got a naive datetime")
    return moment.astimezone(UTC)


def _check_profile(profile: Sequence[Decimal]) -> None:
    if len(profile) != 24:
        raise ValueError(f"an hourly profile has 24 values, got {len(profile)}")
    if any(value < 0 for value in profile):
        raise ValueError("intensities must be >= 0")


def mean_intensity(profile: Sequence[Decimal], start: datetime, duration: timedelta) -> Decimal:
    """Time-weighted mean intensity (gCO2e/kWh) over [start, start + duration)."""
    _check_profile(profile)
    start = _utc(start, "start")
    if duration <= timedelta(0):
        return Decimal(profile[start.hour])
    ctx = money_context()
    end = start + duration
    total = Decimal(0)  # gCO2e/kWh x seconds
    cursor = start
    while cursor < end:
        hour_end = cursor.replace(minute=0, second=0, microsecond=0) + HOUR
        piece_end = min(hour_end, end)
        seconds = Decimal(str((piece_end - cursor).total_seconds()))
        total = ctx.add(total, ctx.multiply(Decimal(profile[cursor.hour]), seconds))
        cursor = piece_end
    return ctx.divide(total, Decimal(str(duration.total_seconds())))


@dataclass(frozen=True, slots=True)
class ScheduleChoice:
    """The greenest start beside starting now, for the quote to show side by side."""

    now: datetime
    start: datetime
    duration: timedelta
    intensity_now_g_per_kwh: Decimal
    intensity_start_g_per_kwh: Decimal
    emissions_now_kg: Decimal | None
    emissions_start_kg: Decimal | None

    @property
    def delay(self) -> timedelta:
        return self.start - self.now

    @property
    def saving_fraction(self) -> Decimal:
        """1 - greenest/now: the share of emissions avoided by waiting (0 when none)."""
        if self.intensity_now_g_per_kwh == 0:
            return Decimal(0)
        ratio = money_context().divide(self.intensity_start_g_per_kwh, self.intensity_now_g_per_kwh)
        return Decimal(1) - ratio

    def to_dict(self) -> dict[str, Any]:
        def text(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "now": self.now.isoformat(),
            "start": self.start.isoformat(),
            "duration_s": self.duration.total_seconds(),
            "intensity_now_g_per_kwh": str(self.intensity_now_g_per_kwh),
            "intensity_start_g_per_kwh": str(self.intensity_start_g_per_kwh),
            "emissions_now_kg": text(self.emissions_now_kg),
            "emissions_start_kg": text(self.emissions_start_kg),
            "saving_fraction": str(self.saving_fraction),
        }


def _hour_floor(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def candidate_starts(now: datetime, latest: datetime, duration: timedelta) -> list[datetime]:
    """Starts in [now, latest] where the emissions curve can have its minimum (see module)."""
    candidates = {now, latest}
    boundary = _hour_floor(now) + HOUR
    while boundary <= latest + duration:
        for start in (boundary, boundary - duration):
            if now <= start <= latest:
                candidates.add(start)
        boundary += HOUR
    return sorted(candidates)


def greenest_start(
    profile: Sequence[Decimal],
    now: datetime,
    duration: timedelta,
    deadline: datetime,
    *,
    energy_kwh: Decimal | None = None,
) -> ScheduleChoice:
    """The start in [now, deadline - duration] with the least mean intensity over the run.

    ``energy_kwh`` (facility energy of the run, PUE included) turns intensities into
    emissions in kg; without it only intensities are compared. Raises DeadlineTooSoon when
    the run cannot finish by the deadline even if started now.
    """
    _check_profile(profile)
    now = _utc(now, "now")
    deadline = _utc(deadline, "deadline")
    if duration < timedelta(0):
        raise ValueError("duration must be >= 0")
    latest = deadline - duration
    if latest < now:
        raise DeadlineTooSoon(
            f"a run of {duration} started now ends after the deadline {deadline.isoformat()}",
            details={"deadline": deadline.isoformat(), "duration_s": duration.total_seconds()},
        )
    # The profile repeats daily, so the emissions of start s and s + 24 h are equal: the
    # earliest best start lies in the first day of the window, whatever the deadline.
    search_until = min(latest, now + timedelta(days=1))
    best_start = now
    best = now_intensity = mean_intensity(profile, now, duration)
    for start in candidate_starts(now, search_until, duration):
        value = mean_intensity(profile, start, duration)
        if value < best:
            best, best_start = value, start

    def emissions(intensity: Decimal) -> Decimal | None:
        if energy_kwh is None:
            return None
        ctx = money_context()
        return ctx.divide(ctx.multiply(energy_kwh, intensity), Decimal(1000))

    return ScheduleChoice(
        now=now,
        start=best_start,
        duration=duration,
        intensity_now_g_per_kwh=now_intensity,
        intensity_start_g_per_kwh=best,
        emissions_now_kg=emissions(now_intensity),
        emissions_start_kg=emissions(best),
    )
