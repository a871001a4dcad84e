"""The meter around real work on this machine (no RAPL, no GPU: the estimate)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from market.costing.meter import EstimatedMeter, Measurement, Usage, measure
from market.costing.settings import MeterSettings, WorkerClassSettings

GIB = 1 << 30


def busy(seconds: float, cpu_seconds: float = 0.0) -> None:
    """Real CPU work: repeated matrix products, renormalised so values stay finite, for at
    least ``seconds`` of wall time *and* ``cpu_seconds`` of this process's CPU time (so a
    busy machine makes it last longer instead of making the CPU figure small)."""
    rng = np.random.default_rng(0)
    matrix = rng.random((200, 200))
    until = time.monotonic() + seconds
    cpu_until = time.process_time() + cpu_seconds
    while time.monotonic() < until or time.process_time() < cpu_until:
        matrix = matrix @ matrix
        matrix /= np.abs(matrix).max()


def test_real_cpu_workload_is_estimated_with_energy(
    no_rapl: MeterSettings, worker: WorkerClassSettings
) -> None:
    with measure(no_rapl, worker) as run:
        busy(1.0, cpu_seconds=0.2)
    result = run.measurement
    assert result.method == "estimated"
    assert result.completed
    assert result.seconds >= 1.0
    assert result.cpu_seconds >= 0.2  # busy() spent at least that, however loaded the machine
    assert result.energy_kwh > 0
    assert result.peak_rss_bytes > 10 * 1024 * 1024
    # measure() samples at the start and the end itself; its thread at most once per interval
    # in between (how often depends on the machine's load, so no lower bound on those).
    assert 2 <= result.samples <= result.seconds / no_rapl.sample_interval_s + 2
    assert result.avg_power_w == pytest.approx(result.energy_kwh * 3.6e6 / result.seconds)
    assert sum(result.energy_components_kwh.values()) == pytest.approx(result.energy_kwh)
    assert 0 < result.cpu_utilisation <= 1
    assert any("rapl unavailable" in note for note in result.notes)


def test_children_cpu_time_is_counted(no_rapl: MeterSettings, worker: WorkerClassSettings) -> None:
    code = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"
    with measure(no_rapl, worker) as run:
        subprocess.run([sys.executable, "-c", code], check=True)
    assert run.measurement.cpu_seconds >= 0.45


def test_a_live_grandchilds_cpu_time_is_counted(
    no_rapl: MeterSettings, worker: WorkerClassSettings
) -> None:
    """Still running when the block ends, under a shell: found through the process tree."""
    burn = (
        "import sys, time\nt = time.process_time()\n"
        "while time.process_time() - t < 0.5: pass\n"
        "print('burnt', flush=True)\ntime.sleep(60)\n"
    )
    with measure(no_rapl, worker) as run:
        shell = subprocess.Popen(
            ["sh", "-c", f'"{sys.executable}" -c "$0"; :', burn], stdout=subprocess.PIPE, text=True
        )
        try:
            assert shell.stdout is not None and shell.stdout.readline().strip() == "burnt"
        except BaseException:
            shell.kill()
            raise
    try:
        assert run.measurement.cpu_seconds >= 0.45
    finally:
        for child in psutil.Process(shell.pid).children(recursive=True):
            child.kill()
        shell.kill()
        shell.wait()
        if shell.stdout is not None:
            shell.stdout.close()


def test_a_failing_run_is_still_measured(
    no_rapl: MeterSettings, worker: WorkerClassSettings
) -> None:
    with pytest.raises(RuntimeError, match="boom"), measure(no_rapl, worker) as run:
        busy(0.1)
        raise RuntimeError("boom")
    assert run.measurement.completed is False
    assert run.measurement.energy_kwh > 0


def test_measurement_is_unavailable_inside_the_block(
    no_rapl: MeterSettings, worker: WorkerClassSettings
) -> None:
    with measure(no_rapl, worker) as run, pytest.raises(RuntimeError, match="not finished"):
        _ = run.measurement


def test_measurement_round_trips_through_plain_json(
    no_rapl: MeterSettings, worker: WorkerClassSettings
) -> None:
    with measure(no_rapl, worker) as run:
        busy(0.05)
    text = json.dumps(run.measurement.to_dict())
    assert Measurement.from_dict(json.loads(text)) == run.measurement
    assert run.measurement.started_at.utcoffset() is not None


def test_estimated_meter_formula_by_hand() -> None:
    meter = EstimatedMeter(
        cores=2,
        watts_per_core=12.0,
        watts_per_gb=0.3725,
        gpus=1,
        gpu_tdp_w=400.0,
        gpu_utilisation=0.5,
    )
    reading = meter.finish(Usage(seconds=100.0, cpu_seconds=10.0, peak_rss_bytes=2 * GIB))
    assert reading.method == "estimated"
    assert reading.joules == pytest.approx({"cpu": 120.0, "memory": 74.5, "gpu": 20000.0})


def test_estimated_cpu_power_is_capped_at_the_cores_held() -> None:
    meter = EstimatedMeter(cores=2, watts_per_core=12.0, watts_per_gb=0.3725)
    reading = meter.finish(Usage(seconds=100.0, cpu_seconds=500.0, peak_rss_bytes=0))
    assert reading.joules["cpu"] == pytest.approx(2 * 12.0 * 100.0)
    assert "gpu" not in reading.joules


def test_forced_estimate_skips_hardware(worker: WorkerClassSettings) -> None:
    settings = MeterSettings(method="estimated", sample_interval_s=0.05)
    with measure(settings, worker) as run:
        busy(0.05)
    assert run.measurement.method == "estimated"
    assert run.measurement.notes == ()
