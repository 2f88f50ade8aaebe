"""Carrying out a plan: each step of ``agent.plan`` becomes one call to a controller.

``StepRunner.run`` takes a ``Plan`` and does exactly its steps, in its order: the drift
events first (what was found, before it is repaired), then ``prepare``, then ``run`` and
``route`` in the order the daemon-reload wave's size gives, then ``finish``. The global
steps (daemon-reload, the Caddy site) park at the wave coordinator's barriers, so a burst
of reconciles shares one daemon-reload and one Caddy validation and reload.

What the steps did is collected in an ``Applied`` that the caller owns, so that after a
step raises, the caller still knows how far the plan got (an upgrade whose data was backed
up can be rolled back; one that failed before cannot and is retried).

Deciding what to do is ``agent.plan``'s job; this module never looks at the host to decide
anything, and never records status: the reconciler does, from a fresh observation.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from pockestrator.agent import steps
from pockestrator.agent.parts import Part, Parts
from pockestrator.agent.plan.model import Desired, Plan, start_before_route
from pockestrator.agent.waves import Barrier, WaveCoordinator
from pockestrator.controllers.caddy import SiteOutcome
from pockestrator.controllers.pbsettings import SettingsError, differing, patch_for
from pockestrator.database import DatabaseFull
from pockestrator.files import write_atomic
from pockestrator.specs.model import unit_name
from pockestrator.telemetry import mark_step, snake_case

log = structlog.get_logger("pockestrator.reconciler")


@dataclass
class Applied:
    """What a plan's steps did so far: lines for the event log, and what they produced."""

    actions: list[str] = field(default_factory=list)
    wave_size: int = 1
    caddy_error: str | None = None
    site_written: bool = False
    backup: Path | None = None
    archived_to: Path | None = None
    # The plan's EnableUnit is sent with its StartUnit's first call (``_start``).
    enable_with_start: bool = False

    def add(self, action: str) -> None:
        self.actions.append(action)


