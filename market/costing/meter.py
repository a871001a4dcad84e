"""The cost meter: a context manager around a training run that measures what it used.

::

    with measure(settings.costing.meter, worker_class) as run:
        train_private(...)
    receipt_fields = run.measurement.to_dict()

It records wall time T (``time.monotonic``), the CPU seconds of the process and its children
(psutil), the peak resident memory (sampled), and energy by the best method available:

``nvml``       GPU energy counters (a GPU worker), plus the host's CPU and memory by RAPL or,
               failing that, the estimate; the components say which.
``rapl``       the CPU package and DRAM energy counters of Linux powercap.
``estimated``  the Green Algorithms model (market.costing.estimate) from the measured CPU
               seconds and peak memory.

GPU energy is only ever what NVML read. A GPU class whose GPUs NVML cannot read (no GPU, no
driver) is metered as CPU and memory alone, and the receipt's notes say so: a TDP x usage
guess would claim watts of a GPU that may not exist. (``market worker`` also refuses to start
a GPU class where NVML reads no GPU: ``market.trading.calibration.require_measurable_gpu``.)

Energy here is IT energy at the hardware; the price model multiplies by the region's PUE.
Each meter sits behind the ``EnergyMeter`` protocol and ``select_meter`` is the one place
that chooses, from settings; a meter that fails mid-run is replaced by the estimate for that
measurement, and ``notes`` says why, so a receipt never claims a method it did not use.

Limits, said once: peak memory is sampled (a spike shorter than ``sample_interval_s`` can be
missed); CPU time of a child that exits and is reaped by someone other than its parent is
lost, as psutil only sees children reaped by the process or still alive; counter meters
measure the whole machine, so concurrent runs on one worker each see the other's energy (the
worker runs one training at a time).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any, Literal, Protocol

import psutil

from market.costing.estimate import BYTES_PER_GB
from market.costing.nvml import NvmlReader, NvmlUnavailable, load_nvml
from market.costing.rapl import JOULES_PER_KWH, RaplReader, RaplUnavailable
from market.costing.settings import MeterSettings, WorkerClassSettings

MeterMethod = Literal["rapl", "nvml", "estimated"]


@dataclass(frozen=True, slots=True)
class Usage:
    """What the sampler saw, handed to a meter when the run ends."""

    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int


@dataclass(frozen=True, slots=True)
class EnergyReading:
    """A meter's answer: joules per component ('package-0', 'gpu0', 'cpu', 'memory'...)."""

    method: MeterMethod
    joules: Mapping[str, float]
    notes: tuple[str, ...] = ()


class EnergyMeter(Protocol):
    """A source of energy for one run. ``poll`` is called at every sample interval."""

    @property
    def method(self) -> MeterMethod: ...

    def start(self) -> None: ...

    def poll(self) -> None: ...

    def finish(self, usage: Usage) -> EnergyReading: ...

    def close(self) -> None: ...


class EstimatedMeter:
    """Green Algorithms: CPU = cpu_seconds x W/core (= cores x W x utilisation x T, capped at
    full use of the cores held); memory = peak GB x W/GB x T (memory is held, and draws power,
    whether it is touched or not, so the peak held is charged for the whole run);
    GPU = gpus x TDP x usage factor x T."""

    method: MeterMethod = "estimated"

    def __init__(
        self,
        *,
        cores: int,
        watts_per_core: float,
        watts_per_gb: float,
        gpus: int = 0,
        gpu_tdp_w: float = 0.0,
        gpu_utilisation: float = 1.0,
        include_host: bool = True,
    ) -> None:
        self.include_host = include_host
        self.cores = cores
        self.watts_per_core = watts_per_core
        self.watts_per_gb = watts_per_gb
        self.gpus = gpus
        self.gpu_tdp_w = gpu_tdp_w
        self.gpu_utilisation = gpu_utilisation

    def start(self) -> None:
        pass

    def poll(self) -> None:
        pass

    def finish(self, usage: Usage) -> EnergyReading:
        joules: dict[str, float] = {}
        if self.include_host:
            busy_core_seconds = min(usage.cpu_seconds, self.cores * usage.seconds)
            joules["cpu"] = busy_core_seconds * self.watts_per_core
            joules["memory"] = (
                usage.peak_rss_bytes / BYTES_PER_GB * self.watts_per_gb * usage.seconds
            )
        if self.gpus:
            joules["gpu"] = self.gpus * self.gpu_tdp_w * self.gpu_utilisation * usage.seconds
        return EnergyReading("estimated", joules)

    def close(self) -> None:
        pass


