"""Sleeping instances: wake from sleep to first byte through Caddy, and host RAM asleep.

``python -m tests.benchmarks.sleep [--wakes 10] [--services 20]``; figures in
``test-artifacts/benchmarks-sleep.json``.

Wake: one service with ``sleep_after: 5s``, run by the agent as deployed (its own
process, a unit of the sandbox's systemd), on an existing database. Each round waits
until the API shows it ``sleeping`` (its unit stopped), then sends one GET of
``/api/health`` through Caddy together with a burst of more requests, and times the first
one to its first byte (the answer's status line). Every answer is counted; anything but
200 is a failure. Against two floors in the same run: the same request while the service
is awake (what Caddy and PocketBase cost anyway), and, in a sandbox of its own with no
agent, the same PocketBase unit started with ``StartUnit`` until ``/api/health`` answers
on its port (the boot itself).

RAM: ``services`` services created awake, each asked once through Caddy; the sum of their
units' ``MemoryCurrent`` (their cgroups: PocketBase and whatever it holds in page cache)
is taken; then nine in ten get ``sleep_after: 5s`` and, once those sleep, the sum again.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp

from pockestrator.accounts.store import AccountStore
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.controllers.releases import seed_from_installed
from pockestrator.controllers.systemd import UnitSettings, render_unit
from pockestrator.database import Database
from pockestrator.specs.model import parse_spec, unit_name
from tests.benchmarks.bench import Report, in_sandbox, machine_description
from tests.testbed.agent_unit import AgentUnit
from tests.testbed.mirror import installed_version
from tests.testbed.waiting import wait_until

SLEEP_AFTER = "5s"
# Requests sent with each timed wake, at once: none of them may fail.
BURST = 5


async def first_byte(session: aiohttp.ClientSession, url: str, host: str) -> tuple[float, int]:
    """Seconds to the answer's status line, and its status (0: no answer)."""
    started = time.perf_counter()
    try:
        async with session.get(
            url, headers={"Host": host}, timeout=aiohttp.ClientTimeout(total=30)
        ) as response:
            elapsed = time.perf_counter() - started
            await response.read()
            return elapsed, response.status
    except (aiohttp.ClientError, TimeoutError):
        return time.perf_counter() - started, 0


async def boot_floor(sandbox: Sandbox, version: str, rounds: int) -> list[float]:
    """StartUnit of a stopped PocketBase unit (existing database) until /api/health
    answers on its port; no agent, no Caddy."""
    config = sandbox.agent_config()
    seed_from_installed(config.release_cache_dir)
    spec = parse_spec(
        {"project_name": "floor", "port": free_port(), "pocketbase_version": version},
        "localhost",
    )
    bus = sandbox.bus
    assert bus is not None
    (config.systemd_dir / spec.unit_name).write_text(
        render_unit(spec, UnitSettings.from_config(config))
    )
    await bus.daemon_reload()
    url = f"http://127.0.0.1:{spec.port}/api/health"
    times: list[float] = []
    async with aiohttp.ClientSession() as session:

        async def answers() -> bool:
            return (await first_byte(session, url, "localhost"))[1] == 200

        await bus.start_unit(spec.unit_name)
        assert await wait_until(answers, 60, 0.005), "the floor's instance never came up"
        for _ in range(rounds):
            await bus.stop_unit(spec.unit_name)
            started = time.perf_counter()
            await bus.start_unit(spec.unit_name)
            assert await wait_until(answers, 60, 0.002)
            times.append(time.perf_counter() - started)
    return times


class Api:
    def __init__(self, session: aiohttp.ClientSession, root: str) -> None:
        self.session, self.root = session, root

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(
            method,
            self.root + path,
            json=body,
            params={"wait": "true"} if method in ("POST", "PATCH") else None,
            timeout=aiohttp.ClientTimeout(total=120),
        ) as response:
            return response.status, await response.json()

    async def state(self, name: str) -> str:
        _status, body = await self.call("GET", f"/services/{name}")
        return str(body["data"]["status"])

    async def until(self, name: str, state: str, timeout: float = 60) -> None:
        async def there() -> bool:
            return await self.state(name) == state

        if not await wait_until(there, timeout, 0.05):
            raise TimeoutError(f"{name} never became {state}")


async def memory_sum(sandbox: Sandbox, names: list[str]) -> int:
    bus = sandbox.bus
    assert bus is not None
    statuses = await asyncio.gather(*(bus.unit_status(unit_name(name)) for name in names))
    return sum(status.memory_current or 0 for status in statuses if status.is_running)


