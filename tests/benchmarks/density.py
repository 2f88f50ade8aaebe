"""Many services on one host: a burst, the idle agent, an agent restart, RAM asleep.

``.venv/bin/python -m tests.benchmarks.density --services 500 --idle 300``; figures in
``test-artifacts/benchmarks-density.json``. Each part, one after the other:

1. the unit floor: ``services`` PocketBase units started together (``bench.UnitFloor``,
   in a test bed of its own) until each ``/api/health`` answers;
2. the agent as deployed (its own process, a unit of the test bed's manager) gets
   ``services`` spec files at once: seconds until all answer 200 through Caddy, the
   ratio to the floor, the agent's CPU share of the burst, its daemon-reloads and Caddy
   loads (from its log lines);
3. ``idle`` seconds with those services running and nothing changing: the agent's CPU
   (percent of one core) and RSS at the end, and how many instance settings checks the
   window held (``--idle-aligned`` starts it just before the first is due, so that an
   ``--idle`` of ``settings_check_interval`` holds one per instance, as steady running
   does; ``--profile-idle`` samples the agent with py-spy over the window);
4. the agent restarted (its unit stopped, then started) with every service running:
   seconds from the start until every service's status was written by a reconcile of
   the new agent, and how many instances were restarted meanwhile (main PID or
   ``NRestarts`` changed; the target is none);
5. nine in ten services given ``sleep_after: 5s`` (their spec files edited): the sum of
   the instances' units' ``MemoryCurrent`` all awake, and once those sleep.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.clock import utc_now
from pockestrator.controllers.releases import seed_from_installed
from pockestrator.controllers.systemd.bus import SystemdBus
from pockestrator.controllers.systemd.unit_state import UnitStatus
from pockestrator.specs.model import unit_name
from tests.benchmarks.bench import (
    Report,
    UnitFloor,
    distinct_ports,
    in_sandbox,
    machine_description,
    process_usage,
    spec_text,
    until_all_healthy,
    wave_counts,
)
from tests.testbed.agent_unit import AgentUnit
from tests.testbed.mirror import installed_version
from tests.testbed.waiting import wait_until

SLEEP_AFTER = "5s"


def load_average() -> str:
    return "/".join(f"{value:.1f}" for value in os.getloadavg())


async def statuses(bus: SystemdBus, names: list[str]) -> dict[str, UnitStatus]:
    """systemd's view of each instance's unit, 32 calls at a time."""
    gate = asyncio.Semaphore(32)

    async def one(name: str) -> UnitStatus:
        async with gate:
            return await bus.unit_status(unit_name(name))

    found = await asyncio.gather(*(one(name) for name in names))
    return dict(zip(names, found, strict=True))


async def profile_idle(pid: int, output: Path, seconds: float) -> asyncio.subprocess.Process:
    """py-spy sampling the idle agent for ``seconds``, started now (py-spy is not a
    dependency of the project: ``pip install py-spy`` into the virtual environment). It
    reads the agent's memory without stopping it (``--nonblocking``) and records only
    samples where a thread runs, so the stacks share out the agent's CPU; py-spy's own
    CPU is its process's, not the agent's."""
    spy = Path(sys.executable).parent / "py-spy"
    print(f"  py-spy of the idle agent for {seconds:g} s -> {output}", flush=True)
    return await asyncio.create_subprocess_exec(
        str(spy), "record", "--nonblocking", "-r", "200", "-d", str(int(seconds)),
        "-f", "raw", "-o", str(output), "-p", str(pid),
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


def settings_checks(store_statuses: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """When each service's instance settings were last read (``settings_checked_at``)."""
    return {n: store_statuses[n].settings_checked_at for n in names if n in store_statuses}


async def until_settings_due(
    found: dict[str, Any], names: list[str], interval: float, margin: float = 5.0
) -> None:
    """Sleep until ``margin`` seconds before the first instance's settings check is due:
    a window of ``interval`` from then holds exactly one check of every instance, as
    steady running does (the burst read them all within less than ``interval``, and
    the second check of each comes at least ``interval`` after its first)."""
    checked = [at for at in settings_checks(found, names).values() if at is not None]
    if not checked:
        return
    wait = (min(checked) - utc_now()).total_seconds() + interval - margin
    print(f"  waiting {wait:.0f} s for the first settings check to fall due", flush=True)
    await asyncio.sleep(max(0.0, wait))


