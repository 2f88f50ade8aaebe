"""The API under load, against the agent as deployed (``tests.testbed.live_agent``).

Two runs, each on a fresh test bed with real systemd, journald, Caddy and PocketBase:

- **mixed**: ``clients`` concurrent clients for ``seconds`` of reads (list, get, status,
  events, logs) and writes of services of their own (create, patch, control, delete, in
  that order, round and round), plus ``GET /healthz``, the floor: the same server,
  middlewares and event loop with no work behind them, measured under the same load.
  Every answer's status is counted per kind; p50/p99 per kind, and each p50 over the
  floor's.
- **followers**: ``followers`` log streams (``logs?follow=true``) opened at once against
  the agent's cap. While they follow: the latency of ``GET /services/{id}/status`` and how
  long a spec change takes to converge (``PATCH ?wait=true`` of an env value, which
  rewrites the unit and restarts the instance), each over the same measured just before
  the streams opened; and the streams' journalctl processes (count, memory, CPU).

No figure is asserted: ``python -m tests.benchmarks.load`` prints and saves them, and the
suite runs the harness at tiny sizes (tests/benchmarks/test_load_harness.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from pockestrator.agent.sandbox import free_port
from tests.benchmarks.bench import Report, machine_description
from tests.testbed.journal import journalctl_followers
from tests.testbed.live_agent import LiveAgent, live_agent

READS = ("list", "get", "status", "events", "logs", "healthz")
WRITES = ("create", "patch", "control", "delete")
# Of every ten requests a client makes: what it asks (writes advance its own service).
WEIGHTS = {"list": 2, "get": 2, "status": 1.5, "events": 1, "logs": 1, "healthz": 1, "write": 1.5}
SHARED = "shared"
# Ports of the clients' services: below the kernel's ephemeral range, one block each.
PORT_BASE = 21000
PORTS_PER_CLIENT = 40
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=180)
SAMPLES = 40


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (``share`` in 0..1) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(share * len(ordered) + 0.5)))
    return ordered[rank - 1]


@dataclass
class Tally:
    """Latencies and statuses by kind of request, and failures (no answer at all)."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def server_errors(self) -> int:
        return sum(n for c in self.statuses.values() for status, n in c.items() if status >= 500)

    @property
    def requests(self) -> int:
        return sum(sum(c.values()) for c in self.statuses.values())


class Client:
    """One API client: a shared session, the token, and a tally to write into."""

    def __init__(self, live: LiveAgent, session: aiohttp.ClientSession, tally: Tally) -> None:
        self.api = live.api
        self.session = session
        self.tally = tally
        self.headers = {"Authorization": f"Bearer {live.token}"}

    async def call(
        self, kind: str, method: str, path: str, **options: Any
    ) -> tuple[int, dict[str, Any]]:
        started = time.perf_counter()
        try:
            async with self.session.request(
                method, self.api + path, headers=self.headers, timeout=REQUEST_TIMEOUT, **options
            ) as response:
                raw = await response.read()
                status = response.status
            body = json.loads(raw) if raw else {}
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self.tally.failures[f"{kind}: {type(exc).__name__}"] += 1
            return 0, {}
        self.tally.latencies[kind].append(time.perf_counter() - started)
        self.tally.statuses[kind][status] += 1
        return status, body if isinstance(body, dict) else {}


# -- the mixed run ----------------------------------------------------------------------


class Writer:
    """A client's own service, taken round its life: create, patch, control, delete."""

    def __init__(self, index: int, version: str) -> None:
        self.index = index
        self.version = version
        self.steps = itertools.cycle(WRITES)
        self.serial = 0
        self.controls = itertools.cycle(("start", "stop"))

    def name(self) -> str:
        return f"load{self.index}-{self.serial}"

    async def step(self, client: Client) -> None:
        step = next(self.steps)
        name = self.name()
        if step == "create":
            self.serial += 1
            name = self.name()
            port = PORT_BASE + self.index * PORTS_PER_CLIENT + self.serial % PORTS_PER_CLIENT
            body = {
                "project_name": name,
                "port": port,
                "pocketbase_version": self.version,
                "desired_state": "stopped",
            }
            await client.call("create", "POST", "/services", json=body)
        elif step == "patch":
            change = {"description": f"change {self.serial}", "env": {"ROUND": str(self.serial)}}
            await client.call("patch", "PATCH", f"/services/{name}", json=change)
        elif step == "control":
            action = next(self.controls)
            await client.call(
                "control", "POST", f"/services/{name}/control", json={"action": action}
            )
        else:
            await client.call("delete", "DELETE", f"/services/{name}", params={"purge": "true"})


