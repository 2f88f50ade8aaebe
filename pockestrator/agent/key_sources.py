"""Where the agent's work comes from: every source only adds names to the work queue.

D-Bus unit signals, edits in the unit and Caddy site folders (drift), a fleet's
notifications (another node's API changed one of this node's services; another node's
service changed, for the fleet's routes and this API's watches) and the periodic resync,
which looks at every name the host or the store knows. The spec directory and the health
probes, parts of their own, add names through ``enqueue`` too.
"""

from __future__ import annotations

import asyncio

import structlog

from pockestrator.agent.alerts import AlertWatch
from pockestrator.agent.fleet_routing import FleetRouting
from pockestrator.agent.workers import WorkerPool
from pockestrator.controllers.caddy import CATCH_ALL, SNIPPET_SUFFIX, CaddySites
from pockestrator.controllers.snapshots import Snapshots
from pockestrator.controllers.systemd import SystemdUnits
from pockestrator.database import StoreDatabase
from pockestrator.database_postgres import STATUS_NOTICE, PostgresDatabase, StoreUnavailable
from pockestrator.dirwatch import DirectoryWatcher
from pockestrator.specs.grammar import GrammarError, check_project_name
from pockestrator.specs.model import UNIT_SUFFIX
from pockestrator.specs.yamldir import SpecDirectory

log = structlog.get_logger("pockestrator.agent")


def work_key_of(file_name: str) -> str | None:
    """The work-queue key a file in the unit or site folder stands for: its service's
    name, or ``CATCH_ALL`` for the catch-all site; None for anything else."""
    if file_name == CATCH_ALL + SNIPPET_SUFFIX:
        return CATCH_ALL
    return service_name_of(file_name)


def service_name_of(file_name: str) -> str | None:
    """The service a unit file or site snippet belongs to, if the name is one of ours."""
    for suffix in (UNIT_SUFFIX, SNIPPET_SUFFIX):
        if file_name.endswith(suffix) and not file_name.startswith("."):
            try:
                return check_project_name(file_name[: -len(suffix)])
            except GrammarError:
                return None
    return None


class KeySources(WorkerPool):
    """The sources of keys, feeding the workers' queue."""

    database: StoreDatabase
    units: SystemdUnits
    sites: CaddySites
    snapshots: Snapshots
    spec_directory: SpecDirectory
    alerts: AlertWatch
    fleet_routing: FleetRouting

    def __init__(self) -> None:
        super().__init__()
        self._host_watcher: DirectoryWatcher | None = None

    def known_names(self) -> set[str]:
        """Every key to reconcile: every name the host or the store knows (specs of this
        node, our units, sites and replication configurations, deletions), and the
        catch-all site's."""
        names = set(self.store.local_service_names())
        names.update(self.units.managed_names())
        names.update(self.sites.list_sites())
        names.update(self.snapshots.replication.configured_names())
        # A move to this node not finished when the agent stopped: its next step is here.
        here = self.config.node
        names.update(m.service for m in self.store.unfinished_moves() if m.target == here)
        names.add(CATCH_ALL)
        return names

    def _on_unit_signal(self, unit: str) -> None:
        name = service_name_of(unit) if unit.endswith(UNIT_SUFFIX) else None
        if name is not None:
            self.alerts.wake()
        # A service backing off after a failure waits for its retry: its own failed attempt
        # changes its unit, and an immediate re-add would defeat the backoff.
        if name is not None and not self.queue.failures(name):
            self.queue.add(name)

    async def _watch_host_files(self) -> None:
        """Edits, deletions and new files in the unit and site directories are drift."""
        folders = [self.config.systemd_dir, self.config.caddy_sites_dir]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
        # Drift only needs repairing within a second; our own writes are batched too.
        watcher = DirectoryWatcher(
            folders, lambda name: work_key_of(name) is not None, quiet=0.05, max_delay=0.3
        )
        watcher.start()
        self._host_watcher = watcher
        try:
            async for batch in watcher.batches():
                if batch is None:  # overflow: look at everything
                    self.enqueue_many(self.known_names())
                    continue
                for path in batch:
                    if (name := work_key_of(path.name)) is not None:
                        self.queue.add(name)
        finally:
            watcher.close()

    async def _listen_to_the_fleet(self) -> None:
        """Reconcile a service of this node as soon as any node's API (or a file on any
        node) changed it: the store's triggers NOTIFY "<node> <name>" at commit. Once
        listening (again), every name is looked at: what was told before is not told
        again. A dropped connection (a server restart) is made again after a pause."""
        assert isinstance(self.database, PostgresDatabase)
        pause = 1.0
        while True:
            try:
                async for payload in self.database.notifications():
                    pause = 1.0
                    if not payload:
                        self.enqueue_many(self.known_names())
                        self.fleet_routing.poke()
                        continue
                    node, _, name = payload.partition(" ")
                    if node == STATUS_NOTICE:
                        # Another node's reconcile: this API's waits and watches see it.
                        self.store.changes.record([name])
                    elif name and self.store.runs_here(node):
                        self.enqueue(name)
                        self.fleet_routing.poke()  # a move's step: its forward here
                    elif name:
                        self.fleet_routing.poke()  # another node's service: its route here
            except StoreUnavailable as exc:
                log.warning("the fleet's notifications stopped; listening again", error=str(exc))
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)

    async def _resync_forever(self) -> None:
        """Every resync_interval: re-read the spec files (a held-back spec may fit now)
        and reconcile every name whose host differs from what its last quiet reconcile
        saw, catching what no event reported (``agent.observe_round``)."""
        while True:
            await asyncio.sleep(self.config.resync_interval)
            self.spec_directory.scan()
            self.fleet_routing.poke()
            if self._host_watcher is not None:
                self._host_watcher.ensure_watches()  # a unit or site folder re-created
            self.enqueue_many(await self.reconciler.looks.choose(self.known_names()))
