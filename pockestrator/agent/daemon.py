"""The agent process: lifecycle of every part, the workers, and the sources of work.

Start-up is a sequence of explicit steps and shutdown runs them backwards (as aiohttp's
runner does): the database (its specs and account stores), D-Bus, controllers, queue and
workers, the sources of keys (spec directory, D-Bus unit signals, file events in the unit
and Caddy site directories, the periodic resync, health probes), the API; then
``READY=1``. Every source only adds names to the work queue (``agent.key_sources``); the
workers call ``reconcile(name)`` (``agent.workers``). ``Agent`` is both, and this module
its wiring and lifecycle.

Graceful shutdown (SIGTERM, SIGINT): no new keys are handed out, the reconciles in flight
finish (bounded by ``stop``'s ``grace``), then everything closes in reverse order.
"""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import structlog

from pockestrator import __version__
from pockestrator.accounts.store import AccountStore
from pockestrator.agent.alerts import AlertWatch
from pockestrator.agent.appwatch import AppWatch
from pockestrator.agent.archive_keeper import ArchiveKeeper
from pockestrator.agent.controllers import Controllers
from pockestrator.agent.fleet_routing import FleetRouting
from pockestrator.agent.health import HealthProber
from pockestrator.agent.history import History
from pockestrator.agent.hostview import AgentHostView
from pockestrator.agent.key_sources import KeySources
from pockestrator.agent.lifespan import StartStop
from pockestrator.agent.node_lease import NodeLease
from pockestrator.agent.node_watch import NodeWatch
from pockestrator.agent.notify import Notifier
from pockestrator.agent.parts import Parts
from pockestrator.agent.reconciler import Reconciler
from pockestrator.agent.replica_errors import ReplicaErrors
from pockestrator.agent.waves import WaveCoordinator
from pockestrator.agent.webhooks import WebhookDispatcher
from pockestrator.agent.workqueue import WorkQueue
from pockestrator.api.context import ControlFailed
from pockestrator.clock import SYSTEM_CLOCK, Clock, utc_now
from pockestrator.config import AgentConfig, ConfigError, load_config
from pockestrator.controllers.apps import AppReleases
from pockestrator.controllers.caddy import SNIPPET_SUFFIX, CaddySites
from pockestrator.controllers.pbsettings import InstanceSettings, PocketBaseApi
from pockestrator.controllers.pbsettings.controller import CALL_TIMEOUT
from pockestrator.controllers.releases import ReleaseCache
from pockestrator.controllers.servicedirs import ServiceDirs
from pockestrator.controllers.snapshots import Snapshots
from pockestrator.controllers.systemd import SystemdUnits
from pockestrator.controllers.systemd.bus import SystemdBus
from pockestrator.controllers.systemd.unit_state import NoSuchUnit, SystemdError
from pockestrator.database import StoreDatabase, StoreUnusable
from pockestrator.database_postgres import (
    PostgresDatabase,
    StoreUnavailable,
    open_store_database,
)
from pockestrator.files import remove_temporary_files
from pockestrator.journal import JournalReader
from pockestrator.specs.model import UNIT_SUFFIX, unit_name
from pockestrator.specs.store import Store
from pockestrator.specs.yamldir import SpecDirectory
from pockestrator.telemetry import AgentMetrics
from pockestrator.waits import cancelled

log = structlog.get_logger("pockestrator.agent")

# Settings a SIGHUP can change in place; the others need a restart of the agent.
RELOADABLE = frozenset(
    {
        "resync_interval",
        "health_interval",
        "health_timeout",
        "health_failures_before_restart",
        "upgrade_health_deadline",
        "settings_check_interval",
        "release_index_ttl",
        "download_timeout",
        "allowed_hosts",
        "archive_keep_days",
        "import_max_bytes",
        "app_releases_kept",
        "app_archive_max_bytes",
        "history_interval",
        "alerts",
        "webhook_concurrency",
        "webhook_timeout",
        "webhook_retry_base",
        "webhook_retry_cap",
        "webhook_max_attempts",
    }
)


class AgentStartError(Exception):
    """The agent cannot start here; the message says what to fix."""


