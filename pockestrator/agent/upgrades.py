"""Upgrades and downgrades of a service's PocketBase version, and their rollback.

``plan_service`` plans one (``Plan.upgrade``): stop, back the data up, converge on the new
version, gate on health with the longer upgrade deadline. If a step fails after the backup,
or health does not come in time, the data is restored and the old version planned and
applied again; the failed version is recorded, which pins the target to the old one until
the spec names another. Each phase is an event (``upgrade_started``, ``upgraded``,
``upgrade_rolled_back``, and the same for a downgrade).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from pockestrator.agent.apply import Applied
from pockestrator.agent.plan.conclude import conclude
from pockestrator.agent.plan.model import Desired, Observed, Plan
from pockestrator.agent.plan.service import plan_service
from pockestrator.agent.settle import Settler
from pockestrator.specs.model import unit_name
from pockestrator.specs.store import ServiceRecord, ServiceStatus

log = structlog.get_logger("pockestrator.reconciler")


@dataclass(eq=False)
class Upgrades:
    """Carries out a plan that changes the running version, rolling it back if it fails.

    ``desired`` and ``observe`` are the reconciler's (a record at a version, rendered; what
    the host holds for it), so a rollback converges exactly as a reconcile would; the
    store, the controllers and the steps are the settler's.
    """

    settler: Settler
    desired: Callable[[ServiceRecord, str], Desired]
    observe: Callable[[Desired], Awaitable[Observed]]

    async def run(
        self,
        record: ServiceRecord,
        desired: Desired,
        status: ServiceStatus | None,
        observed: Observed,
        plan: Plan,
    ) -> None:
        assert plan.upgrade is not None
        name, old, new = record.name, plan.upgrade.old, plan.upgrade.new
        kind = "downgrade" if plan.upgrade.downgrade else "upgrade"
        doing = kind[:-1] + "ing"  # upgrading, downgrading
        self.settler.store.update_status(name, state="deploying")
        restoring = (
            f", restoring the data backed up before the upgrade from {new} ({plan.upgrade.restore})"
            if plan.upgrade.restore is not None
            else ""
        )
        self.settler.store.add_event(
            name,
            f"{kind}_started",
            f"{doing} PocketBase {old} -> {new}{restoring}",
            {"from": old, "to": new, "restores": str(plan.upgrade.restore or "")},
        )
        applied = Applied()
        # A step that raises after the backup (say the new binary's `superuser upsert`) is a
        # failed upgrade too: retried as it is, each attempt would stop the service and back
        # it up again. One that raises before (the old binary cannot be fetched, the stop or
        # the backup failed) is retried.
        failure: str | None = None
        try:
            await self.settler.steps.run(desired, plan, applied)
            settled = await self.settler.look_after(desired, plan, observed, applied)
        except Exception as exc:
            if applied.backup is None:
                raise
            failure = f"{doing} to PocketBase {new} failed: {exc}"
        else:
            changes = conclude(desired, plan, settled, status)
            if changes["state"] == "active":
                settled, settings_changes = await self.settler.configure(
                    desired, settled, status, applied
                )
                changes = conclude(desired, plan, settled, status)
                self.settler.store.update_status(
                    name, **changes, **settings_changes, failed_version=None
                )
                self.settler.record_actions(name, applied, changes["state"])
                self.settler.store.add_event(
                    name,
                    f"{kind}d",
                    f"PocketBase {old} -> {new}",
                    {"from": old, "to": new, "backup": str(applied.backup)},
                )
                return
        assert applied.backup is not None
        reason = (
            f"{failure}; rolled back to {old}"
            if failure is not None
            else f"PocketBase {new} did not pass its health check within "
            f"{self.settler.config().upgrade_health_deadline:g}s; rolled back to {old}"
        )
        log.warning("upgrade failed, rolling back", service=name, to=old)
        displaced = await self._roll_back(record, old, applied.backup)
        self.settler.store.update_status(name, failed_version=new, last_error=reason)
        self.settler.store.add_event(
            name,
            f"{kind}_rolled_back",
            reason,
            {"from": old, "to": new, "backup": str(applied.backup), "failed_data": str(displaced)},
        )

    async def _roll_back(self, record: ServiceRecord, old: str, backup: Path) -> Path:
        """Stop the new version, put the backed-up data back and converge on ``old``.

        Returns where the new version's data went (kept beside the backups).
        """
        name = record.name
        await self.settler.controllers.bus.stop_unit(unit_name(name))
        displaced = await self.settler.controllers.dirs.restore_data(name, backup)
        desired = self.desired(record, old)
        observed = await self.observe(desired)
        plan = plan_service(
            desired,
            self.settler.store.get_status(name),
            observed,
            self.settler.policy(),
            rolling_back=True,
        )
        applied = Applied([f"rolled back to {old}, pb_data restored from {backup}"])
        await self.settler.steps.run(desired, plan, applied)
        settled = await self.settler.look_after(desired, plan, observed, applied)
        changes = conclude(desired, plan, settled, self.settler.store.get_status(name))
        self.settler.store.update_status(name, **changes)
        self.settler.record_actions(name, applied, changes["state"])
        return displaced
