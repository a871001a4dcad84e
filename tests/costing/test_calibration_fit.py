"""A worker class's own calibration: the fit, the quote it drives, and the honesty fields."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from market.costing.estimate import CalibrationPoint, WorkerFit, fit_worker
from market.costing.meter import NO_GPU_MEASURED, measure, select_meter
from market.costing.quote import quote_costs
from market.costing.settings import MeterSettings
from market.money import Money
from tests.costing.conftest import make_settings, make_worker

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
ROYALTY = Money(Decimal("1.00"), "EUR")


def mlp_quote(settings: Any, fit: WorkerFit, *, live_workers: int | None = None) -> Any:
    """A quote for 320 steps of a 1,536-MAC MLP on 569 rows (455 trained), priced from ``fit``."""
    return quote_costs(
        settings,
        worker_class="cpu",
        samples=455,
        epochs=40,
        work_per_sample=1536.0,
        clipping_mode="ghost",
        royalty=ROYALTY,
        now=NOW,
        steps=320,
        fit=fit,
        family="mlp",
        batch=80.0,
        macs=1536.0,
        rows=569,
        live_workers=live_workers,
    )


# A known machine: per family start-up, per step, per sample-MAC; shared per sample and row.
TRUE = {"linear": (0.2, 0.001, 1e-9), "mlp": (0.3, 0.002, 2e-9)}
SAMPLE_S, ROW_S = 2e-5, 1e-6


def exact_points() -> list[CalibrationPoint]:
    points = []
    for family, (startup, step, per_mac) in TRUE.items():
        macs = 60.0 if family == "linear" else 9472.0
        for rows, steps, batch, epochs in (
            (512, 26, 20.0, 1),
            (512, 78, 20.0, 3),
            (512, 6, 160.0, 2),
            (512, 18, 160.0, 6),
            (4096, 51, 80.0, 1),
        ):
            seconds = startup + steps * (step + batch * (SAMPLE_S + macs * per_mac)) + rows * ROW_S
            points.append(CalibrationPoint(family, steps, batch, macs, seconds, rows, epochs))
    return points


def fitted(points: list[CalibrationPoint], floor: float = 0.1) -> WorkerFit:
    return fit_worker(
        points,
        method="estimated",
        avg_power_w=6.0,
        cpu_utilisation=0.25,
        peak_memory_gb=0.5,
        min_relative_error=floor,
        host="test-host",
        measured_at="2026-11-30T12:00:00+00:00",
    )


def test_the_fit_recovers_a_known_machine_and_reports_the_floor_as_its_error() -> None:
    fit = fitted(exact_points())
    # Within one family the model size is fixed, so only predictions are identified there:
    # check them at shapes the calibration never ran.
    for family, (startup, step, per_mac) in TRUE.items():
        macs = 60.0 if family == "linear" else 9472.0
        for steps, batch, rows in ((320, 80.0, 569), (3000, 256.0, 20_000)):
            truth = startup + steps * (step + batch * (SAMPLE_S + macs * per_mac)) + rows * ROW_S
            got = fit.families[family].seconds(steps=steps, batch=batch, macs=macs, rows=rows)
            assert got == pytest.approx(truth, rel=1e-3)
    assert fit.relative_error == pytest.approx(0.1)  # exact data: only the floor remains
    again = WorkerFit.from_dict(json.loads(json.dumps(fit.to_dict())))
    assert again == fit


def test_noisy_calibration_widens_the_expected_error() -> None:
    noisy = [
        CalibrationPoint(p.family, p.steps, p.batch, p.macs, p.seconds * f, p.rows)
        for p, f in zip(exact_points(), [1.3, 0.7] * 5, strict=True)
    ]
    assert fitted(noisy).relative_error > 0.3


def test_a_calibrated_quote_uses_the_fit_and_states_its_error_band() -> None:
    settings = make_settings()
    fit = fitted(exact_points(), floor=0.2)
    costs = mlp_quote(settings, fit, live_workers=1)
    expected = fit.families["mlp"].seconds(steps=320, batch=80.0, macs=1536.0, rows=569)
    assert costs.estimate.seconds == pytest.approx(expected)
    # The meter's own formula: cores x W x measured utilisation + peak GB x W/GB.
    assert costs.estimate.avg_power_w == pytest.approx(2 * 12 * 0.25 + 0.5 * 0.3725)
    data = costs.to_dict()
    assert data["accuracy"]["calibrated"] is True
    assert data["accuracy"]["relative_error"] == pytest.approx(0.2)
    assert data["accuracy"]["seconds_low"] == pytest.approx(expected * 0.8)
    assert data["accuracy"]["seconds_high"] == pytest.approx(expected * 1.2)
    assert "test-host" in data["accuracy"]["basis"]
    assert data["availability"]["live"] is True


def test_an_uncalibrated_quote_without_a_worker_says_both() -> None:
    costs = quote_costs(
        make_settings(),
        worker_class="cpu",
        samples=1000,
        epochs=1,
        work_per_sample=1.0,
        clipping_mode="ghost",
        royalty=ROYALTY,
        now=NOW,
        fit=None,
        family="mlp",
        batch=64.0,
        macs=100.0,
        live_workers=0,
    ).to_dict()
    assert data_error(costs) is None and costs["accuracy"]["calibrated"] is False
    assert costs["availability"]["live"] is False
    assert "cannot be bought" in costs["availability"]["message"]


def data_error(costs: dict) -> float | None:
    return costs["accuracy"]["relative_error"]


def test_a_gpu_class_without_nvml_claims_no_gpu_watts(tmp_path: Path) -> None:
    """No NVML here (no driver, or no GPU): the receipt counts CPU and memory only and says
    so, never a TDP guess for a GPU that may not exist."""

    def no_nvml() -> object:
        from market.costing.nvml import NvmlUnavailable

        raise NvmlUnavailable("no NVIDIA driver on this machine")

    gpu = make_worker(kind="gpu", resources=1, gpus=1, gpu_tdp_w=400.0, server_resources=8)
    settings = MeterSettings(rapl_root=tmp_path / "no-powercap")
    meter, notes = select_meter(settings, gpu, nvml_loader=no_nvml)
    assert NO_GPU_MEASURED in notes
    with measure(settings, gpu, meter=meter) as run:
        sum(range(100_000))
    measurement = run.measurement
    assert measurement.method == "estimated"
    assert set(measurement.energy_components_kwh) == {"cpu", "memory"}
    auto_notes = select_meter(MeterSettings(rapl_root=tmp_path / "none", method="estimated"), gpu)
    assert NO_GPU_MEASURED in auto_notes[1]


def test_where_the_meter_estimates_the_quote_charges_the_fitted_cpu_seconds() -> None:
    """The meter charges CPU seconds x W per core (+ memory x time), and CPU time does not
    stretch when the machine is busy with other work: the quote predicts the CPU seconds
    with their own fit, the time with the wall-time fit."""
    points = [
        CalibrationPoint(
            p.family, p.steps, p.batch, p.macs, p.seconds * 3, p.rows, p.epochs, p.seconds
        )
        for p in exact_points()
    ]
    fit = fitted(points)
    shape = {"steps": 320, "batch": 80.0, "macs": 1536.0, "rows": 569, "epochs": 40}
    cpu = fit.cpu_families["mlp"].seconds(**shape)
    wall = fit.families["mlp"].seconds(**shape)
    assert wall == pytest.approx(3 * cpu, rel=1e-3)
    costs = mlp_quote(make_settings(), fit)
    assert costs.estimate.seconds == pytest.approx(wall)
    joules = cpu * 12.0 + 0.5 * 0.3725 * wall
    assert costs.estimate.energy_kwh * 3.6e6 == pytest.approx(joules)


def test_a_gpu_class_refuses_to_start_where_nvml_reads_no_gpu(tmp_path: Path) -> None:
    from market.config import load_settings
    from market.trading.calibration import GpuUnavailable, require_measurable_gpu

    settings = load_settings(overrides={"home": str(tmp_path)}, environ={})
    require_measurable_gpu(settings, "cpu")  # a CPU class needs no GPU
    try:
        from market.costing.nvml import NvmlReader, load_nvml

        NvmlReader(load_nvml()).close()
    except Exception:
        with pytest.raises(GpuUnavailable, match="needs a GPU whose energy NVML can read"):
            require_measurable_gpu(settings, "gpu")
    else:  # pragma: no cover - only on a machine with an NVIDIA GPU
        require_measurable_gpu(settings, "gpu")
