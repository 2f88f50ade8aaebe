"""Benchmarks of the agent against a floor measured in the same run on the same machine.

The floor is the least work that reaches the same end with no agent: a script that writes
the unit file and the Caddy snippet itself and drives systemd directly over D-Bus
(daemon-reload, Caddy reload, StartUnit), then waits for ``/api/health`` through Caddy.
The agent runs as deployed: its own process, a ``Type=notify`` unit of the sandbox's
manager. Both run in sandboxes of their own, one after the other, so neither disturbs the
other's figures.

Figures (the issue's targets in brackets):
- one spec file written -> 200 through Caddy, binary cached: median of N runs, and the
  ratio to the floor's median [ratio <= 1.5, agent <= 0.5 s];
- 50 spec files at once -> all 200 through Caddy [ratio <= 1.3];
- a hand-edited unit file / site snippet -> repaired: median [<= 1 s];
- 50 services idle: the agent's CPU (percent of one core) and RSS over the window
  [<= 1 %, <= 80 MB];
- a steady client through Caddy during 10 restarts and 3 upgrades: 5xx [0] and the
  latency added over the same client's floor (``restarts``).
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.controllers.caddy import SiteSettings, render_site
from pockestrator.controllers.releases import seed_from_installed
from pockestrator.controllers.systemd import UnitSettings, render_unit
from pockestrator.specs.model import parse_spec
from tests.benchmarks.restarts import RestartFigures
from tests.benchmarks.restarts import describe as describe_restarts
from tests.benchmarks.restarts import measure as restarts_and_upgrades
from tests.testbed.agent_unit import AgentUnit
from tests.testbed.live_agent import SESSIONS_LOCK
from tests.testbed.mirror import installed_version
from tests.testbed.waiting import wait_until

BENCH_BASE = Path(os.environ.get("POCKESTRATOR_TESTBED_DIR", "/var/lib/pockestrator-testbed"))


@dataclass
class Report:
    machine: str = ""
    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add(self, key: str, value: float) -> None:
        self.figures[key] = round(value, 4)
        print(f"  {key:<44} {value:10.4f}", flush=True)

    def as_json(self) -> str:
        return json.dumps(
            {"machine": self.machine, "figures": self.figures, "notes": self.notes}, indent=2
        )


def machine_description() -> str:
    cpus = os.cpu_count() or 0
    memory_kb = next(
        (
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        ),
        0,
    )
    return (
        f"{platform.machine()}, {cpus} cores, {memory_kb // 1024 // 1024} GiB, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


async def healthy(session: aiohttp.ClientSession, caddy: str, host: str) -> bool:
    try:
        async with session.get(
            f"{caddy}/api/health", headers={"Host": host}, timeout=aiohttp.ClientTimeout(total=1)
        ) as response:
            return response.status == 200 and b'"code":200' in await response.read()
    except (aiohttp.ClientError, TimeoutError):
        return False


async def until_all_healthy(
    session: aiohttp.ClientSession, caddy: str, hosts: list[str], timeout: float = 120
) -> float:
    """Seconds until every host answers 200 through Caddy.

    Each round probes the hosts still pending, then pauses 2 ms per pending host: the
    harness sends about 500 requests a second whatever the burst, so it does not starve
    the system it measures (the same for the floor and the agent).
    """
    started = time.perf_counter()
    pending = set(hosts)
    while pending:
        results = await asyncio.gather(*(healthy(session, caddy, host) for host in pending))
        pending = {host for host, ok in zip(list(pending), results, strict=True) if not ok}
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"not healthy after {timeout}s: {sorted(pending)[:5]}")
        if pending:
            await asyncio.sleep(0.002 * len(pending))
    return time.perf_counter() - started


def spec_text(name: str, port: int, version: str) -> str:
    return f'project_name: {name}\nport: {port}\npocketbase_version: "{version}"\n'


# -- the floor: no agent ---------------------------------------------------------------


class Floor:
    """The same systemd and Caddy steps, done directly, for ``names`` at once."""

    def __init__(self, sandbox: Sandbox, version: str) -> None:
        self.sandbox = sandbox
        self.config = sandbox.agent_config()
        self.settings = UnitSettings.from_config(self.config)
        seed_from_installed(self.config.release_cache_dir)
        self.binary = self.config.release_cache_dir / version / "pocketbase"
        self.version = version

    async def deploy(self, names: list[str], session: aiohttp.ClientSession) -> float:
        bus = self.sandbox.bus
        assert bus is not None
        specs = [
            parse_spec(
                {"project_name": n, "port": free_port(), "pocketbase_version": self.version},
                "localhost",
            )
            for n in names
        ]
        started = time.perf_counter()
        for spec in specs:
            directory = self.config.base_dir / spec.project_name
            (directory / "pb_data").mkdir(parents=True)
            os.link(self.binary, directory / "pocketbase")
            shutil.chown(directory, "nobody", "nogroup")
            shutil.chown(directory / "pb_data", "nobody", "nogroup")
            (self.config.systemd_dir / spec.unit_name).write_text(render_unit(spec, self.settings))
            (self.config.caddy_sites_dir / f"{spec.project_name}.caddy").write_text(
                render_site(spec, SiteSettings(tls="off"))
            )
        await bus.daemon_reload()
        await bus.reload_unit("caddy.service")
        await asyncio.gather(*(bus.start_unit(spec.unit_name) for spec in specs))
        await until_all_healthy(session, self.sandbox.caddy_url, [s.domain for s in specs])
        return time.perf_counter() - started


# -- the agent ---------------------------------------------------------------------------


class AgentUnderTest:
    def __init__(self, sandbox: Sandbox, version: str) -> None:
        self.sandbox = sandbox
        self.version = version
        self.config = sandbox.agent_config(listen_port=free_port(), health_interval=10.0)
        seed_from_installed(self.config.release_cache_dir)
        self.unit = AgentUnit(sandbox, self.config, watchdog_seconds=30)

    async def deploy(self, names: list[str], session: aiohttp.ClientSession) -> float:
        """Spec files for ``names`` appear at once (renamed into place)."""
        spec_dir = self.config.spec_dir
        for name in names:
            (spec_dir / f".{name}.tmp").write_text(spec_text(name, free_port(), self.version))
        started = time.perf_counter()
        for name in names:
            os.replace(spec_dir / f".{name}.tmp", spec_dir / f"{name}.yaml")
        await until_all_healthy(session, self.sandbox.caddy_url, [f"{n}.localhost" for n in names])
        return time.perf_counter() - started

    async def repair_time(self, path: Path, edit: Callable[[str], str]) -> float:
        good = path.read_text()
        started = time.perf_counter()
        path.write_text(edit(good))
        while path.read_text() != good:
            if time.perf_counter() - started > 30:
                raise TimeoutError(f"{path} was not repaired")
            await asyncio.sleep(0.002)
        return time.perf_counter() - started


def process_usage(pid: int) -> tuple[int, int]:
    """(utime + stime in clock ticks, RSS in bytes) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    rss_pages = int(fields[21])
    return int(fields[11]) + int(fields[12]), rss_pages * os.sysconf("SC_PAGE_SIZE")