async def run(wakes: int = 10, services: int = 20) -> Report:
    version = installed_version()
    report = Report(machine=machine_description())
    print(f"machine: {report.machine}; wakes={wakes} services={services}", flush=True)
    results: dict[str, Any] = {}

    async def floor(sandbox: Sandbox) -> None:
        results["boot"] = await boot_floor(sandbox, version, wakes)

    async def agent(sandbox: Sandbox) -> None:
        config = sandbox.agent_config(listen_port=free_port(), health_interval=10.0)
        seed_from_installed(config.release_cache_dir)
        unit = AgentUnit(sandbox, config, watchdog_seconds=30)
        await unit.start()
        caddy = sandbox.caddy_url
        try:
            token, _ = AccountStore(Database(config.database)).create_token("bench")
            root = f"http://{config.listen_host}:{config.listen_port}/api/pockestrator"
            headers = {"Authorization": f"Bearer {token}"}
            async with (
                aiohttp.ClientSession(headers=headers) as api_session,
                aiohttp.ClientSession() as session,
            ):
                api = Api(api_session, root)
                await measure_wakes(api, session, caddy, results, wakes)
                await measure_memory(api, session, sandbox, caddy, results, services)
        finally:
            await unit.stop()

    print("floor (no agent):", flush=True)
    await in_sandbox(floor)
    print("agent:", flush=True)
    await in_sandbox(agent)

    wake, awake, boot = results["wake"], results["awake"], results["boot"]
    report.add("wake: first byte median (s) [<=0.3]", statistics.median(wake))
    report.add("wake: first byte max (s)", max(wake))
    report.add(f"wake: failed requests of {results['requests']} [0]", results["failed"])
    report.notes.extend(results["failures"])
    report.add("floor: awake request median (s)", statistics.median(awake))
    report.add("floor: unit boot median (s)", statistics.median(boot))
    report.add("wake: ratio to unit boot", statistics.median(wake) / statistics.median(boot))
    report.add(f"RAM {services} services all awake (MB)", results["ram_awake"] / 1e6)
    report.add(
        f"RAM {services} services, {results['asleep']} asleep (MB)", results["ram_asleep"] / 1e6
    )
    report.add("RAM ratio asleep/awake", results["ram_asleep"] / results["ram_awake"])
    return report


async def measure_wakes(
    api: Api, session: aiohttp.ClientSession, caddy: str, results: dict[str, Any], wakes: int
) -> None:
    body = {
        "project_name": "waker",
        "port": free_port(),
        "pocketbase_version": installed_version(),
        "sleep_after": SLEEP_AFTER,
    }
    status, answer = await api.call("POST", "/services", body)
    if status != 201:
        raise RuntimeError(f"creating waker: {status} {answer}")
    url, host = f"{caddy}/api/health", "waker.localhost"
    await api.until("waker", "active")
    awake = [(await first_byte(session, url, host))[0] for _ in range(wakes)]
    times: list[float] = []
    requests = failed = 0
    failures: list[str] = []
    for round_number in range(wakes):
        await api.until("waker", "sleeping")
        answers = await asyncio.gather(
            first_byte(session, url, host), *(first_byte(session, url, host) for _ in range(BURST))
        )
        times.append(answers[0][0])
        requests += len(answers)
        lost = [(elapsed, code) for elapsed, code in answers if code != 200]
        failed += len(lost)
        if lost:
            _status, events = await api.call("GET", "/services/waker/events")
            answered = ", ".join(f"{code or 'none'} after {took:.2f} s" for took, code in lost)
            recent = [(e["kind"], e["message"]) for e in events.get("events", [])[:8]]
            failures.append(f"wake {round_number}: {answered}; events: {recent}")
    results.update(wake=times, awake=awake, requests=requests, failed=failed, failures=failures)


async def measure_memory(
    api: Api,
    session: aiohttp.ClientSession,
    sandbox: Sandbox,
    caddy: str,
    results: dict[str, Any],
    services: int,
) -> None:
    names = [f"ram{index}" for index in range(services)]
    for name in names:
        body = {
            "project_name": name,
            "port": free_port(),
            "pocketbase_version": installed_version(),
        }
        status, answer = await api.call("POST", "/services", body)
        if status != 201:
            raise RuntimeError(f"creating {name}: {status} {answer}")
    for name in names:
        await api.until(name, "active")
        await first_byte(session, f"{caddy}/api/health", f"{name}.localhost")
    await asyncio.sleep(2)  # their first writes settle
    results["ram_awake"] = await memory_sum(sandbox, names)
    sleepers = names[: max(1, services * 9 // 10)]
    for name in sleepers:
        status, answer = await api.call("PATCH", f"/services/{name}", {"sleep_after": SLEEP_AFTER})
        if status != 200:
            raise RuntimeError(f"patching {name}: {status} {answer}")
    for name in sleepers:
        await api.until(name, "sleeping")
    results["ram_asleep"] = await memory_sum(sandbox, names)
    results["asleep"] = len(sleepers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wakes", type=int, default=10)
    parser.add_argument("--services", type=int, default=20)
    parser.add_argument("--output", type=Path, default=Path("test-artifacts/benchmarks-sleep.json"))
    args = parser.parse_args()
    report = asyncio.run(run(args.wakes, args.services))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.as_json() + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
