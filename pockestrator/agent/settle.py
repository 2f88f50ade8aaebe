"""After a plan's steps, what the host shows and what the status says (step 6 of a
reconcile, ``agent.reconciler``): probe ``/api/health`` (or leave a burst's boot to a
``BootWatch``), look at the unit again, converge PocketBase's own settings once the
instance is healthy, ask for the certificate Caddy serves when it is due, and record the
status (``plan.conclude``) and the events of what was done, a restart by systemd or a
crash loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import structlog

from pockestrator.agent.apply import Applied, StepRunner
from pockestrator.agent.controllers import Controllers
from pockestrator.agent.health import BootWatch, wait_healthy
from pockestrator.agent.plan.conclude import (
    Settled,
    certificate_check_due,
    conclude,
    crash_loop_began,
    requeue_after,
    restarted_by_systemd,
)
from pockestrator.agent.plan.model import Desired, Observed, Plan, Policy
from pockestrator.agent.plan.settings import plan_settings, settings_due, settings_error_text
from pockestrator.agent.sleep import SleepKeeper
from pockestrator.clock import utc_now
from pockestrator.config import AgentConfig
from pockestrator.controllers.pbsettings import SettingsError
from pockestrator.controllers.servicedirs import ServiceDirError
from pockestrator.controllers.systemd.unit_state import UnitStatus
from pockestrator.specs.model import unit_name
from pockestrator.specs.public_url import uses_https
from pockestrator.specs.store import ServiceStatus, Store

log = structlog.get_logger("pockestrator.reconciler")

CERTIFICATE_FIELDS = (
    "certificate_not_before",
    "certificate_not_after",
    "certificate_issuer",
    "certificate_checked_at",
)


@dataclass(eq=False)
class Settler:
    """Settles one service after its plan's steps; the reconciler and its upgrades share it.

    ``config`` and ``policy`` are read at each use: a SIGHUP may change them.
    """

    config: Callable[[], AgentConfig]
    policy: Callable[[], Policy]
    store: Store
    controllers: Controllers
    steps: StepRunner
    session: aiohttp.ClientSession
    boots: BootWatch
    sleep: SleepKeeper

    async def settle(
        self,
        desired: Desired,
        plan: Plan,
        observed: Observed,
        applied: Applied,
        *,
        watch: bool = False,
    ) -> float | None:
        """Probe health if the plan says so (wait for it, unless ``watch``: then a boot
        still under way is watched in the background), look at the unit again, record the
        status."""
        name = desired.name
        settled = await self.look_after(desired, plan, observed, applied, watch=watch)
        previous = self.store.get_status(name)
        settled, settings_changes = await self.configure(desired, settled, previous, applied)
        changes = conclude(desired, plan, settled, previous)
        changes.update(await self._certificate(desired, previous, applied))
        self.store.update_status(name, **changes, **settings_changes)
        self.record_actions(name, applied, changes["state"])
        if crashes := restarted_by_systemd(previous, settled.unit.n_restarts):
            unit = settled.unit
            self.store.add_event(
                name,
                "process_restarted",
                f"PocketBase exited (status {unit.exec_main_status}) and systemd restarted it"
                f" ({unit.n_restarts} restarts so far)",
                {
                    "restarts": unit.n_restarts,
                    "new_restarts": crashes,
                    "exit_status": unit.exec_main_status,
                },
            )
        if crash_loop_began(previous, changes["last_error"]):
            unit = settled.unit
            self.store.add_event(
                name,
                "crash_loop",
                changes["last_error"],
                {"restarts": unit.n_restarts, "exit_status": unit.exec_main_status},
            )
            log.warning("crash loop", service=name, exit_status=unit.exec_main_status)
        refusal = settled.caddy_error or settled.settings_error
        # A service that should not run (stopped through the API) does not sleep either.
        self.sleep.settled(
            desired.spec if desired.should_run else None, name, settled.unit.is_running
        )
        later = requeue_after(changes["state"], refusal, self.policy())
        if changes["state"] == "deploying" and self.boots.watching(name):
            later = None  # the watch queues the service when the boot is over
        return later

    async def _certificate(
        self, desired: Desired, previous: ServiceStatus | None, applied: Applied
    ) -> dict[str, object]:
        """The status fields of the certificate Caddy serves for the domain, when it is
        time to ask (``plan.certificate_check_due``); none when it is not."""
        https = uses_https(desired.spec, self.config())
        if not https:
            if previous is not None and previous.certificate_checked_at is not None:
                return dict.fromkeys(CERTIFICATE_FIELDS)
            return {}
        now = utc_now()
        due = certificate_check_due(
            https,
            previous,
            site_written=applied.site_written,
            now=now,
            interval=self.policy().resync_interval,
        )
        if not due:
            return {}
        served = await self.controllers.sites.served_certificate(desired.spec.domain)
        return {
            "certificate_not_before": served.not_before if served else None,
            "certificate_not_after": served.not_after if served else None,
            "certificate_issuer": served.issuer if served else None,
            "certificate_checked_at": now,
        }

    async def look_after(
        self,
        desired: Desired,
        plan: Plan,
        observed: Observed,
        applied: Applied,
        *,
        watch: bool = False,
    ) -> Settled:
        """The host after ``plan``: the observation itself when nothing was done or waited."""
        healthy: bool | None = None
        checked_at = None
        if plan.probe_deadline is not None and watch:
            healthy, checked_at = await self.boots.look(
                desired.name, desired.spec.port, plan.probe_deadline, started=bool(plan.run)
            )
        elif plan.probe_deadline is not None:
            loop = asyncio.get_running_loop()
            healthy = await wait_healthy(
                self.session, desired.spec.port, loop.time() + plan.probe_deadline
            )
            checked_at = utc_now()
        if not plan and healthy is None and observed.systemd is not None:
            unit: UnitStatus = observed.systemd
            unit_file_hash, site_hash = observed.unit.file_hash, observed.site_hash
            environment_hash = observed.unit.environment_file_hash
        else:
            # Read again after the steps and a health wait: the unit may have moved on.
            after = await self.controllers.units.observe(desired.name)
            if after.status is None:
                raise RuntimeError(f"systemd does not know {unit_name(desired.name)}")
            unit, unit_file_hash = after.status, after.file_hash
            environment_hash = after.environment_file_hash
            site_hash = self.controllers.sites.snippet_hash(desired.name)
        return Settled(
            unit=unit,
            unit_file_hash=unit_file_hash,
            environment_file_hash=environment_hash,
            site_hash=site_hash,
            healthy=healthy,
            checked_at=checked_at,
            caddy_error=applied.caddy_error,
        )

    async def configure(
        self,
        desired: Desired,
        settled: Settled,
        previous: ServiceStatus | None,
        applied: Applied,
    ) -> tuple[Settled, dict[str, Any]]:
        """Converge the instance's own settings, once it is up and healthy, when due.

        Its own observe, plan and apply (``plan_settings``), through PocketBase's API; the
        first plan may only make the agent's superuser, then it looks again. What fails is
        ``settled.settings_error`` (the status says why, the next resync tries again); the
        status changes it returns record what was applied, when and to which process.
        """
        wanted = desired.settings
        healthy = settled.healthy
        if healthy is None:
            healthy = previous is not None and previous.health_ok is True
        if (
            wanted is None
            or not desired.should_run
            or desired.sleep != "awake"  # its API would wake it
            or not healthy
            or settled.caddy_error
            or settled.unit.active_state != "active"
        ):
            return settled, {}
        name, pid = desired.name, settled.unit.main_pid
        control = self.controllers.pbsettings
        now = utc_now()
        try:
            secrets = control.secret_values(name, wanted, self.store.read_secret)
            fingerprint = control.fingerprint(wanted, secrets)
            if not settings_due(fingerprint, previous, pid, now, self.policy().settings_interval):
                return settled, {}
            if self.boots.after_boots(name):
                return settled, {}  # queued again when its burst's boots are over
            for _attempt in range(2):
                observed = await control.observe(desired.spec)
                plan = plan_settings(name, wanted, fingerprint, observed, previous)
                await self.steps.run(desired, plan, applied)
                if observed.signed_in:
                    break
            else:
                raise SettingsError("PocketBase refused the superuser the agent just made")
        except (SettingsError, ServiceDirError) as exc:
            log.warning("pocketbase settings not applied", service=name, error=str(exc))
            if previous is None or previous.last_error != settings_error_text(str(exc)):
                self.store.add_event(name, "settings_failed", str(exc))  # once per reason
            return replace(settled, settings_error=str(exc)), {"settings_hash": None}
        return settled, {**plan.status, "settings_checked_at": now, "settings_pid": pid}

    def record_actions(self, name: str, applied: Applied, state: str) -> None:
        if applied.actions:
            self.store.add_event(
                name,
                "reconciled",
                "; ".join(applied.actions),
                {"actions": applied.actions, "state": state},
            )
            log.info("reconciled", service=name, actions=applied.actions, state=state)
