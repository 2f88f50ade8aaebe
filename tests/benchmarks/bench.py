"""Benchmarks of the agent against floors measured in the same run on the same machine.

Two floors, each in a sandbox of its own:
- the **unit floor**, what the machine can do at all: PocketBase units (rendered as the
  agent renders them) of a systemd manager like the agent's, loaded beforehand, started
  over D-Bus until ``/api/health`` answers on loopback; no Caddy, no agent;
- the **scripted floor**: a script that writes the unit file and the Caddy snippet itself
  and drives systemd directly over D-Bus (daemon-reload, Caddy reload, StartUnit), then
  waits for ``/api/health`` through Caddy.
The agent runs as deployed: its own process, a ``Type=notify`` unit of the sandbox's
manager. All three run one after the other, so none disturbs the others' figures.

Figures (the issue's targets in brackets):
- one spec file written -> 200 through Caddy, binary cached: median of N runs, and the
  ratios to both floors' medians [<= 1.5 x the unit floor, agent <= 0.5 s];
- 50 spec files at once -> all 200 through Caddy [<= 1.3 x 50 unit boots together], and
  larger bursts when asked (``large``): the agent's CPU share of the burst, and how many
  daemon-reloads and Caddy waves it took;
- a hand-edited unit file / site snippet -> repaired: median [<= 1 s];
- 50 services idle: the agent's CPU (percent of one core) and RSS over the window
  [<= 1 %, <= 80 MB];
- a steady client through Caddy during 10 restarts and 3 upgrades: 5xx [0] and the
  latency added over the same client's floor (``restarts``);
- one ``/metrics`` scrape of 500 services: the agent's CPU, against the library's own
  cost of printing as many samples [<= 50 ms] (``scrape``: what is real and what is not).
- a change heard by the last of 1 and 32 open watches, against the write's own answer
  [within 100 ms] (``watches``);
- a fleet on PostgreSQL: spec -> serving on a remote node against one host's, and 3 nodes
  x N idle services, each agent's CPU and the server's connections (``fleet``).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from pockestrator.controllers.systemd.unit_state import SystemdError
from pockestrator.specs.model import ServiceSpec, parse_spec
from tests.benchmarks.restarts import RestartFigures
from tests.benchmarks.restarts import describe as describe_restarts
from tests.benchmarks.restarts import measure as restarts_and_upgrades
from tests.benchmarks.scrape import measure as measure_scrape
from tests.benchmarks.watches import WatchFigures
from tests.benchmarks.watches import describe as describe_watches
from tests.benchmarks.watches import measure as watch_latency
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
    session: aiohttp.ClientSession, caddy: str, hosts: list[str], timeout: float | None = None
) -> float:
    """Seconds until every host answers 200 through Caddy (``until_all_answer``)."""
    return await until_all_answer(session, [(caddy, host) for host in hosts], timeout)


async def until_all_answer(
    session: aiohttp.ClientSession,
    targets: list[tuple[str, str]],
    timeout: float | None = None,
) -> float:
    """Seconds until every ``(base URL, Host)`` answers ``/api/health`` with 200.

    Each round probes the targets still pending, then pauses 2 ms per pending one: the
    harness sends about 500 requests a second whatever the burst, so it does not starve
    the system it measures (the same for the floors and the agent).
    """
    if timeout is None:
        timeout = max(120.0, 0.6 * len(targets))  # 500 boots on 2 cores take tens of s
    started = time.perf_counter()
    pending = set(targets)
    while pending:
        order = list(pending)
        results = await asyncio.gather(*(healthy(session, base, host) for base, host in order))
        pending = {target for target, ok in zip(order, results, strict=True) if not ok}
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"not healthy after {timeout}s: {sorted(pending)[:5]}")
        if pending:
            await asyncio.sleep(0.002 * len(pending))
    return time.perf_counter() - started


def distinct_ports(count: int) -> list[int]:
    """``count`` different free ports: ``free_port`` alone may hand out one twice, and a
    spec file whose port another one has is held back (so it never answers)."""
    chosen: list[int] = []
    while len(chosen) < count:
        port = free_port()
        if port not in chosen:
            chosen.append(port)
    return chosen


def spec_text(name: str, port: int, version: str) -> str:
    return f'project_name: {name}\nport: {port}\npocketbase_version: "{version}"\n'


# -- the unit floor: PocketBase units alone ----------------------------------------------


class _FloorHost:
    """What both floors lay out as the agent would: the sandbox's configuration, the cached
    binary, and for each service its folder (owned by ``nobody``) and its unit file."""

    def __init__(self, sandbox: Sandbox, version: str) -> None:
        self.sandbox = sandbox
        self.config = sandbox.agent_config()
        self.settings = UnitSettings.from_config(self.config)
        seed_from_installed(self.config.release_cache_dir)
        self.binary = self.config.release_cache_dir / version / "pocketbase"
        self.version = version

    def specs(self, names: list[str]) -> list[ServiceSpec]:
        return [
            parse_spec(
                {"project_name": n, "port": port, "pocketbase_version": self.version},
                "localhost",
            )
            for n, port in zip(names, distinct_ports(len(names)), strict=True)
        ]

    def lay_out(self, spec: ServiceSpec) -> None:
        directory = self.config.base_dir / spec.project_name
        (directory / "pb_data").mkdir(parents=True)
        os.link(self.binary, directory / "pocketbase")
        shutil.chown(directory, "nobody", "nogroup")
        shutil.chown(directory / "pb_data", "nobody", "nogroup")
        (self.config.systemd_dir / spec.unit_name).write_text(render_unit(spec, self.settings))


class UnitFloor(_FloorHost):
    """PocketBase units started over D-Bus until ``/api/health`` answers on loopback.

    The units are rendered as the agent renders them (the same box) and loaded by a
    daemon-reload before the clock starts: what is timed is systemd starting the units
    and PocketBase booting on a fresh ``pb_data``, nothing else.
    """

    async def boot(self, names: list[str], session: aiohttp.ClientSession) -> float:
        bus = self.sandbox.bus
        assert bus is not None
        specs = self.specs(names)
        for spec in specs:
            self.lay_out(spec)
        await bus.daemon_reload()
        # At most 64 StartUnit calls in flight (the agent's worker count): 500 at once
        # queue behind each other in the manager past a call's 10 s timeout.
        gate = asyncio.Semaphore(64)

        async def start(unit: str) -> None:
            async with gate:
                await bus.start_unit(unit)

        started = time.perf_counter()
        await asyncio.gather(*(start(spec.unit_name) for spec in specs))
        targets = [(f"http://127.0.0.1:{spec.port}", "127.0.0.1") for spec in specs]
        await until_all_answer(session, targets)
        return time.perf_counter() - started


# -- the scripted floor: the same steps as the agent, no agent ---------------------------


class Floor(_FloorHost):
    """The same systemd and Caddy steps, done directly, for ``names`` at once."""

    async def deploy(self, names: list[str], session: aiohttp.ClientSession) -> float:
        bus = self.sandbox.bus
        assert bus is not None
        specs = self.specs(names)
        started = time.perf_counter()
        for spec in specs:
            self.lay_out(spec)
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
        for name, port in zip(names, distinct_ports(len(names)), strict=True):
            (spec_dir / f".{name}.tmp").write_text(spec_text(name, port, self.version))
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


@dataclass(frozen=True)
class Waves:
    """The daemon-reloads and Caddy waves the agent's log lines report, and their time."""

    reloads: int = 0
    reload_seconds: float = 0.0
    caddy: int = 0
    caddy_seconds: float = 0.0

    def since(self, before: Waves) -> Waves:
        return Waves(
            self.reloads - before.reloads,
            self.reload_seconds - before.reload_seconds,
            self.caddy - before.caddy,
            self.caddy_seconds - before.caddy_seconds,
        )


