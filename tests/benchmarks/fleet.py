"""A fleet's figures on a real PostgreSQL server, against one host's in the same run.

Two figures (issue 19), each beside the floor measured minutes before it on the same
machine:

- **spec -> serving on a remote node**: ``POST /services`` to node A's API, the spec
  naming node B, until ``/api/health`` answers 200 through B's Caddy (A's agent places and
  stores it, B's agent is told by ``NOTIFY`` and runs it). The floor is the single-host
  figure: the same request to one agent on its SQLite store, until 200 through its own
  Caddy. A third column, the request to B's own API for B, tells the PostgreSQL store's
  share apart from the hop between nodes.
- **3 nodes x N idle services**: each node's agent CPU (percent of one core) and RSS over
  an idle window, the PostgreSQL server's CPU (every process of the server) and the
  connections the agents hold (``pg_stat_activity``, sampled through the window). The
  floor is one agent on SQLite with the same N idle services over the same window.

Every agent runs as deployed, a ``Type=notify`` unit of its sandbox's systemd manager (its
CPU is its own process's); each node is a sandbox of its own (systemd, journald, Caddy);
the instances are real PocketBase, started from the release cache.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

from pockestrator.accounts.store import AccountStore
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import StoreConfig
from pockestrator.controllers.releases import seed_from_installed
from pockestrator.database import Database, StoreDatabase
from pockestrator.database_postgres import PostgresDatabase
from tests.benchmarks.bench import BENCH_BASE, healthy, process_usage, until_all_healthy
from tests.testbed.agent_unit import AgentUnit
from tests.testbed.live_agent import SESSIONS_LOCK
from tests.testbed.mirror import installed_version
from tests.testbed.postgres import PostgresServer, start_server, stop_server

NODES = ("alpha", "beta", "gamma")
SINGLE = "single"  # the one host's agent, on its SQLite store
# Every port given to a service in this run (free_port cannot know of those not started).
TAKEN_PORTS: set[int] = set()
PREFIX = "/api/pockestrator"
# The single-host benchmark's cadence (bench.AgentUnderTest), so the idle figures compare.
HEALTH_INTERVAL = 10.0


@dataclass
class Node:
    name: str
    sandbox: Sandbox
    unit: AgentUnit
    api: str  # the API's root URL

    @property
    def caddy(self) -> str:
        return self.sandbox.caddy_url


@dataclass
class IdleFigures:
    cpu_percent: dict[str, float]  # node -> agent CPU, % of one core
    rss_mb: dict[str, float]
    postgres_cpu_percent: float | None = None
    connections_max: int | None = None
    connections_end: dict[str, int] | None = None  # state -> count, at the window's end


class Client:
    """One node's API with a token of the store the node's agent uses."""

    def __init__(self, session: aiohttp.ClientSession, node: Node, token: str) -> None:
        self.session = session
        self.node = node
        self.headers = {"Authorization": f"Bearer {token}"}

    async def create(self, name: str, version: str, node: str | None) -> None:
        """``POST /services`` for ``name`` on a free port (one that a process took
        meanwhile is refused and tried again with another)."""
        for _ in range(5):
            port = free_port()
            while port in TAKEN_PORTS:  # free now, but given to a service not yet started
                port = free_port()
            TAKEN_PORTS.add(port)
            body: dict[str, Any] = {
                "project_name": name,
                "port": port,
                "pocketbase_version": version,
            }
            if node is not None:
                body["node"] = node
            async with self.session.post(
                self.node.api + "/services", json=body, headers=self.headers
            ) as response:
                answer = await response.json()
                if response.status == 201:
                    return
                if "PORT_IN_USE" not in str(answer):
                    raise RuntimeError(f"create {name} on {self.node.name}: {answer}")
        raise RuntimeError(f"create {name}: no free port in five tries")


async def serving_time(
    client: Client, serving: Node, name: str, version: str, *, fleet: bool = True
) -> float:
    """Seconds from the create's request (naming ``serving``'s node in a fleet) to 200
    through ``serving``'s Caddy."""
    started = time.perf_counter()
    await client.create(name, version, serving.name if fleet else None)
    await until_all_healthy(client.session, serving.caddy, [f"{name}.localhost"], timeout=120)
    return time.perf_counter() - started


async def create_idle(clients: list[Client], per_node: int, version: str) -> float:
    """``per_node`` services on each node, created through its own API; seconds until every
    one answers through its node's Caddy."""
    started = time.perf_counter()

    async def fill(client: Client) -> None:
        names = [f"idle-{client.node.name}-{index}" for index in range(per_node)]
        node = None if client.node.name == SINGLE else client.node.name
        for name in names:
            await client.create(name, version, node)
        await until_all_healthy(
            client.session, client.node.caddy, [f"{n}.localhost" for n in names], timeout=900
        )

    await asyncio.gather(*(fill(client) for client in clients))
    return time.perf_counter() - started


