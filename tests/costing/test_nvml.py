"""The NVML path: a clean fallback without library or device, and the counters when present."""

from __future__ import annotations

import ctypes
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from market.costing.meter import (
    NO_GPU_MEASURED,
    EstimatedMeter,
    NvmlMeter,
    measure,
    select_meter,
)
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


def _nvml_library_loads() -> bool:
    """Whether NVIDIA's driver library is here, found without the code under test."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


HAS_NVML = _nvml_library_loads()
without_nvml = pytest.mark.skipif(
    HAS_NVML,
    reason="libnvidia-ml.so.1 loads here: the fallback is tested with fakes, the counters "
    "by test_real_nvml_measures_this_machines_gpus",
)
with_nvml = pytest.mark.skipif(
    not HAS_NVML,
    reason="no NVIDIA driver here (libnvidia-ml.so.1 does not load): the counters are tested "
    "with FakeNvml, the real binding by the fallback tests",
)
NO_LIBRARY = "NVML: NVML Shared Library Not Found"


def test_the_binding_is_installed() -> None:
    """nvidia-ml-py is a dependency: only the driver may be missing, never the binding."""
    module = load_nvml()
    assert module.__name__ == "pynvml"
    assert callable(module.nvmlDeviceGetTotalEnergyConsumption)


@without_nvml
def test_without_the_driver_the_real_reader_is_unavailable_with_the_reason() -> None:
    with pytest.raises(NvmlUnavailable) as raised:
        NvmlReader(load_nvml())
    assert str(raised.value) == NO_LIBRARY
    assert type(raised.value.__cause__).__name__ == "NVMLError_LibraryNotFound"


@without_nvml
def test_real_loader_on_this_machine_falls_back_to_the_estimate(
    gpu_worker: WorkerClassSettings, no_rapl: MeterSettings
) -> None:
    meter, notes = select_meter(no_rapl, gpu_worker)
    assert isinstance(meter, EstimatedMeter)
    assert meter.gpus == 0  # no GPU watts that NVML did not read (docs/costs.md)
    assert notes[0] == f"nvml unavailable: {NO_LIBRARY}"
    assert notes[1].startswith("rapl unavailable")
    assert notes[2] == NO_GPU_MEASURED and len(notes) == 3

    with measure(no_rapl, gpu_worker) as run:
        sum(range(100_000))
    result = run.measurement
    assert result.method == "estimated"
    assert result.notes[0] == f"nvml unavailable: {NO_LIBRARY}"
    assert NO_GPU_MEASURED in result.notes
    assert set(result.energy_components_kwh) == {"cpu", "memory"}


@with_nvml
def test_real_nvml_measures_this_machines_gpus(
    gpu_worker: WorkerClassSettings, no_rapl: MeterSettings
) -> None:  # pragma: no cover - only on a machine with an NVIDIA GPU
    meter, notes = select_meter(no_rapl, gpu_worker)
    assert isinstance(meter, NvmlMeter), notes
    with measure(no_rapl, gpu_worker, meter=meter) as run:
        sum(range(100_000))
    result = run.measurement
    assert result.method == "nvml"
    gpus = {k: v for k, v in result.energy_components_kwh.items() if k.startswith("gpu")}
    assert gpus and all(v >= 0 for v in gpus.values())


def test_gpu_worker_without_nvml_falls_back_to_the_cpu_model(
    gpu_worker: WorkerClassSettings, no_rapl: MeterSettings
) -> None:
    def missing() -> Any:
        raise NvmlUnavailable("nvidia-ml-py is not installed")

    meter, notes = select_meter(no_rapl, gpu_worker, nvml_loader=missing)
    assert isinstance(meter, EstimatedMeter)
    assert meter.gpus == 0  # the CPU model only: a GPU nobody measured is not claimed
    assert notes[0] == "nvml unavailable: nvidia-ml-py is not installed"
    assert any(note.startswith("rapl unavailable") for note in notes)
    assert notes[-1] == NO_GPU_MEASURED


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
