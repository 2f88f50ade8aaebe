"""Where one spec file's time goes: a timeline of the agent's steps, from the rename to 200.

``.venv/bin/python -m tests.benchmarks.timeline --runs 20``. The agent runs in this
process (so its steps can be stamped; the harness's probe shares its event loop), in a
test bed of its own. Each step the single-spec path takes is wrapped with monotonic
stamps: the spec directory reading the inotify batch, the work queue, the reconcile, its
observation, the release check, systemd's calls (``Reload``, ``EnableUnitFiles``,
``ResetFailedUnit``, ``StartUnit``), the Caddy change, the health wait, PocketBase's
settings, the status write, and the harness's first 200 through Caddy (and, beside it,
on the instance's own port: when PocketBase itself first answers). Each run's spec
file is renamed into place once the previous service has settled; the figures are the
median, over the runs, of when each step began and ended, in ms after the rename.

``--back-to-back`` renames the next file as soon as the previous one answers through
Caddy, as the deploy benchmark does (the previous service's superuser and settings are then
still under way beside the next boot). Before the agent starts, the same sandbox boots
``--floor`` PocketBase units alone (``bench.UnitFloor``: StartUnit until ``/api/health``
answers on loopback), so the agent's median to 200 is printed as a ratio to a floor
measured in the same run.

A timeline, not a sampling profile: it says which step the wall-clock time is spent in,
including waiting for a CPU on a loaded host.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

import pockestrator.agent.settle as settle_module
from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.controllers.releases import seed_from_installed
from tests.benchmarks.bench import UnitFloor, healthy, in_sandbox, spec_text
from tests.testbed.mirror import installed_version
from tests.testbed.waiting import wait_until

Stamps = list[tuple[str, float, float]]  # (step, began, ended), monotonic seconds
CADDY_200 = "200 through Caddy (harness)"


class Recorder:
    """Collects the stamped steps of the run under way."""

    def __init__(self) -> None:
        self.stamps: Stamps = []

    def wrap(self, owner: Any, attribute: str, label: str) -> None:
        """Replace ``owner.attribute`` (a coroutine function) by a stamped one."""
        inner: Callable[..., Awaitable[Any]] = getattr(owner, attribute)

        @functools.wraps(inner)
        async def stamped(*args: Any, **kwargs: Any) -> Any:
            began = time.monotonic()
            try:
                return await inner(*args, **kwargs)
            finally:
                self.stamps.append((label, began, time.monotonic()))

        setattr(owner, attribute, stamped)

    def wrap_sync(self, owner: Any, attribute: str, label: str) -> None:
        inner: Callable[..., Any] = getattr(owner, attribute)

        @functools.wraps(inner)
        def stamped(*args: Any, **kwargs: Any) -> Any:
            began = time.monotonic()
            try:
                return inner(*args, **kwargs)
            finally:
                self.stamps.append((label, began, time.monotonic()))

        setattr(owner, attribute, stamped)

    def mark(self, label: str) -> None:
        now = time.monotonic()
        self.stamps.append((label, now, now))


def instrument(agent: Agent, recorder: Recorder) -> None:
    """Stamp every step of the single-spec path (see the module docstring)."""
    bus = agent.bus
    reconciler = agent.reconciler
    recorder.wrap_sync(agent.spec_directory, "sync_paths", "spec file read, validated, stored")
    recorder.wrap_sync(agent.queue, "add", "queued")
    recorder.wrap(reconciler, "reconcile", "reconcile")
    recorder.wrap(reconciler, "observe", "observe (D-Bus, files)")
    recorder.wrap(reconciler.controllers.releases, "ensure", "release check")
    recorder.wrap_sync(reconciler.controllers.units, "write_environment", "environment file")
    recorder.wrap_sync(reconciler.controllers.units, "write", "unit file written")
    recorder.wrap(reconciler.coordinator, "park", "parked at a wave's barrier")
    recorder.wrap(bus, "daemon_reload", "systemd Reload")
    recorder.wrap(bus, "enable_unit_files", "systemd EnableUnitFiles")
    recorder.wrap(bus, "reset_failed_unit", "systemd ResetFailedUnit")
    recorder.wrap(bus, "start_unit", "systemd StartUnit (job done)")
    recorder.wrap(reconciler.controllers.sites, "apply", "Caddy load (admin API)")
    recorder.wrap(reconciler.boots, "look", "health: boot watch")
    recorder.wrap(settle_module, "wait_healthy", "health: wait in the reconcile")
    recorder.wrap(reconciler.settler, "configure", "PocketBase settings (agent superuser)")
    recorder.wrap_sync(agent.store, "update_status", "status written")


async def first_200(
    session: aiohttp.ClientSession, caddy: str, host: str, timeout: float = 30
) -> None:
    if not await wait_until(lambda: healthy(session, caddy, host), timeout, interval=0.002):
        raise TimeoutError(f"{host} did not answer through Caddy")


async def settled(agent: Agent, name: str, timeout: float = 30.0) -> None:
    """Until the service's status says active with its settings applied, and no worker
    has it (the next run starts on a quiet agent)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = agent.store.get_status(name)
        busy = any(key == name for key, _ in agent._busy.values())
        if (
            status is not None
            and status.state == "active"
            and status.settings_checked_at is not None
            and not busy
            and len(agent.queue) == 0
        ):
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"{name} did not settle")