async def read(client: Client, kind: str, rng: random.Random, own: str) -> None:
    target = SHARED if rng.random() < 0.5 else own
    if kind == "list":
        await client.call(kind, "GET", "/services", params={"limit": "20"})
    elif kind == "get":
        await client.call(kind, "GET", f"/services/{target}")
    elif kind == "status":
        await client.call(kind, "GET", f"/services/{target}/status")
    elif kind == "events":
        await client.call(kind, "GET", f"/services/{target}/events", params={"limit": "20"})
    elif kind == "logs":
        await client.call(kind, "GET", f"/services/{SHARED}/logs", params={"lines": "50"})
    else:
        await client.call(kind, "GET", "/healthz")


async def mixed_client(client: Client, writer: Writer, deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
    while time.perf_counter() < deadline:
        kind = rng.choices(kinds, weights)[0]
        if kind == "write":
            await writer.step(client)
        else:
            await read(client, kind, rng, writer.name())


async def create_shared(client: Client, live: LiveAgent) -> None:
    body = {"project_name": SHARED, "port": free_port(), "pocketbase_version": live.versions[1]}
    status, answer = await client.call("setup", "POST", "/services?wait=true", json=body)
    if status != 201:
        raise RuntimeError(f"cannot create the shared service: {status} {answer}")


async def mixed(live: LiveAgent, report: Report, clients: int, seconds: float) -> Tally:
    tally = Tally()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = Client(live, session, tally)
        await create_shared(client, live)
        agent_pid = await live.unit.main_pid()
        ticks_before = cpu_ticks([agent_pid])
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        await asyncio.gather(
            *(
                mixed_client(client, Writer(index, live.versions[1]), deadline, index)
                for index in range(clients)
            )
        )
        elapsed = time.perf_counter() - started
        agent_cpu = (cpu_ticks([agent_pid]) - ticks_before) / os.sysconf("SC_CLK_TCK") / elapsed
    del tally.statuses["setup"], tally.latencies["setup"]
    prefix = f"mixed {clients}x{seconds:g}s"
    report.add(f"{prefix}: requests", tally.requests)
    report.add(f"{prefix}: requests per second", tally.requests / elapsed)
    report.add(f"{prefix}: 5xx answers [0]", tally.server_errors)
    report.add(f"{prefix}: requests with no answer [0]", sum(tally.failures.values()))
    report.add(f"{prefix}: agent CPU (% of one core)", 100.0 * agent_cpu)
    floor = statistics.median(tally.latencies["healthz"])
    for kind in (*READS, *WRITES):
        values = tally.latencies[kind]
        if not values:
            continue
        report.add(f"{prefix}: {kind} p50 (ms)", 1000 * statistics.median(values))
        report.add(f"{prefix}: {kind} p99 (ms)", 1000 * percentile(values, 0.99))
        if kind != "healthz":
            report.add(f"{prefix}: {kind} p50 / healthz p50", statistics.median(values) / floor)
    for kind, counts in sorted(tally.statuses.items()):
        report.notes.append(f"{prefix}: {kind} statuses {dict(sorted(counts.items()))}")
    for failure, count in tally.failures.most_common():
        report.notes.append(f"{prefix}: no answer: {failure} x{count}")
    return tally


# -- the followers run ------------------------------------------------------------------


@dataclass
class Followers:
    opened: int = 0
    ended_early: int = 0  # streams the agent ended while their client still read
    refused: Counter[str] = field(default_factory=Counter)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def _read_forever(response: aiohttp.ClientResponse) -> None:
    with contextlib.suppress(aiohttp.ClientError):  # a cancel is the client going: it stays
        async for _chunk in response.content.iter_any():
            pass


async def open_follower(client: Client, followers: Followers) -> None:
    try:
        response = await client.session.get(
            client.api + f"/services/{SHARED}/logs",
            params={"follow": "true", "lines": "1"},
            headers=client.headers,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),
        )
    except (aiohttp.ClientError, TimeoutError) as exc:
        followers.refused[type(exc).__name__] += 1
        return
    if response.status != 200:
        body = await response.json(content_type=None)
        followers.refused[f"{response.status} {body.get('code')}"] += 1
        response.release()
        return
    followers.opened += 1

    async def follow() -> None:
        try:
            await _read_forever(response)
            followers.ended_early += 1  # not cancelled: the stream ended by itself
        finally:
            response.close()

    followers.tasks.append(asyncio.create_task(follow()))


