"""The NVML path: a clean fallback without library or device, and the counters when present."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from market.costing.meter import EstimatedMeter, NvmlMeter, measure, select_meter
from market.costing.nvml import NvmlReader, NvmlUnavailable, load_nvml
from market.costing.settings import MeterSettings, WorkerClassSettings
from tests.costing.conftest import make_worker


class NVMLError(Exception):
    pass


class FakeNvml:
    """The part of pynvml the reader uses: energy counters in mJ and utilisation."""

    def __init__(self, count: int = 2, *, energy: bool = True, init_error: bool = False) -> None:
        self.count = count
        self.energy_mj = [1_000_000 * (i + 1) for i in range(count)]
        self.has_energy = energy
        self.init_error = init_error
        self.shutdowns = 0

    def nvmlInit(self) -> None:
        if self.init_error:
            raise NVMLError("Driver Not Loaded")

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1

    def nvmlDeviceGetCount(self) -> int:
        return self.count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> int:
        if not self.has_energy:
            raise NVMLError("Not Supported")
        return self.energy_mj[handle]

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> Any:
        return SimpleNamespace(gpu=80, memory=10)


@pytest.fixture
def gpu_worker() -> WorkerClassSettings:
    return make_worker(kind="gpu", resources=1, server_resources=8, gpus=1, gpu_tdp_w=400.0)


def test_this_machine_has_no_nvml_and_says_so() -> None:
    try:
        module = load_nvml()
    except NvmlUnavailable:
        return  # nvidia-ml-py absent: the reason is the message
    try:
        reader = NvmlReader(module)
    except NvmlUnavailable as exc:
        assert str(exc)  # no libnvidia-ml, or no device: a reason is given
    else:  # pragma: no cover - only on a machine with a GPU
        reader.close()
        pytest.skip("this machine has an NVIDIA GPU; the fallback is tested with fakes below")


def test_gpu_worker_without_nvml_falls_back_to_the_estimate(
    gpu_worker: WorkerClassSettings, no_rapl: MeterSettings
) -> None:
    def missing() -> Any:
        raise NvmlUnavailable("nvidia-ml-py is not installed")

    meter, notes = select_meter(no_rapl, gpu_worker, nvml_loader=missing)
    assert isinstance(meter, EstimatedMeter)
    assert meter.gpus == 1 and meter.gpu_tdp_w == 400.0  # GPU power is still estimated
    assert notes[0] == "nvml unavailable: nvidia-ml-py is not installed"
    assert any(note.startswith("rapl unavailable") for note in notes)


def test_real_loader_on_this_machine_falls_back_cleanly(
    gpu_worker: WorkerClassSettings, no_rapl: MeterSettings
) -> None:
    meter, notes = select_meter(no_rapl, gpu_worker)
    if isinstance(meter, NvmlMeter):  # pragma: no cover - only on a machine with a GPU
        meter.close()
        pytest.skip("this machine has an NVIDIA GPU")
    assert isinstance(meter, EstimatedMeter)
    assert any(note.startswith("nvml unavailable") for note in notes)


@pytest.mark.parametrize(
    ("fake", "reason"),
    [
        (FakeNvml(count=0), "no GPU"),
        (FakeNvml(init_error=True), "Driver Not Loaded"),
        (FakeNvml(energy=False), "Not Supported"),
    ],
)
def test_no_device_or_no_counter_is_unavailable(fake: FakeNvml, reason: str) -> None:
    with pytest.raises(NvmlUnavailable, match=reason):
        NvmlReader(fake)
    assert fake.shutdowns == (0 if fake.init_error else 1)


def test_absent_index_is_unavailable() -> None:
    with pytest.raises(NvmlUnavailable, match=r"indices \[3\] absent"):
        NvmlReader(FakeNvml(count=2), indices=(0, 3))


def test_cpu_worker_does_not_try_nvml_on_auto(
    worker: WorkerClassSettings, no_rapl: MeterSettings
) -> None:
    def fail() -> Any:
        raise AssertionError("NVML must not be loaded for a CPU worker")

    meter, _ = select_meter(no_rapl, worker, nvml_loader=fail)
    assert isinstance(meter, EstimatedMeter)


def test_nvml_disabled_is_said(gpu_worker: WorkerClassSettings, tmp_path: Path) -> None:
    settings = MeterSettings(rapl_root=tmp_path, nvml_enabled=False)
    meter, notes = select_meter(settings, gpu_worker, nvml_loader=FakeNvml)
    assert isinstance(meter, EstimatedMeter)
    assert "nvml disabled by costing.meter.nvml_enabled" in notes


def test_nvml_measures_the_gpus_used(gpu_worker: WorkerClassSettings, tmp_path: Path) -> None:
    fake = FakeNvml(count=2)
    settings = MeterSettings(rapl_root=tmp_path, sample_interval_s=0.05, gpu_indices=(1,))
    meter, _ = select_meter(settings, gpu_worker, nvml_loader=lambda: fake)
    assert isinstance(meter, NvmlMeter)
    with measure(settings, gpu_worker, meter=meter) as run:
        fake.energy_mj[0] += 999_000  # GPU 0 is not this run's
        fake.energy_mj[1] += 50_000  # 50 J
    result = run.measurement
    assert result.method == "nvml"
    assert result.energy_components_kwh["gpu1"] == pytest.approx(50 / 3.6e6)
    assert "gpu0" not in result.energy_components_kwh
    assert {"host-cpu", "host-memory"} <= set(result.energy_components_kwh)
    assert "host energy by estimated" in result.notes
    assert fake.shutdowns == 1
