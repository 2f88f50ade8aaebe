"""A unit's memory and CPU read from its cgroup's files, not asked of systemd.

systemd's ``MemoryCurrent`` and ``CPUUsageNSec`` are these same files read by the manager
on each D-Bus request; reading them here costs a file read instead of a round trip with
every property of the unit, which is what lets one ``/metrics`` scrape of hundreds of
services stay cheap. The path is the unit's ``ControlGroup`` (asked of systemd once and
kept, see ``agent.unitfacts``).

Two layouts: the unified one (cgroup v2 mounted at ``/sys/fs/cgroup``: ``memory.current``,
``memory.peak``, ``cpu.stat``), and the hybrid one of older hosts and of the test bed (v1
controllers under ``/sys/fs/cgroup/<controller>``, v2 at ``/sys/fs/cgroup/unified``):
memory from the v1 memory controller (``memory.usage_in_bytes``,
``memory.max_usage_in_bytes``),
CPU from the v2 tree's ``cpu.stat``, which the kernel keeps for every cgroup whatever the
controllers. The limit is systemd's ``MemoryMax`` (kept with the unit's slow facts),
not read per scrape. A file that is not there (no memory accounting, the unit stopped) is None:
unknown, not zero.

A ``ControlGroup`` comes from systemd, but it is checked (``cgroup_dir``) before it is
joined to a path: absolute, no ``..``, no NUL; the reader never follows it elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
_READ_MAX = 4096


@dataclass(frozen=True)
class CgroupFacts:
    """One cgroup now. None: unknown (the file is absent or unreadable)."""

    memory_bytes: int | None
    memory_peak_bytes: int | None
    cpu_seconds: float | None


@dataclass(frozen=True)
class CgroupLayout:
    """Where each file of a cgroup is: ``memory`` and ``cpu`` are the trees' roots."""

    unified: bool  # True: memory.current and friends; False: v1's memory controller
    memory: Path
    cpu: Path

    @classmethod
    def detect(cls, root: Path = CGROUP_ROOT) -> CgroupLayout:
        if (root / "cgroup.controllers").exists():
            return cls(unified=True, memory=root, cpu=root)
        return cls(unified=False, memory=root / "memory", cpu=root / "unified")

    def files(self, control_group: str) -> CgroupFiles | None:
        """The three files of a cgroup (built once per unit and kept: a scrape reads them
        for every unit); None for a path systemd gave that is not a plain absolute cgroup
        path."""
        relative = cgroup_dir(control_group)
        if relative is None:
            return None
        memory = os.path.join(self.memory, relative)
        current, peak = (
            ("memory.current", "memory.peak")
            if self.unified
            else ("memory.usage_in_bytes", "memory.max_usage_in_bytes")
        )
        return CgroupFiles(
            os.path.join(memory, current),
            os.path.join(memory, peak),
            os.path.join(self.cpu, relative, "cpu.stat"),
        )


@dataclass(frozen=True)
class CgroupFiles:
    """Where one cgroup's memory, peak memory and CPU are read."""

    memory: str
    memory_peak: str
    cpu_stat: str

    def read(self) -> CgroupFacts:
        """The cgroup's facts now (the limit is systemd's ``MemoryMax``, not read here)."""
        return CgroupFacts(
            parse_bytes(_read(self.memory)),
            parse_bytes(_read(self.memory_peak)),
            parse_cpu_stat(_read(self.cpu_stat)),
        )


def process_cgroup(pid: int) -> str | None:
    """The cgroup process ``pid`` is in, as systemd names it (its ``ControlGroup``); None
    when the process is gone."""
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as cgroups:
            return systemd_cgroup(cgroups.read())
    except OSError:
        return None


def systemd_cgroup(text: str) -> str | None:
    """The path of a ``/proc/<pid>/cgroup`` text in systemd's hierarchy: the named
    ``name=systemd`` one of the hybrid layout, else the unified one."""
    unified = None
    for line in text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controllers == "name=systemd":
            return path
        if hierarchy == "0" and controllers == "":
            unified = path
    return unified


def cgroup_dir(control_group: str) -> str | None:
    """``/system.slice/x.service`` as ``system.slice/x.service``; None for anything that is
    not an absolute path of plain parts (empty, ``..``, NUL, the root itself)."""
    if not control_group.startswith("/") or "\0" in control_group:
        return None
    parts = control_group.strip("/").split("/")
    if not parts or any(part in ("", ".", "..") for part in parts):
        return None
    return "/".join(parts)


def _read(path: str) -> str | None:
    """One small file's text (os calls: a scrape reads a thousand of these)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return os.read(descriptor, _READ_MAX).decode("ascii", errors="replace")
    except OSError:
        return None
    finally:
        os.close(descriptor)


def parse_bytes(text: str | None) -> int | None:
    """A file holding one non-negative integer."""
    if text is None:
        return None
    value = text.strip()
    return int(value) if value.isascii() and value.isdigit() else None


def parse_cpu_stat(text: str | None) -> float | None:
    """Seconds of CPU from ``cpu.stat``'s ``usage_usec`` line."""
    if text is None:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            value = value.strip()
            return int(value) / 1e6 if value.isascii() and value.isdigit() else None
    return None