class RaplMeter:
    """CPU package and DRAM energy from RAPL counters (RAPL does not see GPUs)."""

    method: MeterMethod = "rapl"

    def __init__(self, reader: RaplReader) -> None:
        self.reader = reader

    def start(self) -> None:
        self.reader.start()

    def poll(self) -> None:
        self.reader.poll()

    def finish(self, usage: Usage) -> EnergyReading:
        self.reader.poll()
        return EnergyReading("rapl", self.reader.joules_by_zone())

    def close(self) -> None:
        pass


class NvmlMeter:
    """GPU energy from NVML, plus the host (CPU, memory) from another meter."""

    method: MeterMethod = "nvml"

    def __init__(self, reader: NvmlReader, host: EnergyMeter) -> None:
        self.reader = reader
        self.host = host

    def start(self) -> None:
        self.reader.start()
        self.host.start()

    def poll(self) -> None:
        self.reader.poll()
        self.host.poll()

    def finish(self, usage: Usage) -> EnergyReading:
        self.reader.poll()
        host = self.host.finish(usage)
        joules = dict(self.reader.joules_by_gpu())
        joules.update({f"host-{name}": value for name, value in host.joules.items()})
        notes = [f"host energy by {host.method}"]
        utilisation = self.reader.mean_utilisation()
        if utilisation is not None:
            notes.append(f"mean GPU utilisation {utilisation:.0%}")
        return EnergyReading("nvml", joules, tuple(notes) + host.notes)

    def close(self) -> None:
        self.reader.close()
        self.host.close()


#: The note of a GPU class's receipt when NVML measured no GPU.
NO_GPU_MEASURED = (
    "no GPU energy: NVML measured no GPU for this run; CPU and memory only (docs/costs.md)"
)


def estimated_meter(settings: MeterSettings, worker: WorkerClassSettings) -> EstimatedMeter:
    """The fallback for ``worker``: the Green Algorithms model of its cores and memory. No GPU
    term: GPU energy is only what NVML reads (module docstring)."""
    return EstimatedMeter(
        cores=worker.cores,
        watts_per_core=worker.watts_per_core,
        watts_per_gb=settings.memory_watts_per_gb,
    )


def select_meter(
    settings: MeterSettings,
    worker: WorkerClassSettings,
    *,
    nvml_loader: Callable[[], ModuleType | Any] = load_nvml,
) -> tuple[EnergyMeter, tuple[str, ...]]:
    """The one place a meter is chosen: returns it and the reasons for any fallback.

    'auto' tries NVML only for GPU workers (a CPU run uses no GPU), then RAPL, then the
    estimate. A named method is tried first and falls back the same way.
    """
    notes: list[str] = []

    def host_meter() -> EnergyMeter:
        try:
            reader = RaplReader(
                settings.rapl_root,
                prefix=settings.rapl_zone_prefix,
                domains=settings.rapl_domains,
            )
            return RaplMeter(reader)
        except RaplUnavailable as exc:
            notes.append(f"rapl unavailable: {exc}")
        return estimated_meter(settings, worker)

    if settings.method == "estimated":
        if worker.kind == "gpu":
            notes.append(NO_GPU_MEASURED)
        return estimated_meter(settings, worker), tuple(notes)
    want_nvml = settings.method == "nvml" or (settings.method == "auto" and worker.kind == "gpu")
    if want_nvml:
        if not settings.nvml_enabled:
            notes.append("nvml disabled by costing.meter.nvml_enabled")
        else:
            try:
                reader = NvmlReader(nvml_loader(), indices=settings.gpu_indices)
            except NvmlUnavailable as exc:
                notes.append(f"nvml unavailable: {exc}")
            else:
                return NvmlMeter(reader, host_meter()), tuple(notes)
    host = host_meter()
    if worker.kind == "gpu":
        notes.append(NO_GPU_MEASURED)
    return host, tuple(notes)


