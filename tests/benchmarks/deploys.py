"""The deploy benchmark: a small app deployed 20 times, and a steady client counting 5xx.

The app is the issue's: 10 hooks, 5 migrations, 2 MB of public files. Each deploy changes
every hook's answer, so each is a new release; the migrations run on the first deploy and
are already applied after it. Measured per deploy: from the upload's start to the new
code answering through Caddy (median), while one client requests a hook through Caddy
back to back for the whole run and counts every 5xx and every failed connection.

The floor, measured the same way in a sandbox of its own with no agent: the same app
files written into the folders the unit passes to PocketBase, then a restart over D-Bus
and the wait for the new answer. What the agent adds over it is what makes a deploy safe:
the archive's checks, the pre-deploy snapshot, the dry boot on a copy, ``migrate up`` and
the health gate. Caddy holds requests during a restart (``proxy.hold_requests``, on by
default), so a restart is a slower answer for the client, not a 502, in both.

``python -m tests.benchmarks.deploys [--deploys N]``; the figures go to
``test-artifacts/benchmarks-deploys.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import statistics
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from pockestrator.accounts.store import AccountStore
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.controllers.caddy import SiteSettings, render_site
from pockestrator.controllers.releases import seed_from_installed
from pockestrator.controllers.systemd import UnitSettings, render_unit
from pockestrator.database import Database
from pockestrator.specs.model import parse_spec
from tests.benchmarks.bench import Report, healthy, in_sandbox, machine_description
from tests.testbed.agent_unit import AgentUnit
from tests.testbed.journal import journal_text
from tests.testbed.mirror import installed_version
from tests.testbed.waiting import wait_until

HOOKS = 10
MIGRATIONS = 5
PUBLIC_BYTES = 2 * 1024 * 1024
PUBLIC_FILES = 4
_PUBLIC = [os.urandom(PUBLIC_BYTES // PUBLIC_FILES) for _ in range(PUBLIC_FILES)]


def app_files(generation: int) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for n in range(HOOKS):
        files[f"pb_hooks/route{n}.pb.js"] = (
            f'routerAdd("GET", "/r{n}", (e) => e.string(200, "v{generation}"))\n'.encode()
        )
    for n in range(MIGRATIONS):
        files[f"pb_migrations/170000000{n}_c{n}.js"] = (
            "migrate((app) => {\n"
            f'  app.save(new Collection({{ type: "base", name: "c{n}",'
            ' fields: [{ name: "title", type: "text" }] }))\n'
            f'}}, (app) => {{ app.delete(app.findCollectionByNameOrId("c{n}")) }})\n'
        ).encode()
    for n, data in enumerate(_PUBLIC):
        files[f"pb_public/asset{n}.bin"] = data
    files["pb_public/index.html"] = f"<p>v{generation}</p>".encode()
    return files


def archive(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


@dataclass
class SteadyClient:
    """One request after another through Caddy; every answer counted by class."""

    caddy: str
    domain: str
    answers: int = 0
    errors_5xx: int = 0
    failed: int = 0
    # From each 5xx or failure to the next answer: how long the client saw no service.
    down_seconds: float = 0.0
    seen: dict[int, int] = field(default_factory=dict)

    async def run(self, session: aiohttp.ClientSession) -> None:
        down_since: float | None = None
        while True:
            bad = True
            try:
                async with session.get(
                    f"{self.caddy}/r0",
                    headers={"Host": self.domain},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as response:
                    await response.read()
                    self.answers += 1
                    self.seen[response.status] = self.seen.get(response.status, 0) + 1
                    bad = response.status >= 500
                    self.errors_5xx += bad
            except (aiohttp.ClientError, TimeoutError):
                self.failed += 1
            now = time.perf_counter()
            if down_since is not None:
                self.down_seconds += now - down_since
            down_since = now if bad else None
            await asyncio.sleep(0.005)


async def until_answered(client: SteadyClient, seen: int) -> None:
    """Until the steady client has finished a request beyond the first ``seen``."""

    async def answered() -> bool:
        return client.answers + client.failed > seen

    if not await wait_until(answered, 60, 0.005):
        raise TimeoutError(f"the steady client finished no request beyond {seen} in 60 s")


async def serving(session: aiohttp.ClientSession, caddy: str, domain: str, text: str) -> bool:
    try:
        async with session.get(f"{caddy}/r{HOOKS - 1}", headers={"Host": domain}) as response:
            return response.status == 200 and await response.text() == text
    except aiohttp.ClientError:
        return False


async def measure(
    deploy: object, count: int, caddy: str, domain: str
) -> tuple[list[float], SteadyClient]:
    """``count`` deploys of new generations, timed to "new code serving", under a client."""
    assert callable(deploy)
    times: list[float] = []
    client = SteadyClient(caddy, domain)
    async with aiohttp.ClientSession() as session:
        steady = asyncio.create_task(client.run(session))
        try:
            # The client is answered before the first deploy and once more after the last,
            # so it covers every deploy: a fast floor's deploys were once all over before
            # its first request came back on a loaded machine (none counted, none judged).
            await until_answered(client, 0)
            for generation in range(1, count + 1):
                started = time.perf_counter()
                await deploy(generation)
                ok = await wait_until(
                    lambda g=generation: serving(session, caddy, domain, f"v{g}"), 60, 0.005
                )
                if not ok:
                    raise TimeoutError(f"generation {generation} never served")
                times.append(time.perf_counter() - started)
            await until_answered(client, client.answers + client.failed)
        finally:
            steady.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await steady
    return times, client


async def run(deploys: int = 20) -> Report:
    version = installed_version()
    report = Report(machine=machine_description())
    print(f"machine: {report.machine}; deploys={deploys}", flush=True)
    results: dict[str, tuple[list[float], SteadyClient]] = {}

    async def floor(sandbox: Sandbox) -> None:
        config = sandbox.agent_config()
        seed_from_installed(config.release_cache_dir)
        settings = UnitSettings.from_config(config)
        spec = parse_spec(
            {
                "project_name": "floor",
                "port": free_port(),
                "pocketbase_version": version,
                "extra_dirs": ["pb_hooks", "pb_migrations", "pb_public"],
                # As a deployed release runs; with watching on, PocketBase restarts
                # itself when the files change, racing the floor's own restart.
                "flags": {"hooks_watch": False},
            },
            "localhost",
        )
        bus = sandbox.bus
        assert bus is not None
        (config.systemd_dir / spec.unit_name).write_text(render_unit(spec, settings))
        site = render_site(spec, SiteSettings(tls="off"))
        (config.caddy_sites_dir / "floor.caddy").write_text(site)
        await bus.daemon_reload()
        await bus.reload_unit("caddy.service")
        await bus.start_unit(spec.unit_name)
        folder = config.state_directory_root / "private" / settings.state_directories(spec)[0]

        async def deploy(generation: int) -> None:
            for name, data in app_files(generation).items():
                path = folder / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            # What the agent's switch does to the unit: stop, clear the start limit, start.
            await bus.stop_unit(spec.unit_name)
            await bus.reset_failed_unit(spec.unit_name)
            await bus.start_unit(spec.unit_name)

        try:
            async with aiohttp.ClientSession() as session:
                # systemd makes the state directory at the first start: write into it only
                # once the instance is up, or the folder would be root's.
                up = await wait_until(lambda: healthy(session, sandbox.caddy_url, spec.domain), 60)
                assert up, "the floor's instance never came up"
                await deploy(0)
                served = await wait_until(
                    lambda: serving(session, sandbox.caddy_url, spec.domain, "v0"), 60
                )
                assert served, "the floor's first app was never served"
            results["floor"] = await measure(deploy, deploys, sandbox.caddy_url, spec.domain)
        except Exception:
            print(journal_text(sandbox, "floor-pocketbase")[-4000:], flush=True)
            raise

    async def agent(sandbox: Sandbox) -> None:
        config = sandbox.agent_config(listen_port=free_port(), health_interval=10.0)
        seed_from_installed(config.release_cache_dir)
        unit = AgentUnit(sandbox, config, watchdog_seconds=30)
        await unit.start()
        try:
            token, _ = AccountStore(Database(config.database)).create_token("bench")
            root = f"http://{config.listen_host}:{config.listen_port}/api/pockestrator"
            headers = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession(headers=headers) as api:
                body = {
                    "project_name": "shipped",
                    "port": free_port(),
                    "pocketbase_version": version,
                }
                async with api.post(f"{root}/services?wait=true", json=body) as response:
                    assert response.status == 201, await response.text()

                async def deploy(generation: int) -> None:
                    async with api.post(
                        f"{root}/services/shipped/releases",
                        data=archive(app_files(generation)),
                        headers={"Content-Type": "application/gzip"},
                        timeout=aiohttp.ClientTimeout(total=120),
                    ) as response:
                        if response.status != 201:
                            raise RuntimeError(f"deploy {generation}: {await response.text()}")

                await deploy(0)
                results["agent"] = await measure(
                    deploy, deploys, sandbox.caddy_url, "shipped.localhost"
                )
        finally:
            await unit.stop()

    print("floor (no agent):", flush=True)
    await in_sandbox(floor)
    print("agent:", flush=True)
    await in_sandbox(agent)

    for who in ("floor", "agent"):
        times, client = results[who]
        report.add(f"deploy: {who} median (s)", statistics.median(times))
        report.add(f"deploy: {who} 5xx during {deploys} deploys [0]", client.errors_5xx)
        report.add(f"deploy: {who} failed connections", client.failed)
        report.add(f"deploy: {who} requests answered", client.answers)
        report.add(f"deploy: {who} seconds of 5xx per deploy", client.down_seconds / deploys)
    report.add(
        "deploy: ratio agent/floor",
        statistics.median(results["agent"][0]) / statistics.median(results["floor"][0]),
    )
    report.notes.append(
        f"app: {HOOKS} hooks, {MIGRATIONS} migrations, {PUBLIC_BYTES} bytes of public files"
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--deploys", type=int, default=20)
    parser.add_argument(
        "--output", type=Path, default=Path("test-artifacts/benchmarks-deploys.json")
    )
    args = parser.parse_args()
    report = asyncio.run(run(args.deploys))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report.as_json() + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