def server_pids(server: PostgresServer) -> list[int]:
    """The postmaster and every process it started (backends, checkpointer, ...)."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    found = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == postmaster:
                found.append(int(entry.name))
    return found


def ticks_of(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += process_usage(pid)[0]
        except OSError:
            continue  # a backend that ended in the window: its ticks are lost with it
    return total


def connections(server: PostgresServer, database: str) -> dict[str, int]:
    """The store database's connections by state, as the server sees them."""
    with psycopg.connect(
        server.dsn("postgres"), password=server.password, autocommit=True
    ) as connection:
        rows = connection.execute(
            "SELECT coalesce(state, 'none'), count(*) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid() GROUP BY 1",
            (database,),
        ).fetchall()
    return {str(state): int(count) for state, count in rows}


async def measure_idle(
    units: dict[str, AgentUnit],
    seconds: float,
    server: PostgresServer | None = None,
    database: str = "",
) -> IdleFigures:
    """The agents' CPU and RSS over ``seconds`` of idling (and the server's, if any)."""
    clock_ticks = os.sysconf("SC_CLK_TCK")
    pids = {name: await unit.main_pid() for name, unit in units.items()}
    before = {name: process_usage(pid)[0] for name, pid in pids.items()}
    server_pids_now = server_pids(server) if server is not None else []
    server_before = ticks_of(server_pids_now)
    most = 0
    began = time.monotonic()
    while (left := seconds - (time.monotonic() - began)) > 0:
        if server is not None:
            most = max(most, sum(connections(server, database).values()))
        await asyncio.sleep(min(5.0, left))
    elapsed = time.monotonic() - began
    figures = IdleFigures(
        cpu_percent={
            name: 100.0 * (process_usage(pid)[0] - before[name]) / clock_ticks / elapsed
            for name, pid in pids.items()
        },
        rss_mb={name: process_usage(pid)[1] / 1024 / 1024 for name, pid in pids.items()},
    )
    if server is not None:
        used = ticks_of(server_pids_now) - server_before
        figures.postgres_cpu_percent = 100.0 * used / clock_ticks / elapsed
        figures.connections_end = connections(server, database)
        figures.connections_max = max(most, sum(figures.connections_end.values()))
    return figures


@asynccontextmanager
async def sandbox_of(prefix: str) -> AsyncIterator[Sandbox]:
    root = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-", dir=BENCH_BASE))
    sandbox = Sandbox(root)
    await sandbox.start()
    try:
        yield sandbox
    finally:
        await sandbox.stop()
        shutil.rmtree(root, ignore_errors=True)


async def start_agent(sandbox: Sandbox, **settings: object) -> Node:
    config = sandbox.agent_config(
        listen_port=free_port(), health_interval=HEALTH_INTERVAL, **settings
    )
    seed_from_installed(config.release_cache_dir)
    unit = AgentUnit(sandbox, config, watchdog_seconds=30)
    await unit.start()
    name = str(settings.get("node_name", SINGLE))
    return Node(name, sandbox, unit, f"http://{config.listen_host}:{config.listen_port}{PREFIX}")


def token_for(database: StoreDatabase) -> str:
    try:
        token, _record = AccountStore(database).create_token("fleet benchmark")
    finally:
        database.close()
    return token


async def single_host(
    runs: int, services: int, idle_seconds: float, version: str, add: Callable[[str, float], None]
) -> tuple[list[float], IdleFigures]:
    """The floor: one agent on its SQLite store."""
    async with (
        sandbox_of("single") as sandbox,
        aiohttp.ClientSession() as session,
    ):
        node = await start_agent(sandbox)
        try:
            client = Client(session, node, token_for(Database(node.unit.config.database)))
            times = [
                await serving_time(client, node, f"single{index}", version, fleet=False)
                for index in range(runs)
            ]
            add("single host: spec -> 200 median (s)", statistics.median(times))
            boot = await create_idle([client], services, version)
            add(f"single host: {services} services up (s)", boot)
            await asyncio.sleep(5.0)  # the burst's last health rounds and writes settle
            idle = await measure_idle({node.name: node.unit}, idle_seconds)
        finally:
            await node.unit.stop()
    return times, idle