async def agent_part(
    sandbox: Sandbox,
    report: Report,
    services: int,
    idle: float,
    profile: Path | None = None,
    aligned: bool = False,
) -> None:
    version = installed_version()
    # The agent's own defaults (a health probe of each instance every 30 s, a resync every
    # 60 s), as installed: the idle figure is what those cost with this many services.
    config = sandbox.agent_config(listen_port=free_port())
    settings_interval = config.settings_check_interval
    seed_from_installed(config.release_cache_dir)
    unit = AgentUnit(sandbox, config, watchdog_seconds=60)
    bus = sandbox.bus
    assert bus is not None
    await unit.start()
    names = [f"d{index}" for index in range(services)]
    ports = dict(zip(names, distinct_ports(services), strict=True))
    try:
        async with aiohttp.ClientSession() as session:
            # 2. the burst
            for name in names:
                (config.spec_dir / f".{name}.tmp").write_text(spec_text(name, ports[name], version))
            pid = await unit.main_pid()
            ticks_before, _ = process_usage(pid)
            waves_before = wave_counts(unit.journal())
            print(f"  burst of {services}, load {load_average()}", flush=True)
            started = time.perf_counter()
            for name in names:
                os.replace(config.spec_dir / f".{name}.tmp", config.spec_dir / f"{name}.yaml")
            burst = await until_all_healthy(
                session, sandbox.caddy_url, [f"{name}.localhost" for name in names]
            )
            ticks_after, _ = process_usage(pid)
            report.add(f"burst {services}: agent (s)", burst)
            report.add(
                f"burst {services}: agent CPU % of one core",
                100.0 * (ticks_after - ticks_before) / os.sysconf("SC_CLK_TCK") / burst,
            )
            report.notes.append(f"burst {services}: load average after it {load_average()}")
            store = unit.store()

            async def all_active() -> bool:
                found = store.all_statuses()
                return all(n in found and found[n].state == "active" for n in names)

            if not await wait_until(all_active, 600, interval=0.5):
                raise TimeoutError("the burst's services did not all become active")
            await asyncio.sleep(2.0)  # the journal takes the last lines in
            waves = wave_counts(unit.journal()).since(waves_before)
            report.add(f"burst {services}: daemon-reloads", waves.reloads)
            report.add(f"burst {services}: caddy loads", waves.caddy)
            report.add(f"burst {services}: caddy seconds", waves.caddy_seconds)

            # 3. idle
            await asyncio.sleep(10.0)  # the settings phase and the first probes go by
            if aligned:
                await until_settings_due(store.all_statuses(), names, settings_interval)
            print(f"  idle {idle:g} s, load {load_average()}", flush=True)
            report.notes.append(f"idle: load average at its start {load_average()}")
            checked_before = settings_checks(store.all_statuses(), names)
            spy = await profile_idle(pid, profile, idle) if profile is not None else None
            ticks_before, _ = process_usage(pid)
            started = time.perf_counter()
            await asyncio.sleep(idle)
            ticks_after, rss = process_usage(pid)
            elapsed = time.perf_counter() - started
            checked_after = settings_checks(store.all_statuses(), names)
            # The instances' settings are read every settings_check_interval (300 s): a
            # window that holds none of those reads leaves out their share of the CPU.
            report.add(
                f"idle {idle:g}s: instance settings checks in the window",
                sum(1 for n, at in checked_after.items() if at != checked_before.get(n)),
            )
            report.add(
                f"idle {idle:g}s, {services} services: agent CPU % of one core [<=1]",
                100.0 * (ticks_after - ticks_before) / os.sysconf("SC_CLK_TCK") / elapsed,
            )
            report.add(f"idle {idle:g}s, {services} services: agent RSS MB [<=150]", rss / 2**20)
            report.notes.append(f"idle: load average at its end {load_average()}")
            if spy is not None:
                await spy.wait()

            # 4. an agent restart
            before = await statuses(bus, names)
            await unit.stop()
            print(f"  agent restart, load {load_average()}", flush=True)
            mark = time.time()
            started = time.perf_counter()
            await bus.start_unit("pockestrator-agent.service")
            ready = time.perf_counter() - started

            async def all_reconciled() -> bool:
                found = store.all_statuses()
                return all(
                    n in found
                    and found[n].updated_at is not None
                    and found[n].updated_at.timestamp() >= mark
                    for n in names
                )

            if not await wait_until(all_reconciled, 600, interval=0.2):
                raise TimeoutError("not every service was reconciled after the restart")
            converged = time.perf_counter() - started
            after = await statuses(bus, names)
            restarts = sum(
                1
                for n in names
                if after[n].main_pid != before[n].main_pid
                or after[n].n_restarts != before[n].n_restarts
            )
            report.add(f"restart with {services}: agent ready (READY=1) (s)", ready)
            report.add(f"restart with {services}: every service reconciled (s)", converged)
            report.add(f"restart with {services}: instances restarted [0]", restarts)
            report.notes.append(f"restart: load average after it {load_average()}")

            # 5. RAM asleep
            awake = sum(s.memory_current or 0 for s in after.values() if s.is_running)
            sleepers = names[: services * 9 // 10]
            print(f"  {len(sleepers)} fall asleep, load {load_average()}", flush=True)
            for name in sleepers:
                path = config.spec_dir / f"{name}.yaml"
                path.write_text(
                    spec_text(name, ports[name], version) + f"sleep_after: {SLEEP_AFTER}\n"
                )

            marks = config.database.parent / "sleeping"  # the agent's marks (agent.sleep)

            async def asleep() -> bool:
                return all((marks / name).exists() for name in sleepers)

            if not await wait_until(asleep, 600, interval=0.5):
                raise TimeoutError("the sleepers did not all fall asleep")
            slept = await statuses(bus, names)
            asleep_ram = sum(s.memory_current or 0 for s in slept.values() if s.is_running)
            report.add(f"RAM of {services} instances all awake (MB)", awake / 1e6)
            report.add(
                f"RAM of {services} instances, {len(sleepers)} asleep (MB)", asleep_ram / 1e6
            )
            report.add("RAM ratio asleep/awake", asleep_ram / awake if awake else 0.0)
    finally:
        await unit.stop()


async def run(
    services: int, idle: float, profile: Path | None = None, aligned: bool = False
) -> Report:
    report = Report(machine=machine_description())
    print(f"machine: {report.machine}; services={services} idle={idle:g}s", flush=True)
    floor: dict[str, float] = {}

    async def unit_floor(sandbox: Sandbox) -> None:
        measured = UnitFloor(sandbox, installed_version())
        async with aiohttp.ClientSession() as session:
            print(f"unit floor: {services} units, load {load_average()}", flush=True)
            floor["burst"] = await measured.boot([f"u{i}" for i in range(services)], session)
        report.notes.append(f"unit floor: load average after it {load_average()}")

    async def agent(sandbox: Sandbox) -> None:
        print("agent:", flush=True)
        await agent_part(sandbox, report, services, idle, profile, aligned)

    await in_sandbox(unit_floor)
    report.add(f"burst {services}: unit floor (s)", floor["burst"])
    await in_sandbox(agent)
    report.add(
        f"burst {services}: ratio agent/unit floor",
        report.figures[f"burst {services}: agent (s)"] / floor["burst"],
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--idle", type=float, default=300.0)
    parser.add_argument(
        "--output", type=Path, default=Path("test-artifacts/benchmarks-density.json")
    )
    parser.add_argument(
        "--profile-idle", type=Path, help="py-spy's raw stacks of the agent over the idle window"
    )
    parser.add_argument(
        "--idle-aligned",
        action="store_true",
        help="start the idle window just before the first settings check is due, so that a "
        "window of settings_check_interval holds one check per instance",
    )
    args = parser.parse_args()
    report = asyncio.run(run(args.services, args.idle, args.profile_idle, args.idle_aligned))
    for note in report.notes:
        print(f"  note: {note}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.as_json() + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
