"""``reconcile(name)``: converge one service on the host, level-triggered: observe, plan, apply.

After controller-runtime's contract: the call receives only a name, reads the desired state
(the store) and the host fresh, and acts. It never asks what event caused it, so any number
of events for a name collapse into one call that does the right thing; with nothing changed
it writes nothing and queues no systemd job. It returns a ``Result`` (``requeue_after`` to
look again later), raises to be retried with backoff, or raises ``TerminalError`` when
retrying cannot help until something changes (a spec that cannot be rendered, a foreign
unit file in the way): the reason goes to the service's status and the periodic resync
looks again.

One reconcile, in this file's order (steps 6 and 7 are ``agent.settle``'s):
1. desired: the stored spec, pinned to the version that ran before if the spec's version
   was rolled back, rendered (unit file, Caddy site);
2. the binary of that version in the release cache (``ReleaseCache.ensure``);
3. observe: the unit file and systemd's view of the unit, the site snippet, the folder;
   a new service whose desired state names its first data (a clone, an import, an
   undelete: ``agent.seeding``) has it put in its folder now, before anything can start it;
4. plan (``agent.plan``, pure): steps, drift and the status they lead to;
5. apply (``agent.apply``): the steps, global ones batched in waves;
6. settle: probe ``/api/health`` when the plan says so, look at the unit again, and
   record the status (``plan.conclude``). In a burst (a daemon-reload wave larger than
   ``plan.SMALL_WAVE``) an instance that does not answer yet is left to a ``BootWatch``,
   which queues the service again once it answers (or its deadline passes), so no worker
   waits for a boot and the burst's reconciles reach the same daemon-reload, Caddy wave
   and start; a small wave, upgrades, rollbacks and a deploy's switch wait for health in
   the reconcile (what they do next depends on it);
7. once the instance is healthy, and when it is due (``plan.settings_due``), PocketBase's
   own settings: observe them through its API, plan (``plan.plan_settings``), apply.
An upgrade (``agent.upgrades``) whose new version fails (a step raises after the data was
backed up, or health does not come within the deadline) is rolled back: the data is restored
and the old version planned and applied again. A name with no spec is planned for removal.
The key
``CATCH_ALL`` (no project name can be it) is the site for domains no service has.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import structlog

from pockestrator.agent.apply import Applied, StepRunner
from pockestrator.agent.backups import BackupRunner
from pockestrator.agent.deploys import DeployRunner
from pockestrator.agent.health import BootWatch
from pockestrator.agent.mover import Mover
from pockestrator.agent.observe_round import Look, ResyncLooks
from pockestrator.agent.parts import Part, Parts
from pockestrator.agent.plan.model import Desired, Observed, Policy, run_first
from pockestrator.agent.plan.service import plan_catch_all, plan_removal, plan_service
from pockestrator.agent.plan.versions import downgrade_refusal, target_version
from pockestrator.agent.seeding import Seeder, SeedFailed
from pockestrator.agent.settings_check import check_settings
from pockestrator.agent.settle import Settler
from pockestrator.agent.sleep import SleepKeeper
from pockestrator.agent.sleep_reconcile import wake_for, with_sleep
from pockestrator.agent.upgrades import Upgrades
from pockestrator.agent.waves import WaveCoordinator
from pockestrator.config import AgentConfig
from pockestrator.controllers.caddy import CATCH_ALL, SiteSettings, render_catch_all, render_site
from pockestrator.controllers.caddy.upstreams import resolving
from pockestrator.controllers.pbsettings import desired_settings
from pockestrator.controllers.systemd import (
    UnsafeValue,
    render_environment,
    render_unit,
    unit_body_hash,
)
from pockestrator.files import sha256_text
from pockestrator.specs.grammar import GrammarError
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.public_url import service_url
from pockestrator.specs.store import ServiceRecord

log = structlog.get_logger("pockestrator.reconciler")


@dataclass(frozen=True)
class Result:
    """``requeue_after``: look at this service again after so many seconds."""

    requeue_after: float | None = None


class TerminalError(Exception):
    """Retrying will not help until something changes; recorded in status, not retried."""


class Reconciler(Part):
    """Converges services one name at a time; global steps go through the wave coordinator."""

    def __init__(self, parts: Parts, coordinator: WaveCoordinator) -> None:
        super().__init__(parts)
        self.coordinator = coordinator
        self.steps = StepRunner(parts, coordinator)
        self.backups = BackupRunner(parts)
        self.deploys = DeployRunner(parts, self.apply_now)
        self.seeder = Seeder(parts)
        self.mover = Mover(parts)
        self.archived: Callable[[], None] | None = None  # told when a folder is archived
        self.sleep = SleepKeeper(
            parts.controllers.bus,
            parts.store,
            parts.config.database.parent / "sleeping",
            parts.config.caddy_access_log_dir,
            in_flight=resolving(parts.controllers.sites.requests_in_flight),
        )
        self.backups.starting = lambda name: self.sleep.release(name, "a restore starts it")

        self.boots = BootWatch(
            parts.session, self._wake_after_boot, timeout=parts.config.health_timeout
        )
        self.settler = Settler(
            lambda: self.config,
            lambda: self.policy,
            parts.store,
            parts.controllers,
            self.steps,
            parts.session,
            self.boots,
            self.sleep,
        )
        self.upgrades = Upgrades(self.settler, self.desired, self.observe)
        # What quiet reconciles saw, for the periodic resync's rounds (agent.observe_round).
        self.looks = ResyncLooks(
            parts.controllers,
            parts.store,
            lambda: (self.config.settings_check_interval, self.config.resync_interval),
            self.sleep.is_asleep,
        )

    def _wake_after_boot(self, name: str) -> None:
        if self.wake is not None:
            self.wake(name)

    def booting(self, name: str) -> bool:
        """True while the boot of ``name``'s instance is watched (its reconcile follows)."""
        return self.boots.watching(name)

    async def close(self) -> None:
        await self.boots.close()

    @property
    def wake(self) -> Callable[[str], None] | None:
        """How another service is queued (a clone waiting on its source's snapshot)."""
        return self.backups.wake

    @wake.setter
    def wake(self, wake: Callable[[str], None] | None) -> None:
        self.backups.wake = wake

    @property
    def policy(self) -> Policy:
        return Policy(
            health_failures_before_restart=self.config.health_failures_before_restart,
            upgrade_health_deadline=self.config.upgrade_health_deadline,
            resync_interval=self.config.resync_interval,
            settings_interval=self.config.settings_check_interval,
        )

    def reconfigure(self, config: AgentConfig) -> None:
        """Take the settings a SIGHUP changed (the policy is read from them each time)."""
        self.config = config  # the parts the runners share: they all see it

    def generated_password_path(self, name: str) -> Path:
        """Where a superuser password generated for a spec file is left (root only)."""
        return self.steps.generated_password_path(name)

    async def reconcile(self, name: str) -> Result:
        # Recorded again only if this one finds nothing to do; a look is given back when
        # the round queued the name for its settings check alone (agent.settings_check).
        look = self.looks.forget(name)
        async with self.coordinator.participant():
            if name == CATCH_ALL:
                return await self._converge_catch_all()
            record = self.store.get_service(name)
            if record is not None and (await self.mover.step(name)).acted:
                record = self.store.get_service(name)  # a move's switch may have happened
            if record is not None and not self.store.runs_here(record.node):
                # Another node's service: its agent runs it. A service's node changes only
                # by a move, so what this host has of it is a stale copy: it goes,
                # unless it is the site a move to this node holds its requests in.
                if self.mover.incoming(name):
                    return Result()
                keep = self.mover.forwarding(name)  # the site is the move's forward
                return await self._remove(name, stale=record.node, keep_site=keep)
            if record is None:
                deletion = self.store.pending_deletion(name)
                if deletion is not None and not self.store.runs_here(deletion.node):
                    return Result()  # its own node's agent removes it from that host
                return await self._remove(name)
            self.mover.sites.undo_forward(record)  # a rolled-back move's forward undone
            result = await self._converge(record, look)
            # The target of a move confirms it in the reconcile that made it serve.
            moved = await self.mover.step(name)
            if moved.acted:
                self.looks.forget(name)
            return Result(soonest(result.requeue_after, moved.look_again))

    # -- the catch-all site ------------------------------------------------------------

    async def _converge_catch_all(self) -> Result:
        """The site that answers domains no service has: its own key in the work queue, so
        it is written at start-up, repaired when edited and retried at each resync."""
        wanted = render_catch_all(self.site_settings()) if self.config.caddy_catch_all else None
        stamps = self.looks.stamps(CATCH_ALL)
        plan = plan_catch_all(wanted, self.controllers.sites.snippet_hash(CATCH_ALL))
        if not plan:
            self.looks.record(CATCH_ALL, stamps, None)
            return Result()
        applied = Applied()
        await self.steps.run(None, plan, applied)
        if applied.caddy_error:
            log.warning(
                "Caddy refused the catch-all site; set caddy_catch_all: false if the main "
                "Caddyfile has a catch-all of its own",
                error=applied.caddy_error[:500],
            )
        else:
            log.info("catch-all site", actions=applied.actions)
        return Result()

    # -- a service that should exist ---------------------------------------------------

    async def _converge(self, record: ServiceRecord, look: Look | None = None) -> Result:
        name = record.name
        status = self.store.get_status(name)
        backups = await self.controllers.dirs.backups(name)
        version = target_version(record.spec, status, backups)
        note = downgrade_refusal(record.spec, status, backups)
        desired = self.desired(record, version, version_note=note)
        try:
            await self.controllers.releases.ensure(version)
        except Exception as exc:
            self._record_error(name, f"PocketBase {version} is not available: {exc}")
            raise
        if look is not None:
            self.coordinator.step_aside()  # it takes no part in a wave
            checked = await check_settings(self.settler, self.looks, self.store, desired, look)
            if checked is not None:
                await self.deploys.follow_folder(record)
                await self.deploys.run(record)
                later = await self.backups.run(record, has_data=True)
                return Result(soonest(checked.later, later))
        # Before the observation (agent.observe_round), with the secret files it reads.
        secret_files = secret_files_of(desired)
        stamps = self.looks.stamps(name, secret_files)
        wakes = self.sleep.wakes(name)
        observed = await self.observe(desired)
        seeding = await self._seed(record, observed)
        if seeding == "waiting":
            return Result()  # woken when what the seed waits for has happened
        if seeding == "seeded":
            observed = await self.observe(desired)
        if self.sleep.waking(name) or self.sleep.wakes(name) != wakes:
            return Result()  # a wake started it since the look; the wake queues it again
        desired = with_sleep(self.sleep, desired, observed)
        plan = plan_service(desired, status, observed, self.policy)
        wake_for(self.sleep, plan)
        if plan.upgrade is not None:
            await self.upgrades.run(record, desired, status, observed, plan)
            return Result()
        applied = Applied()
        await self.steps.run(desired, plan, applied)
        self.mover.sites.point_here(record)  # a new port, once the instance was started
        self.coordinator.step_aside()  # its health wait and settings hold no wave
        if plan.defer is not None:
            return Result(requeue_after=plan.defer)
        # A burst's boots are watched off the workers; a small wave's are waited for here,
        # as cheap as a watch (one boot) and settled at once: PocketBase's first-boot
        # installer writes to a fresh database about 50 ms after it first answers, and
        # the agent's superuser made before that never meets it.
        watch = not run_first(applied.wave_size)
        settled_later = await self.settler.settle(desired, plan, observed, applied, watch=watch)
        await self.deploys.follow_folder(record)
        await self.deploys.run(record)
        # The host needed nothing: what was observed is what a round compares with (the
        # instance's own settings are no part of that look; their next check is due by the
        # status). The folder is the one observed, too.
        quiet = seeding == "none" and not plan
        folder = observed.dirs if quiet and observed.dirs is not None else None
        if folder is None:
            folder = await self.controllers.dirs.observe(desired.spec)
        later = await self.backups.run(record, has_data=folder.exists)
        if quiet:
            self.looks.record(name, stamps, observed.systemd, secret_files)
        return Result(soonest(settled_later, later))

    async def apply_now(self, record: ServiceRecord) -> None:
        """Converge ``record`` on the host at once (a deploy's switch and its way back):
        the same desired, observe, plan, apply and settle as a reconcile, nothing after.
        The deploy stopped the unit itself, so its start is not reported as drift."""
        status = self.store.get_status(record.name)
        desired = self.desired(record, target_version(record.spec, status))
        observed = await self.observe(desired)
        plan = plan_service(desired, status, observed, self.policy, rolling_back=True)
        wake_for(self.sleep, plan)
        applied = Applied()
        await self.steps.run(desired, plan, applied)
        await self.settler.settle(desired, plan, observed, applied)

    async def _seed(
        self, record: ServiceRecord, observed: Observed
    ) -> Literal["none", "seeded", "waiting"]:
        """A new service's first data in place before anything starts it (``agent.seeding``):
        nothing to seed, seeded now, or waiting for something first. A failed seed is
        terminal: the service is not started on an empty folder instead."""
        seed = self.store.get_seed(record.name)
        if seed is None or seed.outcome == "done":
            return "none"
        has_folder = observed.dirs is not None and observed.dirs.exists
        if has_folder:
            if seed.pending:  # it landed before an interruption
                self.store.finish_seed(record.name, "done", {"note": "the folder was there"})
            return "none"
        if not seed.pending:
            error = seed.result.get("error", "no reason given")
            raise TerminalError(f"seeding from {seed.source.describe()} failed: {error}")
        try:
            waiting = await self.seeder.seed(record, seed)
        except SeedFailed as exc:
            raise TerminalError(str(exc)) from exc
        if waiting is not None:
            self.store.update_status(record.name, state="deploying", last_error=None)
            return "waiting"
        return "seeded"

    def desired(
        self, record: ServiceRecord, version: str, *, version_note: str | None = None
    ) -> Desired:
        """The stored spec at ``version``, rendered; a spec that cannot be is terminal.
        ``version_note`` says why the spec's own version is not run (a refused downgrade)."""
        spec = record.spec
        if version != spec.pocketbase_version:
            spec = spec.model_copy(update={"pocketbase_version": version})
        try:
            release = self.controllers.apps.live(record.name)
            unit_text = render_unit(spec, self.controllers.units.settings, record.owner, release)
            environment = render_environment(spec)
            site_text = render_site(
                spec, self.site_settings(), running=record.desired_state == "running"
            )
        except (UnsafeValue, GrammarError) as exc:
            raise TerminalError(f"the spec cannot be rendered: {exc}") from exc
        return Desired(
            spec=spec,
            requested_version=record.spec.pocketbase_version,
            desired_state=record.desired_state,
            generation=record.generation,
            unit_text=unit_text,
            unit_hash=unit_body_hash(unit_text),
            site_text=site_text,
            site_hash=sha256_text(site_text),
            environment_text=environment,
            environment_hash=sha256_text(environment) if environment is not None else None,
            settings=desired_settings(spec.settings, self.service_url(spec)),
            version_note=version_note,
        )

    def site_settings(self) -> SiteSettings:
        """The agent's TLS settings and Caddy's ports, as every site is rendered with them."""
        return SiteSettings.of(self.config, self.controllers.sites.public_ports())

    def service_url(self, spec: ServiceSpec) -> str:
        """The service's public URL (PocketBase's default ``app_url``), as the API shows it."""
        return service_url(spec, self.config, self.controllers.sites.public_ports())

    async def observe(self, desired: Desired) -> Observed:
        """The unit (file and systemd), the site snippet and the folder of ``desired``.
        The D-Bus call and the folder's look (a thread) are made at once: both only read."""
        unit, dirs = await asyncio.gather(
            self.controllers.units.observe(desired.name),
            self.controllers.dirs.observe(desired.spec),
        )
        if unit.file_exists and not unit.managed:
            path = self.controllers.units.path(desired.name)
            raise TerminalError(
                f"{path} exists and is not managed by Pockestrator; "
                "remove it or choose another project name"
            )
        return Observed(
            unit=unit, site_hash=self.controllers.sites.snippet_hash(desired.name), dirs=dirs
        )

    # -- removal -----------------------------------------------------------------------

    async def _remove(self, name: str, stale: str | None = None, keep_site: bool = False) -> Result:
        """Take ``name`` off this host: deleted, or a ``stale`` copy of a service that
        now runs on that node (moved away: stopped, its site dropped, its data archived;
        ``keep_site``: the site stays, a move's forward until it lapses)."""
        self.sleep.settled(None, name, None)
        deletion = None if stale else self.store.pending_deletion(name)
        observed = await self._observe_removal(name)
        if keep_site:
            observed = replace(observed, site_hash=None)
        plan = plan_removal(name, deletion, observed)
        # Litestream's unit stops with the instance's (BindsTo=), but its configuration
        # holds the target's secret: a service that is gone keeps none.
        replica_removed = await self.controllers.snapshots.stop_replicating(name)
        if not plan and not replica_removed:
            if not keep_site:  # what a crash after the site's removal left, or a route's
                self.mover.sites.let_go(name)
            return Result()  # nothing of ours (a foreign unit of that name is left alone)
        applied = Applied()
        if replica_removed:
            applied.actions.append("removed its replication configuration")
        await self.steps.run(None, plan, applied)
        if not keep_site:  # the site that read it is gone (a move's forward keeps both)
            self.mover.sites.let_go(name)
        purge = bool(deletion and deletion.purge)
        self.store.add_event(
            name,
            "stale_copy_removed" if stale else "deleted",
            (f"the copy on {self.config.node} (the service runs on {stale}): " if stale else "")
            + ("; ".join(applied.actions) or "nothing left on host"),
            {
                "actions": applied.actions,
                "purge": purge,
                "archived_to": str(applied.archived_to or ""),
            },
        )
        if not stale:
            self.store.finish_deletion(name)
        self.boots.forget(name)
        self.controllers.pbsettings.forget(name)
        if applied.archived_to is not None and self.archived is not None:
            self.archived()
        self.controllers.apps.forget(name)
        log.info("garbage-collected", service=name, actions=applied.actions)
        return Result()

    async def _observe_removal(self, name: str) -> Observed:
        """The unit file, systemd's view only if the file is ours, and the site snippet."""
        unit = self.controllers.units.observe_files(name)
        if unit.managed:
            unit = await self.controllers.units.observe(name)
        return Observed(unit=unit, site_hash=self.controllers.sites.snippet_hash(name))

    def _record_error(self, name: str, message: str) -> None:
        self.store.update_status(name, state="error", last_error=message)
        self.store.add_event(name, "error", message)


def secret_files_of(desired: Desired) -> tuple[Path, ...]:
    """The files the instance's secret settings are read from."""
    secrets = desired.settings.secrets if desired.settings is not None else ()
    return tuple(Path(s.source.file) for s in secrets if s.source.file is not None)


def soonest(*delays: float | None) -> float | None:
    """The shortest of the delays that are set (None when none is)."""
    chosen = [delay for delay in delays if delay is not None]
    return min(chosen) if chosen else None
