"""Where the suite's CPU goes: a pytest plugin, on when ``POCKESTRATOR_CPU_LEDGER`` names a
folder (``POCKESTRATOR_CPU_LEDGER=test-artifacts/cpu make test``).

The suite is CPU-bound on two cores, and wall time on a shared machine measures the
neighbours as much as the tests; CPU-seconds do not. Each process (an xdist worker, or the
only one) appends one JSON line per test phase to ``<folder>/<worker>.jsonl``: the
worker's own CPU (``RUSAGE_SELF``: the agent runs in it) and that of the children it has
reaped (``RUSAGE_CHILDREN``: a test bed's systemd, journald, Caddy and PocketBase reach it
only when the bed's namespace shell exits, at the module's end; so do the CLI, the .deb
build and the benchmark runs). Each private systemd's own cgroup total (cpuacct, or the
unified ``cpu.stat``) is read just before it stops, as a second view of the bed's share.
``python -m tests.testbed.cpu_ledger <folder>`` ranks modules and tests.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from collections import defaultdict
from collections.abc import Callable, Coroutine, Generator, Iterable
from pathlib import Path
from typing import Any

import pytest

from pockestrator.agent.private_systemd import PrivateSystemd

VARIABLE = "POCKESTRATOR_CPU_LEDGER"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_seconds() -> tuple[float, float]:
    """(this process's CPU, its reaped children's CPU), user plus system, in seconds."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def cgroup_cpu_seconds(name: str, root: Path = CGROUP_ROOT) -> float | None:
    """The CPU every process of cgroup ``name`` has used so far (None: no such cgroup)."""
    try:
        return int((root / "cpuacct" / name / "cpuacct.usage").read_text()) / 1e9
    except (OSError, ValueError):
        pass
    for hierarchy in (root / "unified", root):
        used = _cpu_stat_seconds(hierarchy / name)
        if used is not None:
            return used
    return None


def unit_cpu_seconds(name: str, root: Path = CGROUP_ROOT) -> dict[str, float]:
    """The CPU of each ``*.service`` cgroup under ``name`` so far: the private manager
    makes its units' cgroups in the unified hierarchy only."""
    found: dict[str, float] = {}
    for unit in sorted((root / "unified" / name).glob("**/*.service")):
        used = _cpu_stat_seconds(unit)
        if used is not None:
            found[unit.name] = used
    return found


def process_cpu_seconds(pid: int) -> float | None:
    """A live process's own CPU so far (``/proc/<pid>/stat`` utime + stime)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cpu_stat_seconds(cgroup: Path) -> float | None:
    """``usage_usec`` of a cgroup v2 folder's ``cpu.stat``, in seconds."""
    try:
        text = (cgroup / "cpu.stat").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    return None


class Ledger:
    """Appends what each phase of each test cost to one file per process."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.path = folder / f"{worker}.jsonl"
        self.current = ""

    def write(self, record: dict[str, object]) -> None:
        with self.path.open("a") as out:
            out.write(json.dumps(record) + "\n")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, None, None]:
        self.current = item.nodeid
        yield

    def _phase(self, item: pytest.Item, phase: str) -> Generator[None, None, None]:
        own, children = cpu_seconds()
        yield
        own_after, children_after = cpu_seconds()
        self.write(
            {
                "test": item.nodeid,
                "phase": phase,
                "self": round(own_after - own, 3),
                "children": round(children_after - children, 3),
            }
        )

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        yield from self._phase(item, "setup")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        yield from self._phase(item, "call")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> Generator[None, None, None]:
        yield from self._phase(item, "teardown")

    def note_bed(self, manager: PrivateSystemd) -> None:
        """Record a private systemd's cgroup total, just before it is stopped; that of each
        unit still running in it (a unit's share leaves with its cgroup when it stops), and
        the manager's and journald's own."""
        used = cgroup_cpu_seconds(manager.cgroup_name)
        if used is None:
            return
        units = {
            name: round(seconds, 3)
            for name, seconds in unit_cpu_seconds(manager.cgroup_name).items()
            if seconds >= 0.05
        }
        for name, pid in (("systemd", manager.manager_pid), ("journald", manager.journald_pid)):
            if pid is not None and (seconds := process_cpu_seconds(pid)) is not None:
                units[name] = round(seconds, 3)
        self.write({"test": self.current, "phase": "bed", "cgroup": round(used, 3), "units": units})


def pytest_configure(config: pytest.Config) -> None:
    folder = os.environ.get(VARIABLE)
    if not folder:
        return
    ledger = Ledger(Path(folder))
    config.pluginmanager.register(ledger, "cpu-ledger")
    stop: Callable[..., Coroutine[Any, Any, None]] = PrivateSystemd.stop

    async def noted(self: PrivateSystemd, timeout: float = 20.0) -> None:
        try:
            ledger.note_bed(self)
        finally:  # a ledger that cannot read the bed never leaves it running
            await stop(self, timeout)

    # Only measured runs: the stop itself is the product's, unchanged.
    PrivateSystemd.stop = noted  # type: ignore[method-assign]


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def summarize(records: Iterable[dict[str, Any]], top: int = 30) -> str:
    """Modules by CPU (own + children), then the dearest tests, as a plain table."""
    modules: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    tests: dict[str, float] = defaultdict(float)
    kinds: dict[str, float] = defaultdict(float)
    for record in records:
        module = modules[module_of(record["test"])]
        if record["phase"] == "bed":
            module[2] += record["cgroup"]
            kinds["all beds"] += record["cgroup"]
            for unit, used in record.get("units", {}).items():
                kinds[unit_kind(unit)] += used
            continue
        module[0] += record["self"]
        module[1] += record["children"]
        tests[f"{record['test']} [{record['phase']}]"] += record["self"] + record["children"]
    lines = [f"{'cpu-s':>8} {'self':>8} {'child':>8} {'beds':>8}  module"]
    total = 0.0
    for name, (own, children, beds) in sorted(modules.items(), key=lambda kv: -sum(kv[1][:2])):
        total += own + children
        lines.append(f"{own + children:8.1f} {own:8.1f} {children:8.1f} {beds:8.1f}  {name}")
    lines.append(f"{total:8.1f} in all, {len(modules)} modules\n")
    lines.append(f"{'cpu-s':>8}  test [phase]")
    for name, used in sorted(tests.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"{used:8.1f}  {name}")
    if kinds:
        lines.append(f"\n{'cpu-s':>8}  in the beds (units still running at the bed's stop)")
        for name, used in sorted(kinds.items(), key=lambda kv: -kv[1]):
            lines.append(f"{used:8.1f}  {name}")
    return "\n".join(lines)


def unit_kind(unit: str) -> str:
    """``pocketbase`` for any service's ``<name>-pocketbase.service``; other units as named."""
    return unit.rsplit("-", 1)[1] if unit.endswith("-pocketbase.service") else unit


def main(argv: list[str]) -> None:
    folder = Path(argv[0])
    records = [json.loads(line) for path in sorted(folder.glob("*.jsonl")) for line in path.open()]
    print(summarize(records, int(argv[1]) if len(argv) > 1 else 30))


if __name__ == "__main__":
    main(sys.argv[1:])