def wave_counts(journal: str) -> Waves:
    """What the agent's JSON log lines in ``journal`` say of its waves."""
    found = Waves()
    for line in journal.splitlines():
        if not line.startswith("{"):
            continue
        with contextlib.suppress(ValueError, TypeError):
            entry = json.loads(line)
            if not isinstance(entry, dict) or "services" not in entry:
                continue
            if entry.get("event") == "daemon-reload":
                found = Waves(
                    found.reloads + 1,
                    found.reload_seconds + float(entry.get("seconds", 0.0)),
                    found.caddy,
                    found.caddy_seconds,
                )
            elif entry.get("event") == "caddy wave":
                seconds = float(entry.get("load_seconds", 0.0))
                seconds += float(entry.get("check_seconds", 0.0))
                found = Waves(
                    found.reloads,
                    found.reload_seconds,
                    found.caddy + 1,
                    found.caddy_seconds + seconds,
                )
    return found


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
    runs: int = 20,
    burst: int = 50,
    idle_seconds: float = 60.0,
    *,
    restarts: int = 10,
    upgrades: int = 3,
    scrape_services: int = 500,
    only: str = "all",
    changes: int = 50,
    large: tuple[int, ...] = (),
    fleet_services: int = 0,
) -> Report:
    """Every figure (``only="all"``), or those of deploys (``"deploy"``), of the steady
    client through restarts and upgrades (``"restarts"``), of a scrape (``"scrape"``), of
    watches (``"watch"``) or of a fleet of ``fleet_services`` per node (``"fleet"``; none
    when 0)."""
    report = Report(machine=machine_description())
    print(f"machine: {report.machine}", flush=True)
    if only in ("all", "deploy"):
        await run_deploys(report, runs, burst, idle_seconds, large)
    if only in ("all", "restarts"):
        print(f"steady client ({restarts} restarts, {upgrades} upgrades):", flush=True)
        measured: list[RestartFigures] = []

        async def client(sandbox: Sandbox) -> None:
            measured.append(await restarts_and_upgrades(sandbox, restarts, upgrades))

        await in_sandbox(client)
        describe_restarts(measured[0], report.add)
    if only in ("all", "scrape"):
        await run_scrape(report, scrape_services)
    if only in ("all", "watch"):
        print(f"watches ({changes} changes):", flush=True)
        heard: list[WatchFigures] = []
        for watchers in (1, 32):

            async def watching(sandbox: Sandbox, watchers: int = watchers) -> None:
                heard.append(await watch_latency(sandbox, changes, watchers))

            await in_sandbox(watching)
            describe_watches(heard[-1], report.add)
    if only in ("all", "fleet") and fleet_services:
        # Here: the fleet's module builds on this one's helpers.
        from tests.benchmarks.fleet import measure as measure_fleet

        await measure_fleet(min(runs, 10), fleet_services, idle_seconds, report.add)
    return report