async def fleet(
    server: PostgresServer,
    runs: int,
    services: int,
    idle_seconds: float,
    version: str,
    add: Callable[[str, float], None],
) -> tuple[list[float], list[float], IdleFigures]:
    database = server.new_database()
    store = StoreConfig(
        backend="postgresql",
        dsn=server.dsn(database),
        password_file=server.password_file,
        sslmode="disable",  # loopback
    )
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())
        nodes: list[Node] = []
        for name in NODES:
            sandbox = await stack.enter_async_context(sandbox_of(name))
            node = await start_agent(
                sandbox,
                store=store,
                node_name=name,
                node_public_address=f"127.0.0.1:{sandbox.caddy_http_port}",
            )
            stack.push_async_callback(node.unit.stop)
            nodes.append(node)
        token = token_for(
            PostgresDatabase(
                server.dsn(database),
                path=nodes[0].unit.config.database,
                password=server.password,
                sslmode="disable",
            )
        )
        clients = [Client(session, node, token) for node in nodes]
        alpha, beta = clients[0], clients[1]
        remote = [
            await serving_time(alpha, beta.node, f"remote{index}", version) for index in range(runs)
        ]
        local = [
            await serving_time(beta, beta.node, f"local{index}", version) for index in range(runs)
        ]
        print(f"  samples: remote {_rounded(remote)}, local {_rounded(local)}", flush=True)
        add("fleet: spec through A -> 200 on B median (s)", statistics.median(remote))
        add("fleet: spec through B -> 200 on B median (s)", statistics.median(local))
        # Through A's Caddy the remote service is not served (routing is off by default).
        async with session.get(
            f"{alpha.node.caddy}/api/health", headers={"Host": "remote0.localhost"}
        ) as response:
            if response.status == 200:
                raise RuntimeError("A's Caddy served B's service: routing should be off")
        assert await healthy(session, beta.node.caddy, "remote0.localhost")
        boot = await create_idle(clients, services, version)
        add(f"fleet: {len(nodes)} x {services} services up (s)", boot)
        await asyncio.sleep(5.0)
        idle = await measure_idle(
            {node.name: node.unit for node in nodes}, idle_seconds, server, database
        )
    return remote, local, idle


async def measure(
    runs: int, services: int, idle_seconds: float, add: Callable[[str, float], None]
) -> None:
    """Both figures and their floors, one after the other (none disturbs another)."""
    version = installed_version()
    print(f"fleet: runs={runs} services per node={services} idle={idle_seconds}s", flush=True)
    BENCH_BASE.mkdir(parents=True, exist_ok=True)
    # Held shared as bench.in_sandbox holds it: a pytest session starting meanwhile does
    # not take these test beds for a crashed run's leftovers.
    with (BENCH_BASE / SESSIONS_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        single, single_idle = await single_host(runs, services, idle_seconds, version, add)
        server = start_server()
        try:
            remote, local, idle = await fleet(server, runs, services, idle_seconds, version, add)
        finally:
            stop_server(server)
    floor = statistics.median(single)
    add("fleet: ratio remote / single host", statistics.median(remote) / floor)
    add("fleet: ratio local on PostgreSQL / single host", statistics.median(local) / floor)
    add(
        f"single host: {services} idle, agent CPU % of one core",
        single_idle.cpu_percent[SINGLE],
    )
    add(f"single host: {services} idle, agent RSS MB", single_idle.rss_mb[SINGLE])
    for name in NODES:
        add(f"fleet: {services} idle on {name}, agent CPU % of one core", idle.cpu_percent[name])
        add(f"fleet: {services} idle on {name}, agent RSS MB", idle.rss_mb[name])
    mean = statistics.mean(idle.cpu_percent.values())
    if single_idle.cpu_percent[SINGLE] > 0:  # a short window may see no tick at all
        add("fleet: ratio agent CPU per node / single host", mean / single_idle.cpu_percent[SINGLE])
    assert idle.postgres_cpu_percent is not None and idle.connections_end is not None
    add("fleet: PostgreSQL server CPU % of one core", idle.postgres_cpu_percent)
    add("fleet: PostgreSQL connections, most seen", float(idle.connections_max or 0))
    for state, count in sorted(idle.connections_end.items()):
        add(f"fleet: PostgreSQL connections at the end, {state}", float(count))


def _rounded(samples: list[float]) -> list[float]:
    return [round(sample, 3) for sample in samples]


def main() -> None:
    """``python -m tests.benchmarks.fleet``: these figures alone."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--services", type=int, default=100, help="idle services per node")
    parser.add_argument("--idle", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(measure(args.runs, args.services, args.idle, _print))


def _print(key: str, value: float) -> None:
    print(f"  {key:<56} {value:10.4f}", flush=True)


if __name__ == "__main__":
    main()