def summarise(runs: list[tuple[float, Stamps]]) -> list[tuple[str, float, float, int]]:
    """Per step: median began and ended (ms after the rename), and in how many runs."""
    began: defaultdict[str, list[float]] = defaultdict(list)
    ended: defaultdict[str, list[float]] = defaultdict(list)
    for zero, stamps in runs:
        seen: set[str] = set()
        for step, start, stop in stamps:
            # Back to back, the previous service's steps still under way at the rename.
            label = step if start >= zero else f"(previous) {step}"
            if label in seen:
                continue  # each step's first occurrence in the run
            seen.add(label)
            began[label].append(1000 * (start - zero))
            ended[label].append(1000 * (stop - zero))
    rows = [
        (label, statistics.median(began[label]), statistics.median(ended[label]), len(began[label]))
        for label in began
    ]
    return sorted(rows, key=lambda row: (row[1], row[2]))


async def unit_floor(sandbox: Sandbox, runs: int) -> list[float]:
    """``runs`` PocketBase units booted one after the other, no agent (``bench.UnitFloor``)."""
    floor = UnitFloor(sandbox, installed_version())
    async with aiohttp.ClientSession() as session:
        return [await floor.boot([f"uf{index}"], session) for index in range(runs)]


async def measure(
    sandbox: Sandbox, runs: int, back_to_back: bool = False
) -> list[tuple[float, Stamps]]:
    version = installed_version()
    config = sandbox.agent_config(listen_port=free_port(), health_interval=10.0)
    seed_from_installed(config.release_cache_dir)
    agent = Agent(config)
    await agent.start()
    recorder = Recorder()
    instrument(agent, recorder)
    measured: list[tuple[float, Stamps]] = []
    try:
        async with aiohttp.ClientSession() as session:
            for index in range(runs):
                name = f"tl{index}"
                spec_dir = config.spec_dir
                port = free_port()
                (spec_dir / f".{name}.tmp").write_text(spec_text(name, port, version))
                recorder.stamps = []
                zero = time.monotonic()
                os.replace(spec_dir / f".{name}.tmp", spec_dir / f"{name}.yaml")

                async def through_caddy(name: str = name) -> None:
                    await first_200(session, sandbox.caddy_url, f"{name}.localhost")
                    recorder.mark(CADDY_200)

                async def on_its_port(port: int = port) -> None:
                    await first_200(session, f"http://127.0.0.1:{port}", "127.0.0.1")
                    recorder.mark("200 on its own port (harness)")

                await asyncio.gather(through_caddy(), on_its_port())
                measured.append((zero, recorder.stamps))
                if back_to_back:
                    continue  # the next file at once, as the deploy benchmark does
                await settled(agent, name)
                await asyncio.sleep(0.3)  # the agent's own file events for it go by
    finally:
        await agent.stop()
    return measured