class Agent(KeySources, StartStop):
    """One running agent. ``start``/``stop`` (or ``async with``); ``run`` until a signal.

    ``clock`` is the stores' time: their timestamps, login lock-outs, session expiry.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        config_path: Path | None = None,
        api_factory: Callable[[Agent], Awaitable[Any]] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock
        self.notifier = Notifier()
        self.queue = WorkQueue(base_delay=0.1, max_delay=60.0)
        self.metrics = AgentMetrics()
        self.history = History()
        self.started_at = utc_now()
        self.api_factory = api_factory
        self._api_runner: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stopped = asyncio.Event()
        super().__init__()  # the workers' and the sources' own state

    # -- the parts, available after start ----------------------------------------------

    database: StoreDatabase
    store: Store
    accounts: AccountStore
    # and each of the controllers (``agent.controllers``) under its field's name
    session: aiohttp.ClientSession
    coordinator: WaveCoordinator
    reconciler: Reconciler
    spec_directory: SpecDirectory
    health: HealthProber
    host: AgentHostView
    archive_keeper: ArchiveKeeper
    webhooks: WebhookDispatcher
    node_lease: NodeLease

    async def start(self) -> None:
        """Start every part in order; if one fails, whatever started is stopped again."""
        try:
            await self._start()
        except BaseException:
            await self.stop(grace=5.0)
            raise

    async def _start(self) -> None:
        config = self.config
        for folder, key in ((config.spec_dir, "spec_dir"), (config.database.parent, "database")):
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise AgentStartError(
                    f"{key}: {folder} is missing and cannot be created ({exc.strerror})"
                ) from exc
        self.database = open_store_database(config)
        self.store = Store(self.database, clock=self.clock, node=config.node)
        self.accounts = AccountStore(self.database, clock=self.clock)
        self.node_lease = NodeLease(self.store, lambda: self.config)
        # Before any reconcile: services stored before there were nodes become this one's.
        await asyncio.to_thread(self.node_lease.register)
        self.bus = await SystemdBus.connect(config.systemd_manager, config.dbus_address)
        self.units = SystemdUnits(config, self.bus)
        self.sites = CaddySites(config, self.bus if config.caddy_reload == "systemd" else None)
        self.releases = ReleaseCache(config)
        self.dirs = ServiceDirs(config, self.bus)
        self.session = aiohttp.ClientSession()
        self.snapshots = Snapshots(config, self.bus)
        pbsettings = InstanceSettings(config, PocketBaseApi(self.session, CALL_TIMEOUT), self.dirs)
        controllers = Controllers(
            self.bus,
            self.units,
            self.sites,
            self.releases,
            self.dirs,
            self.snapshots,
            pbsettings,
            AppReleases(config),
        )
        self.host = AgentHostView(
            lambda: self.config, controllers, database_full=lambda: self.database.full
        )
        self.coordinator = WaveCoordinator(
            ready_work=self._work_is_waiting, parked=self._lend_a_worker
        )
        parts = Parts(config, self.store, controllers, self.session, self.clock, self.metrics)
        self.reconciler = Reconciler(parts, self.coordinator)
        self.reconciler.wake = self.enqueue
        self.reconciler.backups.replica_errors = ReplicaErrors(
            JournalReader(self.config.journal_dir, self.host.journal_scope)
        )
        self.reconciler.sleep.enqueue = self.enqueue
        self.archive_keeper = ArchiveKeeper(lambda: self.config, self.dirs, self.clock)
        self.fleet_routing = FleetRouting(config, self.store, self.sites, self.clock)
        self.webhooks = WebhookDispatcher(self.store, lambda: self.config, self.clock)
        self.reconciler.archived = self.archive_keeper.wake
        self.app_watch = AppWatch(self.enqueue)
        self.reconciler.deploys.watch = self.app_watch
        self.spec_directory = SpecDirectory(
            config.spec_dir,
            self.store,
            config.default_domain,
            self.enqueue_many,
            agent_port=config.listen_port,
            backup_targets=config.backup_targets.keys(),
        )
        self.health = HealthProber(
            self.store,
            self.enqueue,
            config.health_interval,
            config.health_timeout,
            config.health_failures_before_restart,
            boot_grace=self.reconciler.policy.health_deadline,
            metrics=self.metrics,
            asleep=self.reconciler.sleep.resting,
            booting=self.reconciler.booting,
        )
        # Before any worker runs a bootstrap or a backup of its own: what a killed agent
        # left of its own is nobody's.
        swept = await self.dirs.sweep_bootstrap_leftovers()
        swept += await self.dirs.sweep_partial_backups()
        swept += self._sweep_temporary_files()
        if swept:
            log.warning("removed what a stopped agent left unfinished", removed=swept)
        self.alerts = AlertWatch(
            lambda: self.config, self.store, self.host, self.metrics, self.clock
        )
        self.health.verdict_changed = self.alerts.wake
        self.alerts.asleep = self.reconciler.sleep.is_asleep
        self.history.observed = self.alerts.after_round
        # Kept so that a test can make the agent miss the signals (the resync's rounds).
        self.unwatch_units = self.bus.watch_units(self._on_unit_signal)
        # Signals sent while the bus was gone are lost: look at everything again.
        self.bus.on_reconnect(lambda: self.enqueue_many(self.known_names()))
        self._workers = [
            asyncio.create_task(self._worker(index), name=f"worker-{index}")
            for index in range(config.workers)
        ]
        self._next_index = config.workers
        self._spawn(self.spec_directory.run, "spec-directory")
        await asyncio.wait_for(self.spec_directory.wait_ready(), 30)
        self._spawn(self._load_caddy_sites, "caddy-sites")
        self._spawn(self._watch_host_files, "host-files")
        self._spawn(self._resync_forever, "resync")
        self._spawn(self.node_lease.run, "node-lease")
        if isinstance(self.database, PostgresDatabase):
            self._spawn(self._listen_to_the_fleet, "fleet-notifications")
            self._spawn(NodeWatch(self.store, lambda: self.config).run, "node-watch")
            self._spawn(self.fleet_routing.run, "fleet-routing")
        self._spawn(self.health.run, "health")
        self._spawn(lambda: self.notifier.watchdog(self._making_progress), "watchdog")
        self._spawn(self._status_forever, "status")
        self._spawn(
            lambda: self.history.run(self.store, self.host, lambda: self.config.history_interval),
            "history",
        )
        self._spawn(self.archive_keeper.run, "archive-retention")
        self._spawn(self.alerts.run, "alerts")
        self._spawn(self.webhooks.run, "webhooks")
        self.enqueue_many(self.known_names())
        if self.api_factory is not None:
            self._api_runner = await self.api_factory(self)
        self.notifier.ready()
        log.info(
            "agent started",
            version=__version__,
            services=len(self.store.service_names()),
            workers=config.workers,
            manager=config.systemd_manager,
        )

    def _spawn(self, loop_factory: Callable[[], Awaitable[None]], name: str) -> None:
        """Run a background loop for the agent's life; if it fails it starts again.

        One error (a full disk under SQLite, say) must not end the health probes or the
        resync for good while the workers keep the watchdog fed.
        """

        async def supervised() -> None:
            pause = 1.0
            while True:
                try:
                    await loop_factory()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception(
                        "background loop failed; restarting it", task=name, retry_in=pause
                    )
                await asyncio.sleep(pause)
                pause = min(pause * 2, 60.0)

        self._tasks.append(asyncio.create_task(supervised(), name=name))

    async def stop(self, grace: float = 30.0) -> None:
        """Finish the reconciles in flight (up to ``grace`` seconds), then close everything."""
        self.notifier.stopping()
        self.queue.shutdown()
        if self._stopped.is_set():
            return
        if self._api_runner is not None:
            await self._api_runner.cleanup()
            self._api_runner = None
        await cancelled(self._tasks)  # again and again if need be (pockestrator.waits)
        workers = [*self._workers, *self._lent]
        if workers:
            _done, pending = await asyncio.wait(workers, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
        self._lent.clear()
        self._tasks, self._workers = [], []
        if hasattr(self, "reconciler"):
            self.reconciler.sleep.close()
            await self.reconciler.close()
        if hasattr(self, "app_watch"):
            await self.app_watch.close()
        # After a start that failed half-way, only what exists is closed.
        if hasattr(self, "releases"):
            await self.releases.close()
        if hasattr(self, "session"):
            await self.session.close()
        if hasattr(self, "bus"):
            await self.bus.close()
        if hasattr(self, "database"):
            self.database.close()
        self._stopped.set()
        log.info("agent stopped")

    async def restart_service(self, name: str) -> None:
        """A one-off restart on request; a unit systemd does not know yet is left to the
        reconcile that creates it."""
        unit = unit_name(name)
        self.reconciler.sleep.release(name, "started on request")
        try:
            # An operator's restart is not a crash: systemd's start limit (a crash loop's
            # brake) is reset first, or a few quick restarts would fail with
            # start-limit-hit. The new process's boot is not held against it either.
            await self.bus.reset_failed_unit(unit)
            await self.bus.restart_unit(unit)
        except NoSuchUnit:
            return
        except SystemdError as exc:
            raise ControlFailed(str(exc)) from exc
        finally:
            self.enqueue(name)
        self.store.update_status(name, health_failures=0)
        self.store.add_event(name, "restarted", "restarted on request")

    def sleeping(self, name: str) -> bool:
        """Whether ``name`` sleeps now (agent.sleep): the API shows ``sleeping``."""
        return self.reconciler.sleep.is_asleep(name)

    def _sweep_temporary_files(self) -> list[str]:
        """The temporary files of atomic writes a killed agent left, in every folder it
        writes: of its own names only (the unit folder is shared)."""
        config = self.config
        places = (
            (config.systemd_dir, f"*{UNIT_SUFFIX}"),
            (config.environment_path, "*.env"),
            (config.caddy_sites_dir, f"*{SNIPPET_SUFFIX}"),
            (self.sites.main_file.parent, self.sites.main_file.name),
            (self.reconciler.steps.generated_passwords_dir(), "*"),
            (self.reconciler.controllers.pbsettings.logins.folder, "*"),  # the agent's own
        )
        return [
            str(path) for folder, names in places for path in remove_temporary_files(folder, names)
        ]

    async def _load_caddy_sites(self) -> None:
        """Once at start: the running Caddy may lack a site an earlier agent wrote (killed
        before its reload); a failed reload is retried by ``_spawn``."""
        error = await self.sites.load_what_is_on_disk()
        if error is not None:
            log.error(
                "the Caddy sites on disk do not validate; Caddy keeps what it runs",
                error=error[:2000],
            )

    async def _status_forever(self) -> None:
        """Keep systemd's STATUS= line current (every few seconds, cheap)."""
        while True:
            self.notifier.status(self.summary())
            await asyncio.sleep(5.0)

    def summary(self) -> str:
        states: dict[str, int] = defaultdict(int)
        # Two columns, not every status (every 5 s; with 500 services that counted).
        for state, _healthy in self.store.states().values():
            states[state] += 1
        parts = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
        return f"{sum(states.values())} services ({parts or 'none'}); queue {len(self.queue)}"

    # -- signals -----------------------------------------------------------------------

    def reload_config(self) -> None:
        """SIGHUP: re-read the configuration; apply what can change while running."""
        self.notifier.reloading()
        try:
            fresh = load_config(self.config_path)
        except ConfigError as exc:
            log.error("configuration reload refused; keeping the running one", error=str(exc))
        else:
            changed = {
                key
                for key in type(fresh).model_fields
                if getattr(fresh, key) != getattr(self.config, key)
            }
            applied = {key: getattr(fresh, key) for key in changed & RELOADABLE}
            self.config = self.config.model_copy(update=applied)
            self.reconciler.reconfigure(self.config)
            self.archive_keeper.wake()
            self.releases.reconfigure(self.config)
            self.health.interval = self.config.health_interval
            self.health.timeout = self.config.health_timeout
            self.health.failures_before_restart = self.config.health_failures_before_restart
            if changed - RELOADABLE:
                log.warning(
                    "these settings need an agent restart", keys=sorted(changed - RELOADABLE)
                )
            log.info("configuration reloaded", applied=sorted(applied))
            self.enqueue_many(self.known_names())
        self.notifier.ready()

    async def run_until_signalled(self) -> None:
        """Serve until SIGTERM or SIGINT; SIGHUP re-reads the configuration."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_config)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)


async def run_agent(config_path: Path | None) -> int:
    """``pockestrator agent``: run until signalled; exit status for the CLI."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        log.error("invalid configuration", error=str(exc))
        return 1
    agent = Agent(config, config_path=config_path, api_factory=api_factory())
    try:
        await agent.start()
    except (AgentStartError, StoreUnusable, StoreUnavailable, SystemdError, OSError) as exc:
        log.error("the agent cannot start", error=str(exc))
        return 1
    try:
        await agent.run_until_signalled()
    finally:
        await agent.stop()
    return 0


def api_factory() -> Callable[[Agent], Awaitable[Any]] | None:
    """The REST API's start function (``pockestrator.api.server.start_api``)."""
    from pockestrator.api.server import start_api

    return start_api
