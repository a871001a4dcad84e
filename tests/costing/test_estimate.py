"""Run-time and power estimates for quotes, by hand."""

from __future__ import annotations

import itertools

import pytest

from market.costing.estimate import (
    RunEstimate,
    calibrate_throughput,
    estimate_run,
    estimate_seconds,
    green_algorithms_power_w,
)
from tests.costing.conftest import make_worker


def test_estimate_seconds_by_hand() -> None:
    # 5 + 30,000 x 3 x (2 / 1) x 2.04 / 63,000 = 5 + 367,200 / 63,000
    seconds = estimate_seconds(
        samples=30_000,
        epochs=3,
        work_per_sample=2.0,
        reference_work_per_sample=1.0,
        dp_overhead_factor=2.04,
        throughput_samples_per_s=63_000.0,
        startup_seconds=5.0,
    )
    assert seconds == pytest.approx(5 + 367_200 / 63_000)


def test_throughput_measured_on_the_same_workload_needs_no_reference() -> None:
    seconds = estimate_seconds(
        samples=1000,
        epochs=2,
        work_per_sample=7.0,
        dp_overhead_factor=1.0,
        throughput_samples_per_s=500.0,
    )
    assert seconds == pytest.approx(4.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"samples": -1},
        {"work_per_sample": 0.0},
        {"throughput_samples_per_s": 0.0},
        {"dp_overhead_factor": 0.5},
        {"reference_work_per_sample": 0.0},
    ],
)
def test_estimate_seconds_refuses_nonsense(bad: dict[str, float]) -> None:
    arguments: dict[str, float] = {
        "samples": 10,
        "epochs": 1,
        "work_per_sample": 1.0,
        "dp_overhead_factor": 1.0,
        "throughput_samples_per_s": 1.0,
    }
    arguments.update(bad)
    with pytest.raises(ValueError):
        estimate_seconds(**arguments)  # type: ignore[arg-type]


def test_calibrate_keeps_the_fastest_timed_repeat() -> None:
    ticks = itertools.accumulate([0.0, 0.5, 0.0, 0.4, 0.0, 0.25])  # start/end per repeat
    calls: list[int] = []

    def benchmark() -> int:
        calls.append(1)
        return 1000

    rate = calibrate_throughput(benchmark, warmup=2, repeats=3, clock=ticks.__next__)
    assert rate == pytest.approx(1000 / 0.25)
    assert len(calls) == 5  # two warm-ups, three timed


def test_calibrate_times_a_real_callable() -> None:
    def benchmark() -> int:
        total = 0
        for i in range(20_000):
            total += i * i
        return 20_000

    assert calibrate_throughput(benchmark, warmup=0, repeats=2) > 0


def test_calibrate_refuses_a_benchmark_without_samples() -> None:
    with pytest.raises(ValueError, match="samples"):
        calibrate_throughput(lambda: 0, warmup=0, repeats=1)


def test_green_algorithms_power_by_hand() -> None:
    # 2 x 12 x 0.5 + 8 x 0.3725 + 1 x 400 x 0.5 = 12 + 2.98 + 200
    power = green_algorithms_power_w(
        cores=2,
        watts_per_core=12.0,
        cpu_utilisation=0.5,
        memory_gb=8.0,
        watts_per_gb=0.3725,
        gpus=1,
        gpu_tdp_w=400.0,
        gpu_utilisation=0.5,
    )
    assert power == pytest.approx(214.98)
    clamped = green_algorithms_power_w(
        cores=2, watts_per_core=12.0, cpu_utilisation=3.0, memory_gb=0.0, watts_per_gb=0.3725
    )
    assert clamped == pytest.approx(24.0)


def test_estimate_run_assumes_full_use_of_the_class() -> None:
    estimate = estimate_run(3600.0, make_worker(), memory_watts_per_gb=0.3725)
    assert estimate.avg_power_w == pytest.approx(2 * 12 + 8 * 0.3725)
    assert estimate.energy_kwh == pytest.approx((24 + 2.98) / 1000)
    assert estimate.to_dict()["method"] == "estimate"


def test_run_estimate_energy() -> None:
    assert RunEstimate(seconds=3600, avg_power_w=100.0).energy_kwh == pytest.approx(0.1)
