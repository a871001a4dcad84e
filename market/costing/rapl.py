"""RAPL energy counters read from the Linux powercap sysfs tree.

Layout (Linux ``Documentation/power/powercap/powercap.rst``)::

    /sys/class/powercap/intel-rapl:0/         name = "package-0"
        energy_uj                             cumulative microjoules, wraps to 0
        max_energy_range_uj                   the value at which it wraps
        intel-rapl:0:0/ name = "core"         parts of the package (not summed: counted in it)
        intel-rapl:0:2/ name = "dram"         memory, outside the package on servers

``/sys/class/powercap`` lists every zone flat (``intel-rapl:0``, ``intel-rapl:0:0``...) and the
zones are also nested; both shapes are read, each zone once.

Why counters are polled rather than read twice: the package counter is 32 bits of microjoules
on many parts (about 262 kJ), which wraps in about 45 minutes at 100 W. Polling at the meter's
sample interval sees every wrap as long as at most one happens per interval.

Since Linux 5.10 (CVE-2020-8694) ``energy_uj`` is readable by root only; an unreadable or
malformed file makes the reader unavailable and the meter falls back, saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

JOULES_PER_KWH = 3_600_000.0


class RaplUnavailable(Exception):
    """No usable RAPL zone: the reason is the message (shown in the measurement's notes)."""


@dataclass(frozen=True, slots=True)
class RaplZone:
    """One powercap zone summed by the meter."""

    zone_id: str
    name: str
    energy_path: Path
    max_range_uj: int


def _read_int(path: Path) -> int:
    """Read a sysfs integer; any failure is RaplUnavailable naming the file."""
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise RaplUnavailable(f"{path}: {exc.strerror or exc}") from exc
    try:
        return int(text)
    except ValueError as exc:
        raise RaplUnavailable(f"{path}: not an integer ({text[:20]!r})") from exc


def _wanted(name: str, domains: tuple[str, ...]) -> bool:
    """'package' matches 'package-0'; other domains match exactly."""
    return any(name == domain or name.startswith(domain + "-") for domain in domains)


def discover_zones(root: Path, *, prefix: str, domains: tuple[str, ...]) -> list[RaplZone]:
    """Every readable zone under ``root`` whose name is one of ``domains``.

    Raises RaplUnavailable when the tree is absent, no zone matches, or a matching zone's
    counter cannot be read: a partial sum would under-report, so it is all or nothing.
    """
    if not root.is_dir():
        raise RaplUnavailable(f"{root} does not exist")
    seen: dict[str, Path] = {}
    pending = sorted(root.glob(f"{prefix}:*"))
    while pending:
        directory = pending.pop(0)
        if directory.name in seen or not directory.is_dir():
            continue
        seen[directory.name] = directory
        pending.extend(sorted(directory.glob(f"{prefix}:*")))
    zones = []
    for zone_id, directory in sorted(seen.items()):
        try:
            name = (directory / "name").read_text().strip()
        except OSError:
            continue  # a zone without a readable name is not one we can attribute
        if not _wanted(name, domains):
            continue
        max_range = _read_int(directory / "max_energy_range_uj")
        if max_range <= 0:
            raise RaplUnavailable(f"{directory}: max_energy_range_uj is {max_range}")
        _read_int(directory / "energy_uj")  # must be readable now, not only later
        zones.append(RaplZone(zone_id, name, directory / "energy_uj", max_range))
    if not zones:
        raise RaplUnavailable(f"no {prefix} zone named {', '.join(domains)} under {root}")
    return zones


def counter_delta(start: int, end: int, max_range: int) -> int:
    """Microjoules between two reads of a counter that wraps at ``max_range``.

    A smaller end value means one wrap: the counter ran from ``start`` up to ``max_range``
    and then from 0 to ``end``.
    """
    if end >= start:
        return end - start
    return max_range - start + end


class RaplReader:
    """Accumulates energy of the chosen zones across polls, handling wrap-around."""

    method = "rapl"

    def __init__(self, root: Path, *, prefix: str, domains: tuple[str, ...]) -> None:
        self.zones = discover_zones(root, prefix=prefix, domains=domains)
        self._last: dict[str, int] = {}
        self._total_uj: dict[str, int] = {}

    def start(self) -> None:
        self._last = {zone.zone_id: _read_int(zone.energy_path) for zone in self.zones}
        self._total_uj = {zone.zone_id: 0 for zone in self.zones}

    def poll(self) -> None:
        """Read every counter once and add what was used since the last read."""
        for zone in self.zones:
            value = _read_int(zone.energy_path)
            last = self._last[zone.zone_id]
            self._total_uj[zone.zone_id] += counter_delta(last, value, zone.max_range_uj)
            self._last[zone.zone_id] = value

    def joules_by_zone(self) -> dict[str, float]:
        """Energy so far per zone name ('package-0', 'dram'...), joules."""
        by_name: dict[str, float] = {}
        for zone in self.zones:
            key = zone.name if zone.name not in by_name else f"{zone.name}@{zone.zone_id}"
            by_name[key] = self._total_uj[zone.zone_id] / 1e6
        return by_name