async def measure_burst(sandbox: Sandbox, size: int) -> tuple[float, Stamps]:
    """``size`` spec files renamed into place at once; the steps of all of them."""
    version = installed_version()
    config = sandbox.agent_config(listen_port=free_port(), health_interval=10.0)
    seed_from_installed(config.release_cache_dir)
    agent = Agent(config)
    await agent.start()
    recorder = Recorder()
    instrument(agent, recorder)
    names = [f"tb{index}" for index in range(size)]
    ports = {name: free_port() for name in names}
    try:
        async with aiohttp.ClientSession() as session:
            for name in names:
                text = spec_text(name, ports[name], version)
                (config.spec_dir / f".{name}.tmp").write_text(text)
            await asyncio.sleep(1.0)
            recorder.stamps = []
            zero = time.monotonic()
            for name in names:
                os.replace(config.spec_dir / f".{name}.tmp", config.spec_dir / f"{name}.yaml")

            async def through_caddy(name: str) -> None:
                await first_200(session, sandbox.caddy_url, f"{name}.localhost", 300)
                recorder.mark(CADDY_200)

            async def on_its_port(name: str) -> None:
                await first_200(session, f"http://127.0.0.1:{ports[name]}", "127.0.0.1", 300)
                recorder.mark("200 on its own port (harness)")

            await asyncio.gather(
                *(through_caddy(name) for name in names), *(on_its_port(name) for name in names)
            )
            recorder.mark("all 200 through Caddy")
            for name in names:
                await settled(agent, name, 300)
            return zero, recorder.stamps
    finally:
        await agent.stop()


def spread(zero: float, stamps: Stamps) -> list[tuple[str, int, float, float, float, float]]:
    """Per step of a burst: how many, first began, median began, median ended, last ended
    (ms after the renames)."""
    began: defaultdict[str, list[float]] = defaultdict(list)
    ended: defaultdict[str, list[float]] = defaultdict(list)
    for label, start, stop in stamps:
        began[label].append(1000 * (start - zero))
        ended[label].append(1000 * (stop - zero))
    rows = [
        (
            label,
            len(began[label]),
            min(began[label]),
            statistics.median(began[label]),
            statistics.median(ended[label]),
            max(ended[label]),
        )
        for label in began
    ]
    return sorted(rows, key=lambda row: row[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--burst", type=int, default=0, help="one burst of this many instead")
    parser.add_argument("--floor", type=int, default=10, help="unit-floor boots first (0: none)")
    parser.add_argument(
        "--back-to-back", action="store_true", help="the next file once the last answers"
    )
    args = parser.parse_args()
    if args.burst:
        burst: list[tuple[float, Stamps]] = []

        async def in_burst(sandbox: Sandbox) -> None:
            burst.append(await measure_burst(sandbox, args.burst))

        asyncio.run(in_sandbox(in_burst))
        print(f"load average: {os.getloadavg()}")
        print(f"{'step':<46} {'n':>4} {'first':>8} {'med.beg':>8} {'med.end':>8} {'last':>8}")
        for label, count, first, mid_start, mid_stop, last in spread(*burst[0]):
            print(
                f"{label:<46} {count:4d} {first:8.0f} {mid_start:8.0f} {mid_stop:8.0f} {last:8.0f}"
            )
        return
    measured: list[list[tuple[float, Stamps]]] = []
    floor: list[float] = []

    async def body(sandbox: Sandbox) -> None:
        if args.floor:
            floor.extend(await unit_floor(sandbox, args.floor))
        measured.append(await measure(sandbox, args.runs, args.back_to_back))

    asyncio.run(in_sandbox(body))
    print(f"load average: {os.getloadavg()}")
    print(f"{'step':<46} {'began':>8} {'ended':>8} {'runs':>5}  (ms after the rename, median)")
    rows = summarise(measured[0])
    for label, start, stop, count in rows:
        print(f"{label:<46} {start:8.1f} {stop:8.1f} {count:5d}")
    if floor:
        through = [stop for label, _start, stop, _count in rows if label == CADDY_200]
        unit_ms = 1000 * statistics.median(floor)
        print(f"unit floor (median of {len(floor)}): {unit_ms:.1f} ms")
        if through:
            print(f"200 through Caddy / unit floor: {through[0] / unit_ms:.2f}")


if __name__ == "__main__":
    main()