class StepRunner(Part):
    """Does a plan's steps through the controllers; global steps go through the waves."""

    def __init__(self, parts: Parts, coordinator: WaveCoordinator) -> None:
        super().__init__(parts)
        self.coordinator = coordinator
        # Registration order is firing order: daemon-reload before Caddy.
        # The units wave: its reconciles learn its size; one Reload() for all of them when
        # any needs it (a changed or removed unit file; a new one is loaded on first use).
        self._reload: Barrier[bool, int] = coordinator.barrier("daemon-reload", self._daemon_reload)
        self.reloads = 0  # Reload() calls made (for tests and benchmarks)
        self._caddy: Barrier[str | None, SiteOutcome] = coordinator.barrier(
            "caddy", self._caddy_wave
        )

    # -- wave operations ---------------------------------------------------------------

    async def _daemon_reload(self, requests: Mapping[str, bool]) -> dict[str, int]:
        """At most one daemon-reload for the wave; each reconcile learns its size."""
        self.metrics.wave_size.labels("daemon-reload").observe(len(requests))
        if not any(requests.values()):
            return dict.fromkeys(requests, len(requests))
        started = time.monotonic()
        with self.metrics.daemon_reload_seconds.time():
            await self.controllers.bus.daemon_reload()
        self.reloads += 1
        log.info(
            "daemon-reload",
            services=len(requests),
            seconds=round(time.monotonic() - started, 3),
        )
        return dict.fromkeys(requests, len(requests))

    async def _caddy_wave(self, requests: Mapping[str, str | None]) -> dict[str, SiteOutcome]:
        with self.metrics.caddy_apply_seconds.time():
            result = await self.controllers.sites.apply(requests)
        self.metrics.wave_size.labels("caddy").observe(len(requests))
        log.info(
            "caddy wave",
            services=len(requests),
            validations=result.validations,
            reloaded=result.reloaded,
            refused=sorted(result.errors),
            load_seconds=round(result.reload_seconds, 3),
            check_seconds=round(result.validate_seconds, 3),
        )
        return result.sites

    # -- running a plan ----------------------------------------------------------------

    async def run(self, desired: Desired | None, plan: Plan, applied: Applied) -> None:
        """Record the plan's drift, then do its steps in order; raises when a step fails."""
        name = plan.name
        for drift in plan.drift:
            self.metrics.drift_repairs.labels(drift.what.replace(" ", "_")).inc()
            # On a full disk the event is lost but the log line below says the same: the
            # repair must not wait for space (the status write after it fails, and retries).
            with contextlib.suppress(DatabaseFull):
                self.store.add_event(name, "drift_repaired", drift.message(), drift.details())
            log.warning(
                "drift repaired",
                service=name,
                what=drift.what,
                found=drift.found,
                action=drift.action,
            )
        applied.enable_with_start = enables_then_starts(plan)
        try:
            for step in plan.prepare:
                await self._do(name, desired, step, applied)
            if plan.run and plan.route and start_before_route(applied.wave_size, plan.run):
                await self._start_while_routing(name, desired, plan, applied)
            else:
                for step in (*plan.route, *plan.run):
                    await self._do(name, desired, step, applied)
            for step in plan.finish:
                await self._do(name, desired, step, applied)
        finally:
            # A new unit file's rename, made durable once its instance has started; a
            # failure to sync does not hide the step's own error (tried again next time).
            try:
                await self.controllers.units.sync_new(name)
            except OSError as exc:
                log.warning("unit folder not synced", service=name, error=str(exc))

    async def _start_while_routing(
        self, name: str, desired: Desired | None, plan: Plan, applied: Applied
    ) -> None:
        """The run group and the route group at once: the instance boots while its site
        waits at (and goes through) the Caddy wave. Both are carried out to their end;
        the first failure, the run group's before the route's, is raised."""

        async def group(group_steps: tuple[steps.Step, ...]) -> None:
            for step in group_steps:
                await self._do(name, desired, step, applied)

        outcomes = await asyncio.gather(group(plan.run), group(plan.route), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _do(
        self, name: str, desired: Desired | None, step: steps.Step, applied: Applied
    ) -> None:
        try:
            await self._do_step(name, desired, step, applied)
        except Exception as exc:
            mark_step(exc, snake_case(type(step).__name__))
            raise

    async def _do_step(
        self, name: str, desired: Desired | None, step: steps.Step, applied: Applied
    ) -> None:
        unit = unit_name(name)
        match step:
            case steps.EnsureRelease(version=version):
                await self.controllers.releases.ensure(version)
            case steps.MigrateFolder(superusers=superusers):
                for change in await self.controllers.dirs.migrate_legacy(name):
                    applied.add(change)
                if superusers:
                    self._add_superusers(name, superusers)
            case steps.WriteEnvironment(text=text):
                if self.controllers.units.write_environment(name, text):
                    applied.add(step.describe())
            case steps.WriteUnit(text=text):
                if self.controllers.units.write(name, text):
                    applied.add(step.describe())
            case steps.DaemonReload():
                applied.wave_size = await self.coordinator.park(self._reload, name, True)
                applied.add(step.describe())
            case steps.LoadNewUnit():
                applied.wave_size = await self.coordinator.park(self._reload, name, False)
            case steps.EnableUnit():
                if not applied.enable_with_start:
                    await self.controllers.bus.enable_unit_files([unit])
                    applied.add(step.describe())
            case steps.DisableUnit():
                await self.controllers.bus.disable_unit_files([unit])
                applied.add(step.describe())
            case steps.CreateSuperuser(email=email):
                assert desired is not None
                await self._create_superuser(desired, email)
                applied.add(step.describe())
            case steps.CreateAgentSuperuser():
                assert desired is not None
                await self.controllers.pbsettings.create_login(desired.spec)
                applied.add(step.describe())
            case steps.ApplySettings(fields=fields):
                assert desired is not None
                await self._apply_settings(desired, fields)
                applied.add(step.describe())
            case steps.StartUnit(reset_failed=reset_failed):
                await self._start(unit, reset_failed, applied)
                applied.add(step.describe())
            case steps.StopUnit():
                await self.controllers.bus.stop_unit(unit)
                applied.add(step.describe())
            case steps.RestartUnit(reason=reason, failures=failures):
                await self.controllers.bus.restart_unit(unit)
                if reason == "health":
                    self.store.update_status(name, health_failures=0)
                    self.store.add_event(
                        name,
                        "restarted",
                        "restarted after failed health probes",
                        {"failures": failures},
                    )
                applied.add(step.describe())
            case steps.WriteSite(text=text):
                outcome = await self.coordinator.park(self._caddy, name, text)
                if outcome.ok:
                    applied.site_written = True
                    applied.add(step.describe())
                else:
                    applied.caddy_error = outcome.error or "Caddy refused the site"
            case steps.RemoveSite():
                outcome = await self.coordinator.park(self._caddy, name, None)
                if not outcome.ok:
                    raise RuntimeError(f"removing the Caddy site failed: {outcome.error}")
                applied.add(step.describe())
            case steps.RemoveUnitFile():
                if self.controllers.units.remove_file(name):
                    applied.add(step.describe())
            case steps.BackupData(version=version):
                applied.backup = await self.controllers.dirs.backup_data(name, version)
                applied.add(f"pb_data backed up to {applied.backup}")
            case steps.RestoreData(backup=backup):
                displaced = await self.controllers.dirs.restore_data(name, backup)
                applied.add(
                    f"pb_data restored from {backup}; the data it replaced is in {displaced}"
                )
            case steps.RemoveData(purge=purge):
                removed = await self.controllers.dirs.delete(name, purge=purge)
                if removed.archived_to is not None:
                    applied.archived_to = removed.archived_to
                    applied.add(f"data archived to {removed.archived_to}")
                elif removed.purged:
                    applied.add("data purged")
            case _:
                raise TypeError(f"no way to carry out {step!r}")

    async def _start(self, unit: str, reset_failed: bool, applied: Applied) -> None:
        """Start ``unit`` (clearing a failed state first), and enable it in the same
        round trip when the plan asked for both: the enable's call goes out first on the
        one connection and systemd handles its calls in order, so the unit is loaded,
        and its ``UnitFileState`` read, after the enable as before; the start no longer
        waits for the enable's answer to be sent."""
        bus = self.controllers.bus
        first = bus.reset_failed_unit(unit) if reset_failed else bus.start_unit(unit)
        if applied.enable_with_start:
            applied.enable_with_start = False
            outcomes = await asyncio.gather(
                bus.enable_unit_files([unit]), first, return_exceptions=True
            )
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome
            applied.add(steps.EnableUnit().describe())
        else:
            await first
        if reset_failed:
            await bus.start_unit(unit)

    # -- PocketBase's own settings -----------------------------------------------------

    async def _apply_settings(self, desired: Desired, fields: tuple[str, ...]) -> None:
        """Send ``fields`` (and their sections' secrets), then read back that PocketBase
        kept them: an owner's hook may refuse or change a setting silently."""
        wanted = desired.settings
        assert wanted is not None
        control = self.controllers.pbsettings
        secrets = control.secret_values(desired.name, wanted, self.store.read_secret)
        after = await control.apply(desired.spec, patch_for(wanted, fields, secrets))
        lost = [field for field in differing(wanted, after) if field in fields]
        if lost:
            raise SettingsError(
                f"PocketBase did not keep {', '.join(lost)} (a hook of the instance may "
                "change its settings)"
            )

    # -- the first superuser -----------------------------------------------------------

    async def _create_superuser(self, desired: Desired, email: str) -> None:
        """Create the first superuser, with the password the API already showed, if any.

        A password generated here (a spec file asked for a superuser without a password
        file) goes to a root-only file whose path the event names: the operator who wrote
        the spec reads it there. It never reaches a log, an event or the store. Once made,
        the e-mail joins the status's ``superusers``, so it is made once.
        """
        name = desired.name
        provided = self.store.peek_superuser_password(name)
        created = await self.controllers.dirs.ensure_superuser(desired.spec, email, provided)
        self._add_superusers(name, (created.email,))
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

    def _add_superusers(self, name: str, emails: tuple[str, ...]) -> None:
        status = self.store.get_status(name)
        known = status.superusers if status is not None else ()
        self.store.update_status(name, superusers=tuple(sorted({*known, *emails})))

    def generated_password_path(self, name: str) -> Path:
        """Where a superuser password generated for a spec file is left (root only)."""
        return self.generated_passwords_dir() / name

    def generated_passwords_dir(self) -> Path:
        return self.config.database.parent / "superuser-passwords"


def enables_then_starts(plan: Plan) -> bool:
    """Whether the plan enables its unit and its run group begins with the start."""
    enables = any(isinstance(step, steps.EnableUnit) for step in plan.prepare)
    return enables and bool(plan.run) and isinstance(plan.run[0], steps.StartUnit)
