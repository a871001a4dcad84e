"""The RAPL reader against a fake powercap tree: domains, wrap-around, unreadable files."""

from __future__ import annotations

from pathlib import Path

import pytest

from market.costing.meter import (
    NO_GPU_MEASURED,
    EstimatedMeter,
    RaplMeter,
    measure,
    select_meter,
)
from market.costing.nvml import NvmlUnavailable
from market.costing.rapl import RaplReader, RaplUnavailable, counter_delta, discover_zones
from market.costing.settings import MeterSettings, WorkerClassSettings
from tests.costing.conftest import make_worker

MAX_RANGE = 262_143_328_850  # a real package counter's max_energy_range_uj
DOMAINS = ("package", "dram")


def make_zone(directory: Path, name: str, energy_uj: int, max_range: int = MAX_RANGE) -> Path:
    directory.mkdir(parents=True)
    (directory / "name").write_text(name + "\n")
    (directory / "energy_uj").write_text(f"{energy_uj}\n")
    (directory / "max_energy_range_uj").write_text(f"{max_range}\n")
    return directory


def set_energy(directory: Path, energy_uj: int) -> None:
    (directory / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def powercap(tmp_path: Path) -> dict[str, Path]:
    """Two sockets with package and dram zones, the flat symlinks /sys/class/powercap has,
    a core subzone and an intel-rapl-mmio duplicate that must not be summed."""
    root = tmp_path / "powercap"
    (root / "intel-rapl").mkdir(parents=True)  # the control type directory itself
    (root / "intel-rapl" / "enabled").write_text("1\n")
    package0 = make_zone(root / "intel-rapl:0", "package-0", 1_000_000)
    core0 = make_zone(package0 / "intel-rapl:0:0", "core", 500_000)
    dram0 = make_zone(package0 / "intel-rapl:0:1", "dram", 2_000_000, max_range=65_532_610_987)
    package1 = make_zone(root / "intel-rapl:1", "package-1", 3_000_000)
    (root / "intel-rapl:0:0").symlink_to(core0)
    (root / "intel-rapl:0:1").symlink_to(dram0)
    make_zone(root / "intel-rapl-mmio:0", "package-0", 7_000_000)
    return {"root": root, "package0": package0, "dram0": dram0, "package1": package1}


def test_discovers_package_and_dram_zones_once(powercap: dict[str, Path]) -> None:
    zones = discover_zones(powercap["root"], prefix="intel-rapl", domains=DOMAINS)
    assert sorted(zone.name for zone in zones) == ["dram", "package-0", "package-1"]
    dram = next(zone for zone in zones if zone.name == "dram")
    assert dram.max_range_uj == 65_532_610_987


def test_nested_only_tree_is_read_too(tmp_path: Path) -> None:
    package = make_zone(tmp_path / "intel-rapl:0", "package-0", 0)
    make_zone(package / "intel-rapl:0:2", "dram", 0)
    zones = discover_zones(tmp_path, prefix="intel-rapl", domains=DOMAINS)
    assert sorted(zone.name for zone in zones) == ["dram", "package-0"]


def test_counter_delta_handles_one_wrap() -> None:
    assert counter_delta(100, 250, 1000) == 150
    assert counter_delta(900, 50, 1000) == 150
    assert counter_delta(500, 500, 1000) == 0


def test_energy_accumulates_across_polls_and_wraps(powercap: dict[str, Path]) -> None:
    reader = RaplReader(powercap["root"], prefix="intel-rapl", domains=DOMAINS)
    set_energy(powercap["package0"], MAX_RANGE - 1_000_000)
    reader.start()
    set_energy(powercap["package0"], 2_000_000)  # wrapped: 1 J to the top, 2 J after
    set_energy(powercap["dram0"], 2_500_000)  # +0.5 J
    reader.poll()
    set_energy(powercap["package0"], 5_000_000)  # +3 J
    set_energy(powercap["package1"], 4_000_000)  # +1 J since start
    reader.poll()
    assert reader.joules_by_zone() == pytest.approx(
        {"package-0": 6.0, "dram": 0.5, "package-1": 1.0}
    )


def test_missing_tree_or_no_matching_zone_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(RaplUnavailable, match="does not exist"):
        discover_zones(tmp_path / "absent", prefix="intel-rapl", domains=DOMAINS)
    make_zone(tmp_path / "intel-rapl:0", "psys", 0)
    with pytest.raises(RaplUnavailable, match="no intel-rapl zone"):
        discover_zones(tmp_path, prefix="intel-rapl", domains=DOMAINS)


def test_garbage_counter_is_unavailable(powercap: dict[str, Path]) -> None:
    (powercap["dram0"] / "energy_uj").write_text("not a number\n")
    with pytest.raises(RaplUnavailable, match="not an integer"):
        discover_zones(powercap["root"], prefix="intel-rapl", domains=DOMAINS)


def test_unreadable_counter_is_unavailable(powercap: dict[str, Path]) -> None:
    # A directory in place of the file raises IsADirectoryError even for root, who can read a
    # mode-000 file (the real case since Linux 5.10 is mode 0400, root only).
    energy = powercap["package1"] / "energy_uj"
    energy.unlink()
    energy.mkdir()
    with pytest.raises(RaplUnavailable, match="energy_uj"):
        discover_zones(powercap["root"], prefix="intel-rapl", domains=DOMAINS)


def test_permission_denied_falls_back_to_the_estimate(
    powercap: dict[str, Path], worker: WorkerClassSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_read_text = Path.read_text

    def denied(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", denied)
    settings = MeterSettings(rapl_root=powercap["root"])
    meter, notes = select_meter(settings, worker)
    assert isinstance(meter, EstimatedMeter)
    assert any("rapl unavailable" in note and "Permission denied" in note for note in notes)


def test_readable_tree_is_chosen_and_measures(
    powercap: dict[str, Path], worker: WorkerClassSettings
) -> None:
    settings = MeterSettings(rapl_root=powercap["root"], sample_interval_s=0.05)
    meter, notes = select_meter(settings, worker)
    assert isinstance(meter, RaplMeter) and notes == ()
    with measure(settings, worker) as run:
        set_energy(powercap["package0"], 1_000_000 + 36_000_000)  # +36 J
        set_energy(powercap["dram0"], 2_000_000 + 3_600_000)  # +3.6 J
    result = run.measurement
    assert result.method == "rapl"
    assert result.energy_kwh == pytest.approx(39.6 / 3.6e6)
    assert result.energy_components_kwh["package-0"] == pytest.approx(36 / 3.6e6)
    assert result.avg_power_w == pytest.approx(39.6 / result.seconds)


def test_counter_lost_mid_run_falls_back_to_the_estimate(
    powercap: dict[str, Path], worker: WorkerClassSettings
) -> None:
    settings = MeterSettings(rapl_root=powercap["root"], sample_interval_s=0.05)
    with measure(settings, worker) as run:
        (powercap["dram0"] / "energy_uj").unlink()
    result = run.measurement
    assert result.method == "estimated"
    assert any("rapl failed during the run" in note for note in result.notes)
    assert set(result.energy_components_kwh) == {"cpu", "memory"}


def test_gpu_worker_without_nvml_reports_rapl_and_no_gpu_watts(
    powercap: dict[str, Path],
) -> None:
    gpu_worker = make_worker(kind="gpu", resources=1, server_resources=8, gpus=1, gpu_tdp_w=400.0)

    def missing() -> object:
        raise NvmlUnavailable("no NVML")

    settings = MeterSettings(rapl_root=powercap["root"], sample_interval_s=0.05)
    meter, notes = select_meter(settings, gpu_worker, nvml_loader=missing)
    assert isinstance(meter, RaplMeter)
    assert notes == ("nvml unavailable: no NVML", NO_GPU_MEASURED)
    with measure(settings, gpu_worker, meter=meter) as run:
        set_energy(powercap["package0"], 1_000_000 + 3_600_000)
    result = run.measurement
    assert result.method == "rapl"
    assert not any("gpu" in name for name in result.energy_components_kwh)


def test_counter_unreadable_at_start_falls_back(
    powercap: dict[str, Path], worker: WorkerClassSettings
) -> None:
    settings = MeterSettings(rapl_root=powercap["root"], sample_interval_s=0.05)
    meter, _ = select_meter(settings, worker)
    (powercap["package1"] / "energy_uj").write_text("garbage\n")
    with measure(settings, worker, meter=meter) as run:
        pass
    assert run.measurement.method == "estimated"
    assert any("not an integer" in note for note in run.measurement.notes)