# -- the run -----------------------------------------------------------------------------


async def in_sandbox(body: Callable[[Sandbox], Awaitable[None]]) -> None:
    """Run ``body`` in a test bed of its own under BENCH_BASE.

    The benchmark holds the pytest sessions' shared lock on the folder while it runs: a
    pytest session that can take it exclusively ends every test bed there as a crashed
    run's leftover, and did end running benchmarks' test beds before they held it.
    """
    BENCH_BASE.mkdir(parents=True, exist_ok=True)
    with (BENCH_BASE / SESSIONS_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        root = Path(tempfile.mkdtemp(prefix="bench-", dir=BENCH_BASE))
        sandbox = Sandbox(root)
        await sandbox.start()
        try:
            await body(sandbox)
        finally:
            await sandbox.stop()
            shutil.rmtree(root, ignore_errors=True)


async def run(
    runs: int = 10,
    burst: int = 50,
    idle_seconds: float = 60.0,
    *,
    restarts: int = 10,
    upgrades: int = 3,
    only: str = "all",
) -> Report:
    """Every figure (``only="all"``), or those of deploys (``"deploy"``) or of the steady
    client through restarts and upgrades (``"restarts"``)."""
    report = Report(machine=machine_description())
    print(f"machine: {report.machine}", flush=True)
    if only in ("all", "deploy"):
        await run_deploys(report, runs, burst, idle_seconds)
    if only in ("all", "restarts"):
        print(f"steady client ({restarts} restarts, {upgrades} upgrades):", flush=True)
        measured: list[RestartFigures] = []

        async def client(sandbox: Sandbox) -> None:
            measured.append(await restarts_and_upgrades(sandbox, restarts, upgrades))

        await in_sandbox(client)
        describe_restarts(measured[0], report.add)
    return report


async def run_deploys(report: Report, runs: int, burst: int, idle_seconds: float) -> None:
    version = installed_version()
    print(f"deploys: runs={runs} burst={burst} idle={idle_seconds}s", flush=True)
    floor_single: list[float] = []
    floor_burst: list[float] = []

    async def floor(sandbox: Sandbox) -> None:
        measured = Floor(sandbox, version)
        async with aiohttp.ClientSession() as session:
            for index in range(runs):
                floor_single.append(await measured.deploy([f"floor{index}"], session))
            floor_burst.append(
                await measured.deploy([f"fburst{index}" for index in range(burst)], session)
            )

    agent_single: list[float] = []
    agent_burst: list[float] = []
    unit_repairs: list[float] = []
    site_repairs: list[float] = []
    idle: dict[str, float] = {}

    async def agent(sandbox: Sandbox) -> None:
        measured = AgentUnderTest(sandbox, version)
        await measured.unit.start()
        try:
            async with aiohttp.ClientSession() as session:
                for index in range(runs):
                    agent_single.append(await measured.deploy([f"single{index}"], session))
                agent_burst.append(
                    await measured.deploy([f"burst{index}" for index in range(burst)], session)
                )
                await asyncio.sleep(1.0)  # let the post-burst resync settle
                config = measured.config
                for index in range(runs):
                    unit_repairs.append(
                        await measured.repair_time(
                            config.systemd_dir / f"single{index}-pocketbase.service",
                            lambda text: text.replace("Restart=always", "Restart=no"),
                        )
                    )
                    site_repairs.append(
                        await measured.repair_time(
                            config.caddy_sites_dir / f"single{index}.caddy",
                            lambda text: text.replace("max_size 10MB", "max_size 1MB"),
                        )
                    )
                # The idle figure is for the burst's services alone (the 50).
                for index in range(runs):
                    (config.spec_dir / f"single{index}.yaml").unlink()
                units = config.systemd_dir

                async def only_the_burst_left() -> bool:
                    return len(list(units.glob("*-pocketbase.service"))) == burst

                if not await wait_until(only_the_burst_left, 60, interval=0.1):
                    raise TimeoutError("the single-run services were not removed")
                await asyncio.sleep(5.0)
                pid = await measured.unit.main_pid()
                ticks_before, _ = process_usage(pid)
                started = time.perf_counter()
                await asyncio.sleep(idle_seconds)
                ticks_after, rss = process_usage(pid)
                elapsed = time.perf_counter() - started
                idle["cpu_percent"] = (
                    100.0 * (ticks_after - ticks_before) / os.sysconf("SC_CLK_TCK") / elapsed
                )
                idle["rss_mb"] = rss / 1024 / 1024
                idle["services"] = float(len(list(config.systemd_dir.glob("*-pocketbase.service"))))
        finally:
            await measured.unit.stop()

    print("floor (no agent):", flush=True)
    await in_sandbox(floor)
    print("agent:", flush=True)
    await in_sandbox(agent)

    single_floor = statistics.median(floor_single)
    single_agent = statistics.median(agent_single)
    report.add("single: floor median (s)", single_floor)
    report.add("single: agent median (s)", single_agent)
    report.add("single: ratio agent/floor [<=1.5]", single_agent / single_floor)
    report.add(f"burst {burst}: floor (s)", floor_burst[0])
    report.add(f"burst {burst}: agent (s)", agent_burst[0])
    report.add(f"burst {burst}: ratio agent/floor [<=1.3]", agent_burst[0] / floor_burst[0])
    report.add("repair unit file: median (s) [<=1]", statistics.median(unit_repairs))
    report.add("repair site snippet: median (s) [<=1]", statistics.median(site_repairs))
    report.add(f"idle {idle_seconds:g}s: services", idle["services"])
    report.add(f"idle {idle_seconds:g}s: agent CPU % of one core [<=1]", idle["cpu_percent"])
    report.add(f"idle {idle_seconds:g}s: agent RSS MB [<=80]", idle["rss_mb"])
