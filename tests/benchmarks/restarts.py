"""A steady client through Caddy while services restart and upgrade: 5xx count, added latency.

Issue 13 saw 92 of 2,264 requests fail with 502 during 10 restarts through the API and 15
of 334 during one version change. Here a client sends requests at a steady rate (about
100 a second, as in the issue) to ``/api/health`` of one service through Caddy while the
agent (its own process, as deployed) restarts it through the API ``restarts`` times, and
then while ``upgrades`` services are each upgraded between two real PocketBase releases
(from the test bed's release mirror). Caddy holds a request while the instance does not
accept connections (``proxy.hold_requests``), so a restart should cost latency, not errors.

The floor is the same client against the same service with nothing happening, in the
same run, for as long: the added latency is reported against its median and p99. A
control service with ``hold_requests: 0`` gets the same restarts, so each run also shows
what the client would see without the hold (the check can fail: that one does).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from pockestrator.accounts.store import AccountStore
from pockestrator.agent.sandbox import Sandbox, free_port
from tests.testbed.agent_unit import AgentUnit
from tests.testbed.mirror import OLDER_VERSION, ReleaseMirror, installed_version, pocketbase_binary
from tests.testbed.waiting import wait_until

# The client: about 100 requests a second.
REQUEST_INTERVAL = 0.01
# Between actions the service is left alone this long, so that each action is measured on
# a settled service and the client sees the way back as well.
SETTLE = 0.5


@dataclass
class Window:
    """What the client saw during one phase: each request's status and latency."""

    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failures(self) -> int:
        """Answers of 500 and above, and requests that got no answer at all (status 0)."""
        return sum(1 for status in self.statuses if status >= 500 or status == 0)

    def quantile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def steady_client(
    session: aiohttp.ClientSession, caddy: str, host: str, during: Callable[[], Awaitable[None]]
) -> Window:
    """Requests every ``REQUEST_INTERVAL`` (each on its own, so a held one does not hold
    back the next) for as long as ``during`` runs; every request is waited for."""
    window = Window()

    async def one() -> None:
        started = time.perf_counter()
        try:
            async with session.get(
                f"{caddy}/api/health",
                headers={"Host": host},
                timeout=aiohttp.ClientTimeout(total=30),
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        window.latencies.append(time.perf_counter() - started)
        window.statuses.append(status)

    action = asyncio.ensure_future(during())
    requests: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    while not action.done():
        requests.append(asyncio.ensure_future(one()))
        # On a schedule rather than a fixed pause, so the loop's own delays do not lower
        # the rate (the n-th request goes at n intervals after the start).
        due = started + len(requests) * REQUEST_INTERVAL
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
    await asyncio.gather(*requests)
    window.seconds = time.perf_counter() - started
    await action  # its exception, if any
    return window


class Api:
    """The agent's API with a token made in its database (as ``pockestrator up`` does)."""

    def __init__(self, session: aiohttp.ClientSession, root: str, token: str) -> None:
        self.session, self.root, self.token = session, root, token

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(
            method,
            self.root + path,
            json=body,
            params={"wait": "true"} if method == "PATCH" or path == "/services" else None,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=aiohttp.ClientTimeout(total=120),
        ) as response:
            return response.status, await response.json()

    async def settled(self, name: str, version: str) -> None:
        """Until the service runs ``version``, active and healthy (bounded)."""

        async def there() -> bool:
            _status, body = await self.call("GET", f"/services/{name}/status")
            return bool(
                body.get("state") == "active"
                and body.get("health_ok")
                and body.get("deployed_version") == version
            )

        if not await wait_until(there, 120, interval=0.05):
            raise TimeoutError(f"{name} never settled on {version}")


@dataclass
class RestartFigures:
    steady: Window
    restarts: Window
    upgrades: Window
    unheld: Window
    restart_count: int
    upgrade_count: int


async def measure(sandbox: Sandbox, restarts: int, upgrades: int) -> RestartFigures:
    older, newer = OLDER_VERSION, installed_version()
    mirror = ReleaseMirror()
    for version in (older, newer):
        mirror.add_release(version, pocketbase_binary(version))
    await mirror.start()
    config = mirror.agent_config(sandbox)
    unit = AgentUnit(sandbox, config, watchdog_seconds=30)
    await unit.start()
    accounts = AccountStore(config.database)
    try:
        token, _record = accounts.create_token("restart benchmark")
    finally:
        accounts.close()
    root = f"http://{config.listen_host}:{config.listen_port}/api/pockestrator"
    caddy = sandbox.caddy_url
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, root, token)
            # "unheld" is the control: the same restarts with hold_requests 0 (as before
            # issue 13), so a run shows what the client would see without the hold.
            versions = {"steady": newer, "unheld": newer}
            versions.update({f"upgraded{index}": older for index in range(upgrades)})
            for name, version in versions.items():
                spec: dict[str, Any] = {
                    "project_name": name,
                    "port": free_port(),
                    "pocketbase_version": version,
                }
                if name == "unheld":
                    spec["proxy"] = {"hold_requests": 0}
                status, body = await api.call("POST", "/services", spec)
                if status != 201:
                    raise RuntimeError(f"creating {name}: {status} {body}")
            for name, version in versions.items():
                await api.settled(name, version)

            def restart_each(name: str) -> Callable[[], Awaitable[None]]:
                async def restart() -> None:
                    for _ in range(restarts):
                        status, body = await api.call(
                            "POST", f"/services/{name}/control", {"action": "restart"}
                        )
                        if status != 200:
                            raise RuntimeError(f"restart: {status} {body}")
                        await api.settled(name, newer)
                        await asyncio.sleep(SETTLE)

                return restart

            restarted = await steady_client(
                session, caddy, "steady.localhost", restart_each("steady")
            )
            unheld = await steady_client(session, caddy, "unheld.localhost", restart_each("unheld"))

            async def idle() -> None:
                await asyncio.sleep(restarted.seconds)

            steady = await steady_client(session, caddy, "steady.localhost", idle)
            upgraded = Window()
            for index in range(upgrades):
                name = f"upgraded{index}"

                async def upgrade(name: str = name) -> None:
                    await asyncio.sleep(SETTLE)
                    status, body = await api.call(
                        "PATCH", f"/services/{name}", {"pocketbase_version": newer}
                    )
                    if status != 200:
                        raise RuntimeError(f"upgrade: {status} {body}")
                    await api.settled(name, newer)
                    await asyncio.sleep(SETTLE)

                window = await steady_client(session, caddy, f"{name}.localhost", upgrade)
                upgraded.statuses += window.statuses
                upgraded.latencies += window.latencies
                upgraded.seconds += window.seconds
    finally:
        await unit.stop()
        await mirror.stop()
    return RestartFigures(steady, restarted, upgraded, unheld, restarts, upgrades)


