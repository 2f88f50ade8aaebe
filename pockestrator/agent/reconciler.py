"""``reconcile(name)``: converge one service on the host to its desired state, level-triggered.

After controller-runtime's contract: the call receives only a name, reads the desired state
(the store) and the observed state (disk, systemd, Caddy) fresh, and acts. It never asks
what event caused it, so any number of events for a name collapse into one call that does
the right thing. It is idempotent: with nothing changed it writes nothing and queues no
systemd job. It returns a ``Result`` (``requeue_after`` to look again later), raises to be
retried with backoff, or raises ``TerminalError`` when retrying cannot help (the reason is
kept in the service's status).

The order for a service that should exist: binary of the version (cache), service
directory, unit file, one daemon-reload per wave, enablement, first superuser, then run state
and Caddy site (one validation and reload per wave; the unit starts first in a wave of up to
``SMALL_WAVE`` services, Caddy goes first in a larger one), then health and status. A
version change is an upgrade: the data is backed up while stopped, and a new version that
is not healthy within the deadline is rolled back. A name with no spec but with our marker
on the host (a unit file, a site snippet, a pending deletion) is garbage-collected: unit and
site removed, data archived (or purged when the deletion asked for it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import structlog

from pockestrator.agent.health import wait_healthy
from pockestrator.agent.waves import Barrier, WaveCoordinator
from pockestrator.config import AgentConfig
from pockestrator.controllers.caddy import CaddySites, SiteOutcome, render_site
from pockestrator.controllers.files import sha256_text, write_atomic
from pockestrator.controllers.releases import ReleaseCache
from pockestrator.controllers.servicedirs import ServiceDirs
from pockestrator.controllers.systemd import (
    SystemdUnits,
    is_managed,
    render_unit,
    unit_body_hash,
)
from pockestrator.controllers.systemd.bus import NoSuchUnit, SystemdBus, UnitStatus
from pockestrator.specs.model import ServiceSpec, unit_name
from pockestrator.specs.store import ServiceRecord, ServiceStatus, Store, utc_now

log = structlog.get_logger("pockestrator.reconciler")

HEALTH_WAIT_SECONDS = 15.0
# Up to this many new or changed units in a wave, instances start before Caddy reloads.
SMALL_WAVE = 4
RUNNING_STATES = ("active", "activating", "reloading")


@dataclass(frozen=True)
class Result:
    """``requeue_after``: look at this service again after so many seconds."""

    requeue_after: float | None = None


class TerminalError(Exception):
    """Retrying will not help until something changes; recorded in status, not retried."""


@dataclass
class Actions:
    """What one reconcile did, for the log and the event history."""

    done: list[str] = field(default_factory=list)

    def add(self, action: str) -> None:
        self.done.append(action)

    def __bool__(self) -> bool:
        return bool(self.done)


class Reconciler:
    """Converges services one name at a time; global steps go through the wave coordinator."""

    def __init__(
        self,
        config: AgentConfig,
        store: Store,
        bus: SystemdBus,
        units: SystemdUnits,
        sites: CaddySites,
        releases: ReleaseCache,
        dirs: ServiceDirs,
        coordinator: WaveCoordinator,
        session: aiohttp.ClientSession,
    ) -> None:
        self.config = config
        self.store = store
        self.bus = bus
        self.units = units
        self.sites = sites
        self.releases = releases
        self.dirs = dirs
        self.coordinator = coordinator
        self.session = session
        self._reload: Barrier[None, int] = coordinator.barrier("daemon-reload", self._daemon_reload)
        self._caddy: Barrier[str | None, SiteOutcome] = coordinator.barrier(
            "caddy", self._caddy_wave
        )

    # -- wave operations ---------------------------------------------------------------

    async def _daemon_reload(self, requests: Mapping[str, None]) -> dict[str, int]:
        """One daemon-reload for the wave; each reconcile learns how large the wave is."""
        await self.bus.daemon_reload()
        log.info("daemon-reload", services=len(requests))
        return dict.fromkeys(requests, len(requests))

    async def _caddy_wave(self, requests: Mapping[str, str | None]) -> dict[str, SiteOutcome]:
        result = await self.sites.apply(requests)
        log.info(
            "caddy wave",
            services=len(requests),
            reloaded=result.reloaded,
            validations=result.validations,
            errors=list(result.errors),
        )
        return {name: result.sites.get(name, SiteOutcome(ok=True)) for name in requests}

    # -- the contract ------------------------------------------------------------------

    async def reconcile(self, name: str) -> Result:
        async with self.coordinator.participant():
            record = self.store.get_service(name)
            if record is None:
                return await self._collect_garbage(name)
            return await self._converge(record)

    # -- a service that should exist ---------------------------------------------------

    async def _converge(self, record: ServiceRecord) -> Result:
        name = record.name
        status = self.store.get_status(name) or ServiceStatus(name)
        actions = Actions()
        spec = record.spec
        target_version = spec.pocketbase_version
        if status.failed_version == target_version and status.deployed_version:
            target_version = status.deployed_version  # a rolled-back upgrade is not retried
        try:
            await self.releases.ensure(target_version)
        except Exception as exc:
            self._record_error(name, f"PocketBase {target_version} is not available: {exc}")
            raise
        deployed = status.deployed_version or _unit_version(self.units.read(name))
        before = await self._unit_status(name)
        if (
            deployed is not None
            and deployed != target_version
            and before is not None
            and before.exists
            and record.desired_state == "running"
        ):
            return await self._upgrade(record, status, deployed, target_version)

        effective = spec.model_copy(update={"pocketbase_version": target_version})
        return await self._apply(record, effective, status, actions, before)

    async def _apply(
        self,
        record: ServiceRecord,
        spec: ServiceSpec,
        status: ServiceStatus,
        actions: Actions,
        before: UnitStatus | None,
        health_deadline: float = HEALTH_WAIT_SECONDS,
    ) -> Result:
        name = record.name
        unit = unit_name(name)

        dir_changes = await self.dirs.apply(spec)
        for change in dir_changes.changes:
            actions.add(change)

        # Unit file: rewrite when it differs; tell a hand edit from a spec change.
        desired_unit = render_unit(spec, self.units.settings, record.owner)
        desired_hash = unit_body_hash(desired_unit)
        on_disk = self.units.read(name)
        unit_changed = self.units.write(name, desired_unit)
        if unit_changed:
            disk_hash = unit_body_hash(on_disk) if on_disk is not None else None
            if status.systemd_config_hash and disk_hash != status.systemd_config_hash:
                self._drift(
                    name,
                    "unit file",
                    disk_hash,
                    desired_hash,
                    "hand-edited" if on_disk is not None else "deleted",
                    "rewrote the unit file, daemon-reload",
                )
            actions.add("unit file written")
        needs_reload = unit_changed or bool(before and before.need_daemon_reload)
        if needs_reload:
            if not unit_changed and before is not None and before.need_daemon_reload:
                self._drift(
                    name,
                    "unit file",
                    desired_hash,
                    desired_hash,
                    "systemd had not reloaded the file",
                    "daemon-reload",
                )
            wave_size = await self.coordinator.park(self._reload, name, None)
            actions.add("daemon-reload")
        else:
            wave_size = 1

        # Unchanged since `before` unless a daemon-reload happened in between.
        current = await self._unit_status(name) if needs_reload or before is None else before
        if current is None:
            raise RuntimeError(f"systemd does not know {unit} after writing it")
        # Enabled exactly when it should run, so that a boot does not start a stopped one.
        enabled = current.unit_file_state in ("enabled", "enabled-runtime", "linked")
        if record.desired_state == "running" and not enabled:
            await self.bus.enable_unit_files([unit])
            actions.add("enabled")
        elif record.desired_state == "stopped" and current.unit_file_state == "enabled":
            await self.bus.disable_unit_files([unit])
            actions.add("disabled")
        if spec.superuser_email:
            await self._ensure_superuser(record, spec, actions)

        # A small wave starts its instances first, so PocketBase boots while Caddy reloads;
        # a large one reloads Caddy first, or the instances' boot would starve it of CPU.
        if wave_size <= SMALL_WAVE:
            deferred = await self._converge_run_state(
                record, status, current, unit_changed, actions
            )
            site_hash, caddy_error = await self._converge_site(record, status, actions)
        else:
            site_hash, caddy_error = await self._converge_site(record, status, actions)
            deferred = await self._converge_run_state(
                record, status, current, unit_changed, actions
            )
        if deferred:
            return Result(requeue_after=0.5)
        return await self._finish(
            record,
            spec,
            actions,
            desired_hash,
            site_hash,
            caddy_error,
            health_deadline,
            unchanged=current if not actions else None,
            status_before=status,
        )

    async def _converge_run_state(
        self,
        record: ServiceRecord,
        status: ServiceStatus,
        current: UnitStatus,
        unit_changed: bool,
        actions: Actions,
    ) -> bool:
        """Start, stop or restart the unit as the desired state asks; True: look again soon."""
        name = record.name
        unit = unit_name(name)
        if record.desired_state != "running":
            if current.active_state in RUNNING_STATES:
                await self.bus.stop_unit(unit)
                actions.add("stopped")
            return False
        if current.active_state in ("active", "reloading") and unit_changed:
            await self.bus.restart_unit(unit)
            actions.add("restarted (configuration changed)")
        elif current.active_state in ("active", "reloading", "activating"):
            if status.health_failures >= self.config.health_failures_before_restart:
                await self.bus.restart_unit(unit)
                self.store.update_status(name, health_failures=0)
                self.store.add_event(
                    name,
                    "restarted",
                    "restarted after failed health probes",
                    {"failures": status.health_failures},
                )
                actions.add("restarted (health)")
        elif current.active_state == "deactivating":
            # Someone is stopping it; starting now would cancel their job. Look again once
            # it settles (its PropertiesChanged also brings us back).
            return True
        else:
            if status.state in ("active", "deploying") and status.deployed_version:
                self._drift(
                    name,
                    "run state",
                    current.active_state,
                    "active",
                    f"unit was {current.active_state}/{current.sub_state}",
                    "started the unit",
                )
            await self.bus.reset_failed_unit(unit)
            await self.bus.start_unit(unit)
            actions.add("started")
        return False

    async def _converge_site(
        self, record: ServiceRecord, status: ServiceStatus, actions: Actions
    ) -> tuple[str, str | None]:
        """Make the Caddy snippet the rendered one (in this wave): its hash, Caddy's error."""
        name = record.name
        desired_site = render_site(record.spec, tls=self.config.caddy_tls)
        site_hash = sha256_text(desired_site)
        site_on_disk = self.sites.snippet_hash(name)
        if site_on_disk == site_hash:
            return site_hash, None
        if status.caddy_config_hash and site_on_disk != status.caddy_config_hash:
            self._drift(
                name,
                "caddy site",
                site_on_disk,
                site_hash,
                "hand-edited" if site_on_disk else "deleted",
                "rewrote the site snippet, caddy reload",
            )
        outcome = await self.coordinator.park(self._caddy, name, desired_site)
        if outcome.ok:
            actions.add("caddy site applied")
            return site_hash, None
        return site_hash, outcome.error or "Caddy refused the site"

    async def _finish(
        self,
        record: ServiceRecord,
        spec: ServiceSpec,
        actions: Actions,
        unit_hash: str,
        site_hash: str,
        caddy_error: str | None,
        health_deadline: float,
        unchanged: UnitStatus | None = None,
        status_before: ServiceStatus | None = None,
    ) -> Result:
        """Wait for health when something changed, observe, and record the status.

        ``unchanged`` is the unit's status when this reconcile did nothing: it is still
        current, and a running instance that was healthy is left to the health prober (a
        resync of many idle services costs no probe and no second D-Bus round trip).
        """
        name = record.name
        probed: bool | None = None  # None: no probe this time
        steady = (
            unchanged is not None
            and status_before is not None
            and status_before.state == "active"
            and status_before.health_ok is True
            and unchanged.active_state == "active"
        )
        if record.desired_state == "running" and not steady:
            loop = asyncio.get_running_loop()
            probed = await wait_healthy(self.session, spec.port, loop.time() + health_deadline)
        # Read again after a health wait: the unit may have moved on (a restart, a crash).
        final = unchanged if steady and unchanged is not None else await self._unit_status(name)
        assert final is not None
        healthy = probed if probed is not None else steady  # steady: as the prober last saw it
        disk_site = self.sites.snippet_hash(name)
        unit_on_disk = self.units.read(name)
        config_match = (
            unit_on_disk is not None
            and unit_body_hash(unit_on_disk) == unit_hash
            and disk_site == site_hash
            and not final.need_daemon_reload
        )
        state: str
        error: str | None
        if caddy_error:
            state, error = "error", f"Caddy refused the site: {caddy_error}"
        elif record.desired_state == "stopped":
            state, error = (
                ("inactive", None)
                if final.active_state not in RUNNING_STATES
                else ("deploying", None)
            )
        elif healthy:
            state, error = "active", None
        elif final.active_state == "failed":
            state = "error"
            error = f"unit failed: Result={final.result}, ExecMainStatus={final.exec_main_status}"
        else:
            state, error = "deploying", None
        previous = self.store.get_status(name)
        if (
            previous is not None
            and previous.failed_version
            and error is None
            and (previous.failed_version == record.spec.pocketbase_version)
        ):
            error = previous.last_error  # keep telling why the upgrade did not happen
        self.store.update_status(
            name,
            state=state,
            systemd_config_hash=unit_hash,
            caddy_config_hash=site_hash,
            config_match=config_match,
            caddy_status="configured" if disk_site == site_hash else "error",
            active_state=final.active_state,
            sub_state=final.sub_state,
            pid=final.main_pid,
            memory_bytes=final.memory_current,
            cpu_usage_nsec=final.cpu_usage_nsec,
            restarts=final.n_restarts,
            deployed_version=spec.pocketbase_version,
            observed_generation=record.generation,
            last_error=error,
            **({"last_health_check": utc_now(), "health_ok": probed} if probed is not None else {}),
        )
        if actions:
            self.store.add_event(
                name,
                "reconciled",
                "; ".join(actions.done),
                {"actions": actions.done, "state": state},
            )
            log.info("reconciled", service=name, actions=actions.done, state=state)
        if caddy_error:
            return Result(requeue_after=self.config.resync_interval)
        if state == "deploying":
            return Result(requeue_after=1.0)
        return Result()

    async def _ensure_superuser(
        self, record: ServiceRecord, spec: ServiceSpec, actions: Actions
    ) -> None:
        """Create the first superuser once, with the password the API already showed, if any.

        A password generated here (a spec file asked for a superuser without a password
        file) goes to a root-only file whose path the event names: the operator who wrote
        the spec reads it there. It never reaches a log, an event or the store.
        """
        name = record.name
        provided = self.store.peek_superuser_password(name)
        created = await self.dirs.ensure_superuser(spec, password=provided)
        if created is None:
            return
        detail: dict[str, str] = {"email": created.email}
        if provided is not None:
            self.store.take_superuser_password(name)
            detail["source"] = "the API (shown once at creation)"
        elif created.password is not None:
            path = self.generated_password_path(name)
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            path.parent.chmod(0o700)
            write_atomic(path, created.password + "\n", mode=0o600)
            detail["password_file"] = str(path)
        self.store.add_event(
            name,
            "superuser_created",
            f"first superuser {created.email} created"
            + (
                f"; its generated password is in {detail['password_file']}"
                if "password_file" in detail
                else ""
            ),
            detail,
        )
        actions.add("first superuser created")

    def generated_password_path(self, name: str) -> Path:
        """Where a superuser password generated for a spec file is left (root only)."""
        return self.config.database.parent / "superuser-passwords" / name

    # -- upgrades ----------------------------------------------------------------------

    async def _upgrade(
        self, record: ServiceRecord, status: ServiceStatus, old: str, new: str
    ) -> Result:
        name = record.name
        unit = unit_name(name)
        self.store.update_status(name, state="deploying")
        self.store.add_event(
            name,
            "upgrade_started",
            f"upgrading PocketBase {old} -> {new}",
            {"from": old, "to": new},
        )
        await self.releases.ensure(old)  # for a rollback, before anything is stopped
        await self.bus.stop_unit(unit)
        backup = await self.dirs.backup_data(name)
        actions = Actions([f"stopped for upgrade, pb_data backed up to {backup}"])
        new_spec = record.spec.model_copy(update={"pocketbase_version": new})
        # A step that raises (say the new binary's `superuser upsert`) is a failed upgrade
        # too: retried as it is, each attempt would stop the service and back it up again.
        failure: str | None = None
        try:
            result = await self._apply(
                record,
                new_spec,
                status,
                actions,
                await self._unit_status(name),
                health_deadline=self.config.upgrade_health_deadline,
            )
        except Exception as exc:
            failure, result = f"upgrading to PocketBase {new} failed: {exc}", Result()
        after = self.store.get_status(name)
        if failure is None and after is not None and after.state == "active":
            self.store.update_status(name, failed_version=None)
            self.store.add_event(
                name,
                "upgraded",
                f"PocketBase {old} -> {new}",
                {"from": old, "to": new, "backup": str(backup)},
            )
            return result

        reason = (
            f"{failure}; rolled back to {old}"
            if failure is not None
            else f"PocketBase {new} did not pass its health check within "
            f"{self.config.upgrade_health_deadline:g}s; rolled back to {old}"
        )
        log.warning("upgrade failed, rolling back", service=name, to=old)
        await self.bus.stop_unit(unit)
        displaced = await self.dirs.restore_data(name, backup)
        old_spec = record.spec.model_copy(update={"pocketbase_version": old})
        rollback = Actions([f"rolled back to {old}, pb_data restored from {backup}"])
        await self._apply(record, old_spec, status, rollback, await self._unit_status(name))
        self.store.update_status(name, failed_version=new, last_error=reason)
        self.store.add_event(
            name,
            "upgrade_rolled_back",
            reason,
            {"from": old, "to": new, "backup": str(backup), "failed_data": str(displaced)},
        )
        return Result()

    # -- garbage collection ------------------------------------------------------------

    async def _collect_garbage(self, name: str) -> Result:
        deletion = self.store.pending_deletion(name)
        unit = unit_name(name)
        unit_text = self.units.read(name)
        ours = unit_text is not None and is_managed(unit_text)
        has_site = self.sites.snippet_hash(name) is not None
        if deletion is None and not ours and not has_site:
            return Result()  # nothing of ours (a foreign unit of that name is left alone)
        actions = Actions()
        before = await self._unit_status(name) if ours else None
        if before is not None and before.active_state in RUNNING_STATES:
            await self.bus.stop_unit(unit)
            actions.add("stopped")
        if before is not None and before.unit_file_state in ("enabled", "enabled-runtime"):
            await self.bus.disable_unit_files([unit])
            actions.add("disabled")
        if ours and self.units.remove_file(name):
            actions.add("unit file removed")
            await self.coordinator.park(self._reload, name, None)
        if has_site:
            outcome = await self.coordinator.park(self._caddy, name, None)
            if not outcome.ok:
                raise RuntimeError(f"removing the Caddy site failed: {outcome.error}")
            actions.add("caddy site removed")
        purge = bool(deletion and deletion.purge)
        removed = await self.dirs.delete(name, purge=purge)
        if removed.archived_to is not None:
            actions.add(f"data archived to {removed.archived_to}")
        elif removed.purged:
            actions.add("data purged")
        self.store.add_event(
            name,
            "deleted",
            "; ".join(actions.done) or "nothing left on host",
            {
                "actions": actions.done,
                "purge": purge,
                "archived_to": str(removed.archived_to or ""),
            },
        )
        self.store.finish_deletion(name)
        log.info("garbage-collected", service=name, actions=actions.done)
        return Result()

    # -- helpers -----------------------------------------------------------------------

    async def _unit_status(self, name: str) -> UnitStatus | None:
        """systemd's view of the unit alone (``units.observe`` would also read and hash the
        file, which every caller here reads itself when it needs it)."""
        try:
            return await self.bus.unit_status(unit_name(name))
        except NoSuchUnit:
            return None

    def _drift(
        self, name: str, what: str, before: str | None, after: str | None, found: str, action: str
    ) -> None:
        self.store.add_event(
            name,
            "drift_repaired",
            f"{what}: {found}; {action}",
            {
                "what": what,
                "found": found,
                "action": action,
                "before_hash": before,
                "after_hash": after,
            },
        )
        log.warning("drift repaired", service=name, what=what, found=found, action=action)

    def _record_error(self, name: str, message: str) -> None:
        self.store.update_status(name, state="error", last_error=message)
        self.store.add_event(name, "error", message)


def _unit_version(text: str | None) -> str | None:
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith("X-Pockestrator-Version="):
            return line.split("=", 1)[1].strip() or None
    return None