@dataclass
class FloorRun:
    """One floor's figures: services brought up one at a time, then one burst per size."""

    what: str  # its name in the report's notes
    prefixes: tuple[str, str]  # of the single services' names, of the bursts'
    single: list[float] = field(default_factory=list)
    bursts: dict[int, float] = field(default_factory=dict)

    async def measure(
        self,
        bring_up: Callable[[list[str], aiohttp.ClientSession], Awaitable[float]],
        runs: int,
        sizes: tuple[int, ...],
        report: Report,
    ) -> None:
        """``runs`` single services, then a burst of each size; a burst the machine cannot
        take is noted and ends the bursts (a larger one would not fare better)."""
        one, many = self.prefixes
        async with aiohttp.ClientSession() as session:
            for index in range(runs):
                self.single.append(await bring_up([f"{one}{index}"], session))
            for size in sizes:
                names = [f"{many}{size}x{index}" for index in range(size)]
                try:
                    self.bursts[size] = await bring_up(names, session)
                except (TimeoutError, SystemdError) as exc:
                    report.notes.append(f"{self.what}, burst {size}: {exc}")
                    break


async def run_deploys(
    report: Report, runs: int, burst: int, idle_seconds: float, large: tuple[int, ...] = ()
) -> None:
    version = installed_version()
    print(
        f"deploys: runs={runs} burst={burst} idle={idle_seconds}s large={list(large)}",
        flush=True,
    )
    sizes = (burst, *large)
    unit = FloorRun("unit floor", ("unit", "ub"))
    scripted = FloorRun("scripted floor", ("floor", "fb"))

    async def unit_floor(sandbox: Sandbox) -> None:
        await unit.measure(UnitFloor(sandbox, version).boot, runs, sizes, report)

    async def floor(sandbox: Sandbox) -> None:
        await scripted.measure(Floor(sandbox, version).deploy, runs, sizes, report)

    agent_single: list[float] = []
    agent_bursts: dict[int, float] = {}
    burst_cpu: dict[int, float] = {}
    burst_waves: dict[int, Waves] = {}
    unit_repairs: list[float] = []
    site_repairs: list[float] = []
    idle: dict[str, float] = {}

    async def agent(sandbox: Sandbox) -> None:
        measured = AgentUnderTest(sandbox, version)
        await measured.unit.start()
        try:
            async with aiohttp.ClientSession() as session:

                async def agent_burst(size: int, prefix: str) -> None:
                    pid = await measured.unit.main_pid()
                    ticks_before, _ = process_usage(pid)
                    waves_before = wave_counts(measured.unit.journal())
                    names = [f"{prefix}{index}" for index in range(size)]
                    agent_bursts[size] = await measured.deploy(names, session)
                    ticks_after, _ = process_usage(pid)
                    cpu_seconds = (ticks_after - ticks_before) / os.sysconf("SC_CLK_TCK")
                    burst_cpu[size] = 100.0 * cpu_seconds / agent_bursts[size]
                    await asyncio.sleep(1.0)  # the journal takes the last lines in
                    waves_after = wave_counts(measured.unit.journal())
                    burst_waves[size] = waves_after.since(waves_before)

                for index in range(runs):
                    agent_single.append(await measured.deploy([f"single{index}"], session))
                await agent_burst(burst, "burst")
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
                for size in large:
                    await asyncio.sleep(2.0)
                    try:
                        await agent_burst(size, f"large{size}x")
                    except (TimeoutError, SystemdError) as exc:
                        report.notes.append(f"agent, burst {size}: {exc}")
                        break
        finally:
            await measured.unit.stop()

    print("unit floor (PocketBase units alone):", flush=True)
    await in_sandbox(unit_floor)
    print("scripted floor (no agent):", flush=True)
    await in_sandbox(floor)
    print("agent:", flush=True)
    await in_sandbox(agent)

    single_unit = statistics.median(unit.single)
    single_floor = statistics.median(scripted.single)
    single_agent = statistics.median(agent_single)
    report.add("single: unit floor median (s)", single_unit)
    report.add("single: floor median (s)", single_floor)
    report.add("single: agent median (s)", single_agent)
    report.add("single: ratio agent/unit floor [<=1.5]", single_agent / single_unit)
    report.add("single: ratio agent/floor", single_agent / single_floor)
    for size in sizes:
        if size not in unit.bursts or size not in scripted.bursts or size not in agent_bursts:
            print(f"  burst {size}: not measured (see notes)", flush=True)
            continue
        report.add(f"burst {size}: unit floor (s)", unit.bursts[size])
        report.add(f"burst {size}: floor (s)", scripted.bursts[size])
        report.add(f"burst {size}: agent (s)", agent_bursts[size])
        report.add(
            f"burst {size}: ratio agent/unit floor [<=1.3]", agent_bursts[size] / unit.bursts[size]
        )
        report.add(f"burst {size}: ratio agent/floor", agent_bursts[size] / scripted.bursts[size])
        report.add(f"burst {size}: agent CPU % of one core", burst_cpu[size])
        waves = burst_waves[size]
        report.add(f"burst {size}: daemon-reloads", waves.reloads)
        report.add(f"burst {size}: daemon-reload seconds", waves.reload_seconds)
        report.add(f"burst {size}: caddy waves", waves.caddy)
        report.add(f"burst {size}: caddy seconds (load + trials)", waves.caddy_seconds)
    report.add("repair unit file: median (s) [<=1]", statistics.median(unit_repairs))
    report.add("repair site snippet: median (s) [<=1]", statistics.median(site_repairs))
    report.add(f"idle {idle_seconds:g}s: services", idle["services"])
    report.add(f"idle {idle_seconds:g}s: agent CPU % of one core [<=1]", idle["cpu_percent"])
    report.add(f"idle {idle_seconds:g}s: agent RSS MB [<=150]", idle["rss_mb"])


async def run_scrape(report: Report, scrape_services: int) -> None:
    print(f"metrics scrape of {scrape_services} services:", flush=True)
    scrape = await measure_scrape(scrape_services)
    count = scrape_services
    report.add(f"scrape {count}: samples", scrape["samples"])
    report.add(f"scrape {count}: agent CPU (ms) [<=50]", scrape["agent_cpu_ms"])
    report.add(
        f"scrape {count}: floor, the library printing as many samples (ms)", scrape["floor_cpu_ms"]
    )
    report.add(
        f"scrape {count}: floor, the least D-Bus call and file reads (ms)",
        scrape["floor_look_cpu_ms"],
    )
    floors = scrape["floor_cpu_ms"] + scrape["floor_look_cpu_ms"]
    report.add(f"scrape {count}: ratio agent/(both floors)", scrape["agent_cpu_ms"] / floors)
    report.add(f"scrape {count}: first scrape CPU (ms)", scrape["first_scrape_cpu_ms"])
    report.add(
        f"scrape {count}: before, a GetAll per unit alone (ms)", scrape["per_unit_getall_cpu_ms"]
    )