@dataclass(frozen=True, slots=True)
class Measurement:
    """What a run used, as measured. Physical quantities are floats with their unit in the
    name; ``energy_kwh`` is IT energy before PUE; ``avg_power_w`` = energy / seconds."""

    method: MeterMethod
    started_at: datetime
    seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    energy_kwh: float
    avg_power_w: float
    cpu_utilisation: float
    cores: int
    samples: int
    completed: bool
    energy_components_kwh: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (the receipt stores it as is)."""
        return {
            "method": self.method,
            "started_at": self.started_at.isoformat(),
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
            "peak_rss_bytes": self.peak_rss_bytes,
            "energy_kwh": self.energy_kwh,
            "avg_power_w": self.avg_power_w,
            "cpu_utilisation": self.cpu_utilisation,
            "cores": self.cores,
            "samples": self.samples,
            "completed": self.completed,
            "energy_components_kwh": dict(self.energy_components_kwh),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Measurement:
        started = datetime.fromisoformat(data["started_at"])
        if started.tzinfo is None:
            raise ValueError("started_at must carry a time zone")
        return cls(
            method=data["method"],
            started_at=started,
            seconds=float(data["seconds"]),
            cpu_seconds=float(data["cpu_seconds"]),
            peak_rss_bytes=int(data["peak_rss_bytes"]),
            energy_kwh=float(data["energy_kwh"]),
            avg_power_w=float(data["avg_power_w"]),
            cpu_utilisation=float(data["cpu_utilisation"]),
            cores=int(data["cores"]),
            samples=int(data["samples"]),
            completed=bool(data["completed"]),
            energy_components_kwh={
                str(k): float(v) for k, v in data["energy_components_kwh"].items()
            },
            notes=tuple(str(n) for n in data["notes"]),
        )


def _descendants(process: psutil.Process) -> list[psutil.Process]:
    """The live descendants of ``process``.

    Linux lists each thread's children in ``/proc/PID/task/TID/children``; reading those
    costs microseconds where psutil's ``children(recursive=True)`` reads every process's
    ``/proc/*/stat`` (3.7 ms with 95 processes, four times per run). Elsewhere, psutil.
    """
    found: list[psutil.Process] = []
    pending = [process.pid]
    while pending:
        pid = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            if pid == process.pid:
                return process.children(recursive=True)
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/children") as listing:
                    kids = [int(k) for k in listing.read().split()]
            except FileNotFoundError:
                if pid == process.pid:  # a kernel without the listing: psutil's way
                    return process.children(recursive=True)
                continue
            except OSError:  # the thread exited meanwhile
                continue
            pending += kids
            for kid in kids:
                try:
                    found.append(psutil.Process(kid))
                except psutil.Error:  # exited between listing and reading
                    continue
    return found


def _tree_cpu_seconds(process: psutil.Process) -> float:
    """CPU seconds of the process, its reaped children, and its live descendants."""
    times = process.cpu_times()
    total = times.user + times.system + times.children_user + times.children_system
    for child in _descendants(process):
        try:
            child_times = child.cpu_times()
        except psutil.Error:  # exited between listing and reading
            continue
        total += child_times.user + child_times.system
    return total


def _tree_rss_bytes(process: psutil.Process) -> int:
    rss = int(process.memory_info().rss)
    for child in _descendants(process):
        try:
            rss += int(child.memory_info().rss)
        except psutil.Error:
            continue
    return rss


class MeterRun:
    """The handle ``measure`` yields; ``measurement`` is set when the block exits."""

    def __init__(self) -> None:
        self._measurement: Measurement | None = None

    @property
    def measurement(self) -> Measurement:
        if self._measurement is None:
            raise RuntimeError("the measured block has not finished")
        return self._measurement


class _Sampler(threading.Thread):
    """Samples memory and polls the meter every interval until stopped."""

    def __init__(self, process: psutil.Process, meter: EnergyMeter, interval: float) -> None:
        super().__init__(name="cost-meter", daemon=True)
        self.process = process
        self.meter = meter
        self.interval = interval
        self.stopping = threading.Event()
        self.peak_rss = 0
        self.samples = 0
        self.meter_error: Exception | None = None

    def sample(self) -> None:
        try:
            self.peak_rss = max(self.peak_rss, _tree_rss_bytes(self.process))
        except psutil.Error:
            pass
        if self.meter_error is None:
            try:
                self.meter.poll()
            except Exception as exc:  # a failing meter must never lose the measurement
                self.meter_error = exc
        self.samples += 1

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.sample()


@contextmanager
def measure(
    settings: MeterSettings,
    worker: WorkerClassSettings,
    *,
    meter: EnergyMeter | None = None,
    process: psutil.Process | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[MeterRun]:
    """Measure the block. ``meter`` overrides ``select_meter`` (tests, or a caller with its
    own choice); it is started and closed here, so a meter serves one run. The measurement
    is recorded even if the block raises, with ``completed=False``, since a failed run still
    used energy."""
    notes: tuple[str, ...] = ()
    if meter is None:
        meter, notes = select_meter(settings, worker)
    proc = process or psutil.Process()
    fallback = estimated_meter(settings, worker)
    handle = MeterRun()
    sampler = _Sampler(proc, meter, settings.sample_interval_s)
    started_at = datetime.now(UTC)
    cpu_start = _tree_cpu_seconds(proc)
    meter_failed: Exception | None = None
    try:
        meter.start()
    except Exception as exc:  # fall back to the estimate, as for a failure mid-run
        meter_failed = exc
        sampler.meter_error = exc
    t0 = clock()
    sampler.sample()
    sampler.start()
    completed = False
    try:
        yield handle
        completed = True
    finally:
        sampler.stopping.set()
        sampler.join()
        sampler.sample()
        seconds = clock() - t0
        cpu_seconds = max(0.0, _tree_cpu_seconds(proc) - cpu_start)
        usage = Usage(seconds=seconds, cpu_seconds=cpu_seconds, peak_rss_bytes=sampler.peak_rss)
        meter_failed = meter_failed or sampler.meter_error
        reading: EnergyReading | None = None
        if meter_failed is None:
            try:
                reading = meter.finish(usage)
            except Exception as exc:
                meter_failed = exc
        try:
            meter.close()
        except Exception as exc:  # closing is housekeeping; the reading is already taken
            notes += (f"closing the {meter.method} meter failed: {exc}",)
        if reading is None:
            reading = fallback.finish(usage)
            notes += (f"{meter.method} failed during the run ({meter_failed}); estimated",)
        handle._measurement = _measurement(
            reading, usage, worker.cores, started_at, sampler.samples, completed, notes
        )


def _measurement(
    reading: EnergyReading,
    usage: Usage,
    cores: int,
    started_at: datetime,
    samples: int,
    completed: bool,
    notes: tuple[str, ...],
) -> Measurement:
    joules = sum(reading.joules.values())
    seconds = usage.seconds
    return Measurement(
        method=reading.method,
        started_at=started_at,
        seconds=seconds,
        cpu_seconds=usage.cpu_seconds,
        peak_rss_bytes=usage.peak_rss_bytes,
        energy_kwh=joules / JOULES_PER_KWH,
        avg_power_w=joules / seconds if seconds > 0 else 0.0,
        cpu_utilisation=min(1.0, usage.cpu_seconds / (cores * seconds)) if seconds > 0 else 0.0,
        cores=cores,
        samples=samples,
        completed=completed,
        energy_components_kwh={k: v / JOULES_PER_KWH for k, v in reading.joules.items()},
        notes=notes + reading.notes,
    )
