"""An instance's settings check without a look at the host, when nothing else is due.

Every ``settings_check_interval`` each instance's own settings are read through its API
(``plan.settings_due``): the admin UI's changes send no signal. That check was a full
reconcile (the unit's every property from systemd, the unit, environment and site files
hashed, the folders, the plan), 4.7 ms of CPU on the test bed, 500 of them every 5 minutes
with 500 services. When a resync round queued a name for that check alone
(``observe_round``: its look unchanged since the last quiet reconcile, no other reason
in its status) the host's part is taken from that reconcile instead: its ``stat``
calls are made again and its unit's states asked in systemd's short answer
(``ListUnitsByNames``), and the rest of its unit's answer is reused. Only the settings
are observed, planned and applied (``Settler.configure``), and only their status fields
written. Anything else than a steady, healthy, running service that does not sleep goes
through the full reconcile, as before.
"""

from __future__ import annotations

from dataclasses import dataclass

from pockestrator.agent.apply import Applied
from pockestrator.agent.observe_round import Look, ResyncLooks, unit_states
from pockestrator.agent.plan.conclude import Settled, requeue_after
from pockestrator.agent.plan.model import Desired
from pockestrator.agent.plan.settings import settings_error_text
from pockestrator.agent.settle import Settler
from pockestrator.controllers.systemd.cgroups import process_cgroup
from pockestrator.specs.model import unit_name
from pockestrator.specs.store import ServiceStatus, Store


@dataclass(frozen=True)
class Checked:
    """A settings check that was made; ``later``: look again after so many seconds."""

    later: float | None


def runs_in(pid: int, control_group: str | None) -> bool:
    """Whether process ``pid`` exists and is in the unit's cgroup. A restart since the
    look leaves the recorded pid gone, or, if the number was handed out again, in
    another cgroup (a path that merely ends the same, a user manager's
    ``system.slice/…``, is another one): either way the look is stale."""
    return control_group is not None and process_cgroup(pid) == control_group


def steady(desired: Desired, status: ServiceStatus | None, look: Look) -> bool:
    """Whether the host's part of a reconcile of ``desired`` may be taken from ``look``:
    the last reconcile found it running, healthy and settled on this very spec."""
    unit = look.status
    return (
        unit is not None
        and unit.is_running
        and status is not None
        and status.state == "active"
        and not status.last_error
        and status.health_ok is True
        # The verdict is of the process it was recorded with (plan.service's steady).
        and unit.main_pid is not None
        and status.pid == unit.main_pid
        and runs_in(unit.main_pid, unit.control_group)
        and status.observed_generation == desired.generation
        and desired.should_run
        and desired.spec.sleep_seconds is None
        and desired.version_note is None
    )


async def check_settings(
    settler: Settler, looks: ResyncLooks, store: Store, desired: Desired, look: Look
) -> Checked | None:
    """The settings check of a steady service (None: it is not, or its files moved since
    the round: a full reconcile is due)."""
    name = desired.name
    status = store.get_status(name)
    if steady(desired, status, look):
        # The unit's states now (a signal since the round may have queued the name too),
        # in systemd's short answer: the same as the look's, or a full reconcile is due.
        (row,) = await settler.controllers.bus.list_units_by_names([unit_name(name)])
        if unit_states(row) == look.unit and looks.settings_checked(name, look):
            return await _check(settler, looks, store, desired, look, status)
    looks.forget(name)
    return None


async def _check(
    settler: Settler,
    looks: ResyncLooks,
    store: Store,
    desired: Desired,
    look: Look,
    status: ServiceStatus | None,
) -> Checked:
    name = desired.name
    assert look.status is not None
    settled = Settled(
        unit=look.status,
        unit_file_hash=None,
        site_hash=None,
        environment_file_hash=None,
        healthy=None,
    )
    applied = Applied()
    settled, changes = await settler.configure(desired, settled, status, applied)
    state = "active"
    if settled.settings_error:
        state = "error"
        changes.update(state=state, last_error=settings_error_text(settled.settings_error))
        looks.forget(name)  # the next round's full reconcile tells the rest
    if changes:
        store.update_status(name, **changes)
    settler.record_actions(name, applied, state)
    return Checked(requeue_after(state, settled.settings_error, settler.policy()))