def describe(figures: RestartFigures, add: Callable[[str, float], None]) -> None:
    """The figures in the report's words: counts, then latency against the floor."""
    steady = figures.steady
    floor_median = statistics.median(steady.latencies)
    floor_p99 = steady.quantile(0.99)
    add("steady client: floor median latency (ms)", 1000 * floor_median)
    add("steady client: floor p99 latency (ms)", 1000 * floor_p99)
    add("steady client: floor 5xx", steady.failures)
    add("steady client: floor requests per second", len(steady.statuses) / steady.seconds)
    for label, window in (
        (f"{figures.restart_count} restarts", figures.restarts),
        (f"{figures.upgrade_count} upgrades", figures.upgrades),
    ):
        add(f"{label}: requests", len(window.statuses))
        add(f"{label}: requests per second", len(window.statuses) / window.seconds)
        add(f"{label}: 5xx or no answer [0]", window.failures)
        add(f"{label}: p99 latency (ms)", 1000 * window.quantile(0.99))
        add(f"{label}: max latency (ms)", 1000 * max(window.latencies))
        add(f"{label}: p99 / floor p99", window.quantile(0.99) / floor_p99)
        add(
            f"{label}: max added over floor median (ms)",
            1000 * (max(window.latencies) - floor_median),
        )
    control = f"control, hold_requests 0, {figures.restart_count} restarts"
    add(f"{control}: requests", len(figures.unheld.statuses))
    add(f"{control}: 5xx or no answer", figures.unheld.failures)
