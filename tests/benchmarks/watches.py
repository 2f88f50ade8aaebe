"""How soon an open watch hears of a change, against the writer's own answer as the floor.

The agent runs as deployed (its own process, a unit of the sandbox's manager) with one
real service. ``watchers`` streams of ``GET /services?watch=true`` are open; a client
sends ``PATCH /services/{id}`` (answered at once, no wait) ``changes`` times. For each
change, two times from the moment the PATCH is sent: when its answer arrives (the floor:
the same agent, the same write, the same HTTP) and when the *last* watcher has the event
carrying the new value. Both go through the same loopback and the same event loop, so the
ratio says what the watch adds to a write. The issue's bound: a watcher within 100 ms.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from pockestrator.accounts import AccountStore
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.controllers.releases import seed_from_installed
from tests.testbed.agent_unit import AgentUnit
from tests.testbed.mirror import installed_version
from tests.testbed.waiting import wait_until


@dataclass
class WatchFigures:
    watchers: int
    floor: list[float] = field(default_factory=list)  # PATCH sent -> its answer
    heard: list[float] = field(default_factory=list)  # PATCH sent -> the last watcher has it


async def _reader(
    response: aiohttp.ClientResponse, seen: dict[str, asyncio.Event], ready: asyncio.Event
) -> None:
    """Mark each description a ``service`` event carries (the change's marker)."""
    kind = ""
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: ") and kind == "synced":
            ready.set()
        elif line.startswith("data: ") and kind == "service":
            marker = json.loads(line[6:]).get("description", "")
            if marker in seen:
                seen[marker].set()


async def measure(sandbox: Sandbox, changes: int, watchers: int) -> WatchFigures:
    version = installed_version()
    config = sandbox.agent_config(listen_port=free_port(), max_watches=max(64, watchers))
    seed_from_installed(config.release_cache_dir)
    unit = AgentUnit(sandbox, config, watchdog_seconds=30)
    await unit.start()
    accounts = AccountStore(config.database)
    try:
        token, _record = accounts.create_token("watch benchmark")
    finally:
        accounts.close()
    root = f"http://{config.listen_host}:{config.listen_port}/api/pockestrator"
    headers = {"Authorization": f"Bearer {token}"}
    figures = WatchFigures(watchers)
    try:
        async with aiohttp.ClientSession(headers=headers) as session:
            body = {"project_name": "watched", "port": free_port(), "pocketbase_version": version}
            async with session.post(f"{root}/services?wait=true", json=body) as answer:
                if answer.status != 201:
                    raise RuntimeError(f"create: {answer.status} {await answer.text()}")

            async def active() -> bool:
                async with session.get(f"{root}/services/watched/status") as answer:
                    return bool((await answer.json()).get("state") == "active")

            if not await wait_until(active, 60, 0.05):
                raise TimeoutError("the service never became active")
            streams: list[aiohttp.ClientResponse] = []
            readers: list[asyncio.Task[None]] = []
            seen: list[dict[str, asyncio.Event]] = [{} for _ in range(watchers)]
            try:
                for index in range(watchers):
                    response = await session.get(
                        f"{root}/services?watch=true", timeout=aiohttp.ClientTimeout(total=None)
                    )
                    streams.append(response)
                    ready = asyncio.Event()
                    readers.append(asyncio.create_task(_reader(response, seen[index], ready)))
                    await asyncio.wait_for(ready.wait(), 30)
                for round_ in range(changes):
                    marker = f"change {round_}"
                    for table in seen:
                        table[marker] = asyncio.Event()
                    started = time.perf_counter()
                    async with session.patch(
                        f"{root}/services/watched", json={"description": marker}
                    ) as answer:
                        await answer.read()
                        figures.floor.append(time.perf_counter() - started)
                        if answer.status != 200:
                            raise RuntimeError(f"patch: {answer.status}")
                    await asyncio.wait_for(
                        asyncio.gather(*(table[marker].wait() for table in seen)), 30
                    )
                    figures.heard.append(time.perf_counter() - started)
                    await asyncio.sleep(0.05)
            finally:
                for task in readers:
                    task.cancel()
                await asyncio.gather(*readers, return_exceptions=True)
                for response in streams:
                    response.close()
    finally:
        await unit.stop()
    return figures


def describe(figures: WatchFigures, add: Callable[[str, float], None]) -> None:
    floor = statistics.median(figures.floor)
    heard = statistics.median(figures.heard)
    prefix = f"watch {figures.watchers}"
    add(f"{prefix}: floor, PATCH answered median (s)", floor)
    add(f"{prefix}: last watcher median (s) [<=0.1]", heard)
    add(f"{prefix}: last watcher max (s)", max(figures.heard))
    add(f"{prefix}: ratio last watcher/floor", heard / floor if floor else 0.0)
