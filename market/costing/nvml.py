"""GPU energy from NVML's total-energy counter (nvidia-ml-py, imported as ``pynvml``).

``nvmlDeviceGetTotalEnergyConsumption`` returns the millijoules a GPU used since the driver was
loaded (Volta and newer), so a run's energy is the difference of two reads; it does not wrap in
any realistic lifetime (64 bits). It is polled at each sample anyway so that a GPU that stops
answering mid-run loses only the last interval.

Why the module is passed in: the worker machines of the CI have no GPU and no libnvidia-ml, and
tests must exercise both the fallback and the happy path. ``load_nvml()`` is the one place that
imports the real binding; every failure (no package, no library, no device, an old GPU without
the counter) becomes ``NvmlUnavailable`` with the reason, and the meter falls back.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class NvmlUnavailable(Exception):
    """NVML cannot measure here: the reason is the message."""


def load_nvml() -> ModuleType:
    """Import nvidia-ml-py; NvmlUnavailable when it is not installed."""
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise NvmlUnavailable(f"nvidia-ml-py is not installed ({exc})") from exc


class NvmlReader:
    """Energy and utilisation of the GPUs a run uses."""

    method = "nvml"

    def __init__(self, nvml: ModuleType | Any, *, indices: tuple[int, ...] = ()) -> None:
        self._nvml = nvml
        self._initialised = False
        try:
            nvml.nvmlInit()
            self._initialised = True
            count = int(nvml.nvmlDeviceGetCount())
            if count == 0:
                raise NvmlUnavailable("NVML found no GPU")
            chosen = indices or tuple(range(count))
            missing = [i for i in chosen if not 0 <= i < count]
            if missing:
                raise NvmlUnavailable(f"GPU indices {missing} absent ({count} present)")
            self.indices = chosen
            self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in chosen]
            for handle in self._handles:  # the counter must exist (Volta or newer)
                nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
        except NvmlUnavailable:
            self.close()
            raise
        except Exception as exc:  # pynvml raises NVMLError subclasses, or OSError on load
            self.close()
            raise NvmlUnavailable(f"NVML: {exc}") from exc
        self._last_mj: list[int] = []
        self._total_mj: list[int] = []
        self._util_sum = 0.0
        self._util_count = 0

    def _read(self) -> list[int]:
        try:
            return [int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self._handles]
        except Exception as exc:
            raise NvmlUnavailable(f"NVML read failed: {exc}") from exc

    def start(self) -> None:
        self._last_mj = self._read()
        self._total_mj = [0] * len(self._handles)

    def poll(self) -> None:
        values = self._read()
        for i, value in enumerate(values):
            self._total_mj[i] += max(0, value - self._last_mj[i])
            self._last_mj[i] = value
        try:
            for handle in self._handles:
                self._util_sum += float(self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                self._util_count += 1
        except Exception:  # utilisation is informative only; energy is what is billed
            pass

    def joules_by_gpu(self) -> dict[str, float]:
        return {
            f"gpu{index}": mj / 1000.0
            for index, mj in zip(self.indices, self._total_mj, strict=True)
        }

    def mean_utilisation(self) -> float | None:
        """Mean GPU utilisation 0..1 over the samples, None when NVML gave none."""
        if not self._util_count:
            return None
        return self._util_sum / self._util_count / 100.0

    def close(self) -> None:
        if self._initialised:
            self._initialised = False
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # shutting down a half-initialised library must not mask the cause
                pass