def proportional_kib(pid: int) -> int:
    """A process's proportional set size (shared pages divided among their users)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


async def sampled(times: int, once: Callable[[], Awaitable[float]]) -> list[float]:
    return [await once() for _ in range(times)]


async def follower_run(live: LiveAgent, report: Report, followers_wanted: int) -> Followers:
    tally = Tally()
    prefix = f"followers {followers_wanted}, cap {live.config.max_log_streams}"
    rounds = itertools.count(1)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = Client(live, session, tally)
        await create_shared(client, live)

        async def status_latency() -> float:
            started = time.perf_counter()
            status, _ = await client.call("status", "GET", f"/services/{SHARED}/status")
            if status != 200:
                raise RuntimeError(f"status answered {status}")
            return time.perf_counter() - started

        async def converge() -> float:
            change = {"env": {"ROUND": str(next(rounds))}}
            started = time.perf_counter()
            status, answer = await client.call(
                "converge", "PATCH", f"/services/{SHARED}?wait=true", json=change
            )
            if status != 200 or not answer.get("reconciled"):
                raise RuntimeError(f"the change did not converge: {status} {answer}")
            return time.perf_counter() - started

        agent_pid = await live.unit.main_pid()
        before_status = await sampled(SAMPLES, status_latency)
        before_converge = await sampled(max(3, SAMPLES // 8), converge)

        followers = Followers()
        started = time.perf_counter()
        await asyncio.gather(*(open_follower(client, followers) for _ in range(followers_wanted)))
        report.add(f"{prefix}: all answered (s)", time.perf_counter() - started)
        try:
            await asyncio.sleep(1.0)
            pids = journalctl_followers(live.config.journal_dir)
            ticks_before = cpu_ticks([agent_pid, *pids])
            window = time.perf_counter()
            during_status = await sampled(SAMPLES, status_latency)
            during_converge = await sampled(max(3, SAMPLES // 8), converge)
            window = time.perf_counter() - window
            ticks = (
                cpu_ticks([agent_pid, *journalctl_followers(live.config.journal_dir)])
                - ticks_before
            )
            report.add(f"{prefix}: streams opened", followers.opened)
            report.add(f"{prefix}: streams refused", sum(followers.refused.values()))
            report.add(f"{prefix}: journalctl processes", len(pids))
            report.add(f"{prefix}: streams ended by the agent [0]", followers.ended_early)
            report.add(
                f"{prefix}: journalctl PSS total (MiB)",
                sum(proportional_kib(p) for p in pids) / 1024,
            )
            if pids:
                report.add(
                    f"{prefix}: journalctl PSS each (MiB)",
                    statistics.median(proportional_kib(p) for p in pids) / 1024,
                )
            report.add(f"{prefix}: agent PSS (MiB)", proportional_kib(agent_pid) / 1024)
            report.add(
                f"{prefix}: agent + journalctl CPU while measured (% of one core)",
                100.0 * ticks / os.sysconf("SC_CLK_TCK") / window,
            )
            for name, before, during in (
                ("status", before_status, during_status),
                ("spec change converged", before_converge, during_converge),
            ):
                report.add(f"{prefix}: {name} p50 before (ms)", 1000 * statistics.median(before))
                report.add(f"{prefix}: {name} p50 during (ms)", 1000 * statistics.median(during))
                report.add(f"{prefix}: {name} max during (ms)", 1000 * max(during))
                report.add(
                    f"{prefix}: {name} p50 during / before",
                    statistics.median(during) / statistics.median(before),
                )
            for reason, count in followers.refused.items():
                report.notes.append(f"{prefix}: refused {reason} x{count}")
        finally:
            for task in followers.tasks:
                task.cancel()
            await asyncio.gather(*followers.tasks, return_exceptions=True)
        report.add(f"{prefix}: 5xx answers besides 503 TOO_MANY_STREAMS [0]", tally.server_errors)
    return followers


@contextlib.asynccontextmanager
async def fresh_agent(**config: object) -> AsyncIterator[LiveAgent]:
    async with live_agent("load", **config) as live:
        yield live


async def run(
    clients: int = 100,
    seconds: float = 60.0,
    followers: int = 200,
    caps: tuple[int | None, ...] = (None,),
) -> Report:
    """The mixed run, then the followers run once per cap (None: the agent's default)."""
    report = Report(machine=machine_description())
    print(f"machine: {report.machine}; clients={clients} seconds={seconds:g}", flush=True)
    if clients:
        print("mixed:", flush=True)
        async with fresh_agent() as live:
            await mixed(live, report, clients, seconds)
    for cap in caps:
        print(f"followers (cap {cap or 'default'}):", flush=True)
        async with fresh_agent(**({"max_log_streams": cap} if cap else {})) as live:
            await follower_run(live, report, followers)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=100, help="0: no mixed run")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--followers", type=int, default=200)
    parser.add_argument(
        "--caps",
        default="default,200",
        help="stream caps of the followers runs, comma-separated ('default': the agent's)",
    )
    parser.add_argument("--output", type=Path, default=Path("test-artifacts/load.json"))
    args = parser.parse_args()
    caps = tuple(None if c == "default" else int(c) for c in args.caps.split(",") if c)
    report = asyncio.run(run(args.clients, args.seconds, args.followers, caps))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.as_json() + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
