"""SIGKILL of the agent at random points of a mixed workload, and what "converged" means.

The agent runs as deployed (``tests/testbed/agent_unit.py``: a ``Type=notify`` unit of the
test bed's manager with ``Restart=on-failure``), driven through its REST API. Each kill
point sends one operation (create, update, stop, start, delete, upgrade), waits a random
time, kills the agent's main process with SIGKILL and lets systemd start it again; then it
waits until the host has converged and records how long that took.

Converged (``KillRun.problems`` is empty) means, read from the store, the host and the
instances themselves, never from the agent's own opinion:
- every stored spec has its unit file, site snippet and environment file, each exactly the
  render of the spec, and systemd runs it (or not) as the spec's run state says; a running
  one answers ``/api/health`` through Caddy; its status is settled;
- nothing else: no unit file, snippet or environment file of a name without a spec, no
  running unit of ours without a spec, no deletion pending;
- no temporary or half-made file where a reader could find it (``*.tmp``, ``.partial``
  folders, superuser bootstrap leftovers), and the store passes SQLite's integrity check
  (a release download cut short leaves a ``.staging-*`` folder, which nothing reads as a
  version and the cache sweeps after an hour: counted, not a failure);
- every write the API acknowledged is there (or, for a delete, gone; one the kill cut off
  before its answer may or may not have happened, and either is right), and every record
  written into an instance's ``pb_data`` reads back: through PocketBase while it runs, from
  the archived ``data.db`` once the service is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import signal
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from pockestrator.accounts.store import AccountStore
from pockestrator.agent.plan.versions import target_version
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig
from pockestrator.controllers.caddy import CATCH_ALL, SiteSettings, render_site
from pockestrator.controllers.caddy.caddyfile import public_ports
from pockestrator.controllers.releases.store import STAGING_PREFIX, TRASH_PREFIX
from pockestrator.controllers.systemd import UnitSettings, render_environment, render_unit
from pockestrator.database import Database
from pockestrator.specs.store import ServiceRecord, ServiceStatus, Store
from tests.testbed.agent_unit import AGENT_UNIT, AgentUnit
from tests.testbed.api_client import Api
from tests.testbed.waiting import pocketbase_health, wait_until

OPERATIONS = ("create", "update", "stop", "start", "delete", "upgrade")
UNIT_GLOB = "*-pocketbase.service"
RUNNING_STATES = ["active", "activating", "reloading", "deactivating"]


@dataclass
class KillPoint:
    """One kill: what was under way, when it died, and how the host came back."""

    index: int
    operation: str
    service: str
    delay: float  # seconds from sending the operation to the kill
    acknowledged: bool = False  # the API answered before the kill
    restart_seconds: float = 0.0  # kill -> the restarted agent answers its API
    converge_seconds: float = 0.0  # kill -> the host converged (see the module)
    problems: list[str] = field(default_factory=list)  # left at the deadline

    @property
    def converged(self) -> bool:
        return not self.problems


@dataclass
class Figures:
    points: list[KillPoint]
    lost: list[str]  # acknowledged writes or instance records that did not survive
    final_problems: list[str]
    release_staging: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        converge = [p.converge_seconds for p in self.points if p.converged]
        restart = [p.restart_seconds for p in self.points]
        by_operation: dict[str, int] = {}
        for point in self.points:
            by_operation[point.operation] = by_operation.get(point.operation, 0) + 1
        return {
            "kill_points": len(self.points),
            "converged": len(converge),
            "not_converged": [
                {"index": p.index, "operation": p.operation, "problems": p.problems[:5]}
                for p in self.points
                if not p.converged
            ],
            "acknowledged_before_kill": sum(p.acknowledged for p in self.points),
            "operations": by_operation,
            "restart_seconds": _spread(restart),
            "converge_seconds": _spread(converge),
            "lost": self.lost,
            "final_problems": self.final_problems,
            "release_staging_left": len(self.release_staging),
        }


def _spread(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "median": round(statistics.median(values), 3),
        "max": round(max(values), 3),
        "min": round(min(values), 3),
    }


@dataclass
class InstanceRecord:
    """A user written into an instance's ``pb_data`` through PocketBase's own API."""

    email: str
    password: str


class KillRun:
    """The workload, the kills and the checks, on one sandbox with the agent as a unit."""

    def __init__(
        self,
        sandbox: Sandbox,
        config: AgentConfig,
        versions: tuple[str, str],
        *,
        seed: int,
        max_services: int = 5,
        converge_timeout: float = 90.0,
        log: Callable[[str], None] = print,
    ) -> None:
        self.sandbox = sandbox
        self.config = config
        self.old, self.new = versions
        self.rng = random.Random(seed)
        self.max_services = max_services
        self.converge_timeout = converge_timeout
        self.log = log
        self.unit = AgentUnit(sandbox, config, watchdog_seconds=30)
        self.settings = UnitSettings.from_config(config)
        self.records: dict[str, InstanceRecord] = {}
        self.deleted: set[str] = set()
        self.must_exist: set[str] = set()  # acknowledged creates (not deleted since)
        self.must_be_gone: set[str] = set()  # acknowledged deletes
        self.points: list[KillPoint] = []
        self._counter = 0
        self._session: aiohttp.ClientSession | None = None
        self._api: Api | None = None

    # -- set-up --------------------------------------------------------------------------

    async def start(self) -> None:
        await self.unit.start()
        database = Database(self.config.database)
        try:
            token, _record = AccountStore(database).create_token("fault injection")
        finally:
            database.close()
        self._session = aiohttp.ClientSession()
        root = f"http://{self.config.listen_host}:{self.config.listen_port}/api/pockestrator"
        self._api = Api(self._session, root, token)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        await self.unit.stop()

    @property
    def api(self) -> Api:
        assert self._api is not None
        return self._api

    async def prepare(self, services: int = 3) -> None:
        """A few services, converged, each with a record in its data."""
        for _ in range(services):
            name = self._new_name()
            reply = await self.api.call(
                "POST", "/services", self._create_body(name), params={"wait": "true"}
            )
            assert reply.status == 201, reply.body
            self.must_exist.add(name)
        await self.converge(self.converge_timeout)
        await self.write_records()

    # -- the workload --------------------------------------------------------------------

    def _new_name(self) -> str:
        self._counter += 1
        return f"kp{self._counter:03d}"

    def _create_body(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "project_name": name,
            "port": free_port(),
            "pocketbase_version": self.old,
            "env": {"FAULT_ROUND": "0"},
        }
        if self.rng.random() < 0.5:  # half bootstrap a superuser (a transient unit)
            body["superuser_email"] = f"admin@{name}.test"
        return body

    def _choose(self, records: dict[str, ServiceRecord]) -> tuple[str, str]:
        """An operation that makes sense for the stored state, and its service."""
        running = sorted(n for n, r in records.items() if r.desired_state == "running")
        stopped = sorted(n for n, r in records.items() if r.desired_state == "stopped")
        old = sorted(n for n, r in records.items() if r.spec.pocketbase_version == self.old)
        choices: list[tuple[str, list[str], int]] = [
            ("create", [""] if len(records) < self.max_services else [], 3),
            ("update", sorted(records), 3),
            ("stop", running if len(running) > 1 else [], 1),
            ("start", stopped, 2),
            ("delete", sorted(records) if len(records) > 2 else [], 2),
            ("upgrade", old, 3),
        ]
        possible = [(op, names, weight) for op, names, weight in choices if names]
        operation, names, _weight = self.rng.choices(
            possible, weights=[weight for _op, _names, weight in possible]
        )[0]
        name = self._new_name() if operation == "create" else self.rng.choice(names)
        return operation, name

    def _request(self, operation: str, name: str, index: int) -> Awaitable[Any]:
        api = self.api
        if operation == "create":
            return api.call("POST", "/services", self._create_body(name), params={"wait": "true"})
        if operation == "update":
            return api.call(
                "PATCH",
                f"/services/{name}",
                {"env": {"FAULT_ROUND": str(index)}},
                params={"wait": "true"},
            )
        if operation in ("stop", "start"):
            return api.call("POST", f"/services/{name}/control", {"action": operation})
        if operation == "delete":
            return api.call("DELETE", f"/services/{name}")
        assert operation == "upgrade"
        return api.call(
            "PATCH", f"/services/{name}", {"pocketbase_version": self.new}, params={"wait": "true"}
        )

    async def kill_point(self, index: int, max_delay: float = 1.5) -> KillPoint:
        """One operation, a SIGKILL of the agent after a random delay, and the recovery."""
        records = self.stored()[0]
        operation, name = self._choose(records)
        point = KillPoint(index, operation, name, delay=self.rng.uniform(0.0, max_delay))
        # A restart is not a crash loop: systemd's start limit would stop restarting a unit
        # killed more than five times in ten seconds.
        await self.unit.bus.reset_failed_unit(AGENT_UNIT)
        victim = await self.unit.main_pid()
        request = asyncio.ensure_future(self._request(operation, name, index))
        done, _pending = await asyncio.wait({request}, timeout=point.delay)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        reply = None
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, asyncio.TimeoutError):
            reply = await request
        point.acknowledged = bool(done) and reply is not None and reply.status < 300
        if reply is not None and reply.status < 300:
            self._acknowledge(operation, name)
        elif operation == "delete":
            self.must_exist.discard(name)  # killed before its answer: it may have happened
        point.restart_seconds = await self._wait_restarted(victim) - killed_at
        converged_at = await self.converge(self.converge_timeout, point)
        point.converge_seconds = (converged_at or time.monotonic()) - killed_at
        if point.converged:
            await self.write_records()
        self.points.append(point)
        self.log(
            f"kill {index:3d}: {operation:<7} {name} after {point.delay:.3f}s"
            f"{' (acknowledged)' if point.acknowledged else ''}: back in "
            f"{point.restart_seconds:.2f}s, converged in {point.converge_seconds:.2f}s"
            + ("" if point.converged else f"; NOT CONVERGED: {point.problems[:3]}")
        )
        return point

    def _acknowledge(self, operation: str, name: str) -> None:
        if operation == "create":
            self.must_exist.add(name)
        elif operation == "delete":
            self.must_exist.discard(name)
            self.must_be_gone.add(name)

    async def _wait_restarted(self, victim: int) -> float:
        async def back() -> bool:
            status = await self.unit.bus.unit_status(AGENT_UNIT)
            if status.main_pid in (None, victim) or status.sub_state != "running":
                return False
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, asyncio.TimeoutError):
                return (await self.api.call("GET", "/services")).status == 200
            return False

        assert await wait_until(back, 60, interval=0.05), "the agent did not come back"
        return time.monotonic()

    async def converge(self, timeout: float, point: KillPoint | None = None) -> float | None:
        """Wait until ``problems`` is empty; the moment it was, or None (then the last
        problems are in ``point``)."""
        latest: list[str] = []

        async def settled() -> bool:
            latest[:] = await self.problems()
            return not latest

        if await wait_until(settled, timeout, interval=0.1):
            return time.monotonic()
        if point is not None:
            point.problems = list(latest)
        return None

    async def finish(self) -> Figures:
        """Start every stopped service, converge, and read every record back."""
        for name, record in self.stored()[0].items():
            if record.desired_state == "stopped":
                reply = await self.api.call(
                    "POST", f"/services/{name}/control", {"action": "start"}
                )
                assert reply.status in (200, 202), reply.body
        final: list[str] = []
        if await self.converge(self.converge_timeout) is None:
            final = await self.problems()
        lost = await self.lost_data()
        return Figures(self.points, lost, final, self.release_staging())

    # -- instance records ------------------------------------------------------------------

    async def write_records(self) -> None:
        """A user in every running instance that has none yet, through PocketBase."""
        records = self.stored()[0]
        for name, record in records.items():
            if name in self.records or record.desired_state != "running":
                continue
            entry = InstanceRecord(f"user@{name}.test", secrets.token_urlsafe(12))
            status, body = await self._instance_post(
                name,
                "/api/collections/users/records",
                {
                    "email": entry.email,
                    "password": entry.password,
                    "passwordConfirm": entry.password,
                },
            )
            assert status == 200, (name, status, body)
            self.records[name] = entry

    async def _instance_post(self, name: str, path: str, body: dict[str, str]) -> tuple[int, str]:
        assert self._session is not None
        try:
            async with self._session.post(
                self.sandbox.caddy_url + path,
                json=body,
                headers={"Host": f"{name}.localhost"},
                timeout=aiohttp.ClientTimeout(total=5),
            ) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError):
            return 0, ""

    async def _record_reads_back(self, name: str) -> bool:
        entry = self.records[name]
        status, _body = await self._instance_post(
            name,
            "/api/collections/users/auth-with-password",
            {"identity": entry.email, "password": entry.password},
        )
        return status == 200

    def _archived_record(self, name: str) -> bool:
        """The deleted service's data, archived: its user is in the archived data.db."""
        entry = self.records[name]
        for folder in sorted(self.config.archive_path.glob(f"{name}-*")):
            database = folder / "pb_data" / "data.db"
            if not database.is_file():
                continue
            with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
                rows = db.execute("SELECT 1 FROM users WHERE email = ?", (entry.email,)).fetchall()
            if rows:
                return True
        return False

    async def lost_data(self) -> list[str]:
        """Acknowledged writes undone and records that did not survive (must be none)."""
        records = self.stored()[0]
        lost = [
            f"{name}: created (acknowledged) but gone" for name in self.must_exist - set(records)
        ]
        lost += [
            f"{name}: deleted (acknowledged) but back" for name in self.must_be_gone & set(records)
        ]
        for name in sorted(self.records):
            if name in records:
                if not await self._record_reads_back(name):
                    lost.append(f"{name}: the user written into pb_data does not read back")
            elif not self._archived_record(name):
                lost.append(f"{name}: deleted, but no archive holds the user written into it")
        return lost

    # -- what converged means ----------------------------------------------------------------

    def stored(self) -> tuple[dict[str, ServiceRecord], dict[str, ServiceStatus | None], int]:
        """The store, read fresh: specs, statuses and how many deletions are pending."""
        store = Store(self.config.database)
        try:
            records = {record.name: record for record in store.list_services()[0]}
            statuses = {name: store.get_status(name) for name in records}
            pending = len(store.pending_deletions())
        finally:
            store.close()
        return records, statuses, pending

    async def problems(self) -> list[str]:
        """Everything that differs from a converged host (see the module); empty when none."""
        records, statuses, pending = self.stored()
        found: list[str] = []
        if pending:
            found.append(f"{pending} deletion(s) pending")
        found += [f"{n}: acknowledged create missing" for n in self.must_exist - set(records)]
        found += [f"{n}: acknowledged delete undone" for n in self.must_be_gone & set(records)]
        found += self._extra_files(set(records), records)
        found += self._leftover_files()
        found += _integrity(self.config.database)
        for name, record in sorted(records.items()):
            found += await self._service_problems(record, statuses.get(name))
        found += await self._orphan_units(set(records))
        return found

    def _extra_files(self, names: set[str], records: dict[str, ServiceRecord]) -> list[str]:
        config = self.config
        units = {
            p.name.removesuffix("-pocketbase.service") for p in config.systemd_dir.glob(UNIT_GLOB)
        }
        sites = {
            p.stem
            for p in config.caddy_sites_dir.glob("*.caddy")
            if not p.name.startswith(".") and p.stem != CATCH_ALL
        }
        environments = {
            p.stem for p in config.environment_path.glob("*.env") if not p.name.startswith(".")
        }
        wanted_environments = {
            n for n, r in records.items() if render_environment(r.spec) is not None
        }
        found = [f"{n}: unit file without a spec" for n in sorted(units - names)]
        found += [f"{n}: site snippet without a spec" for n in sorted(sites - names)]
        found += [
            f"{n}: environment file without a spec"
            for n in sorted(environments - wanted_environments)
        ]
        return found

    def _leftover_files(self) -> list[str]:
        """Temporary or half-made files where a reader could find them."""
        config = self.config
        found = []
        for folder in (
            config.systemd_dir,
            config.caddy_sites_dir,
            config.environment_path,
            config.database.parent,
            config.base_dir / ".backups",
            config.archive_path,
        ):
            if not folder.is_dir():
                continue
            for path in folder.rglob("*"):
                name = path.name
                if name.endswith(".tmp") or ".partial" in name or name.endswith(".bootstrap.env"):
                    found.append(f"left behind: {path}")
        bootstrap = config.base_dir / ".bootstrap"
        if bootstrap.is_dir():
            found += [f"left behind: {path}" for path in bootstrap.iterdir()]
        return found

    def release_staging(self) -> list[str]:
        """Staging folders of the release cache: never read as a version (only a rename
        of a finished one installs it), swept by the cache once an hour old."""
        cache = self.config.release_cache_dir
        if not cache.is_dir():
            return []
        return sorted(
            p.name for p in cache.iterdir() if p.name.startswith((STAGING_PREFIX, TRASH_PREFIX))
        )

    async def _service_problems(
        self, record: ServiceRecord, status: ServiceStatus | None
    ) -> list[str]:
        name, config = record.name, self.config
        version = target_version(record.spec, status)
        spec = record.spec.model_copy(update={"pocketbase_version": version})
        found = []
        checks = (
            (
                config.systemd_dir / f"{name}-pocketbase.service",
                render_unit(spec, self.settings, record.owner),
            ),
            (
                config.caddy_sites_dir / f"{name}.caddy",
                render_site(
                    spec,
                    SiteSettings.of(config, public_ports(config.caddy_config.read_text())),
                    running=record.desired_state == "running",
                ),
            ),
            (self.settings.environment_file(name), render_environment(spec)),
        )
        for path, wanted in checks:
            text = path.read_text() if path.exists() else None
            if text != wanted:
                found.append(f"{name}: {path.name} {'missing' if text is None else 'differs'}")
        unit = await self.unit.bus.unit_status(f"{name}-pocketbase.service")
        running = record.desired_state == "running"
        if running and (unit.active_state, unit.sub_state) != ("active", "running"):
            found.append(f"{name}: should run, is {unit.active_state}/{unit.sub_state}")
        if not running and unit.active_state not in ("inactive", "failed"):
            found.append(f"{name}: should be stopped, is {unit.active_state}")
        if unit.need_daemon_reload:
            found.append(f"{name}: systemd runs an older unit file")
        wanted_state = "active" if running else "inactive"
        if status is None or status.state != wanted_state:
            found.append(f"{name}: status {status.state if status else None}, not {wanted_state}")
        if running and not await pocketbase_health(self.sandbox.caddy_url, f"{name}.localhost"):
            found.append(f"{name}: not served through Caddy")
        return found

    async def _orphan_units(self, names: set[str]) -> list[str]:
        (loaded,) = await self.unit.bus.call(
            "ListUnitsByPatterns", "asas", [RUNNING_STATES, [UNIT_GLOB]]
        )
        running = {row[0].removesuffix("-pocketbase.service") for row in loaded}
        return [f"{n}: a unit runs without a spec" for n in sorted(running - names)]


def _integrity(database: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        verdict = db.execute("PRAGMA integrity_check").fetchall()
    return [] if verdict == [("ok",)] else [f"store integrity: {verdict[:3]}"]


async def run_kill_points(
    sandbox: Sandbox,
    config: AgentConfig,
    versions: tuple[str, str],
    *,
    points: int,
    seed: int,
    log: Callable[[str], None] = print,
) -> Figures:
    """Prepare, kill ``points`` times, finish: the figures of one run."""
    run = KillRun(sandbox, config, versions, seed=seed, log=log)
    await run.start()
    try:
        await run.prepare()
        for index in range(points):
            try:
                await run.kill_point(index)
            except Exception:
                # What the agent said last is what a replay with the seed needs first.
                log(f"kill point {index} failed (seed {seed}); the agent's journal:")
                log(run.unit.journal()[-20000:])
                raise
        return await run.finish()
    finally:
        await run.close()
