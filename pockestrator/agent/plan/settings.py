"""PocketBase's own settings, once the instance is up: whether to read them now
(``settings_due``) and what to send (``plan_settings``), as a plan of its own.
"""

from __future__ import annotations

from datetime import datetime

from pockestrator.agent.plan.model import Plan
from pockestrator.agent.steps import (
    ApplySettings,
    CreateAgentSuperuser,
    Drift,
)
from pockestrator.controllers.pbsettings import DesiredSettings, SettingsObservation, differing
from pockestrator.specs.store import ServiceStatus


def settings_error_text(reason: str) -> str:
    """The status's ``last_error`` when an instance's settings could not be applied."""
    return f"PocketBase settings not applied: {reason}"


def settings_due(
    fingerprint: str,
    status: ServiceStatus | None,
    pid: int | None,
    now: datetime,
    interval: float,
) -> bool:
    """Whether to read an instance's settings now.

    At once when the desired settings are not the ones last applied (a new spec, a new
    secret, never applied) and when the process is not the one last read (a restart may
    have run the owner's migrations, a rollback brought old data back); otherwise once
    ``interval`` has passed since the last read: changes made in the admin UI send no
    signal, so they are found by looking, at the resyncs that come after it.
    """
    if status is None or status.settings_hash != fingerprint:
        return True
    if pid is None or status.settings_pid != pid:
        return True
    checked = status.settings_checked_at
    return checked is None or (now - checked).total_seconds() >= interval


def plan_settings(
    name: str,
    desired: DesiredSettings,
    fingerprint: str,
    observed: SettingsObservation,
    status: ServiceStatus | None,
) -> Plan:
    """What to do to an instance's settings; the status records ``fingerprint`` after.

    Without a login the agent makes its superuser first (and looks again). Desired
    settings other than the last applied ones are all sent, unless PocketBase has them
    already and no secret goes with them. When they are the last applied ones, what
    PocketBase shows differently was changed outside the agent: drift, repaired by sending
    those fields again (with their sections' secrets). Secrets themselves cannot be
    compared: PocketBase never shows them.
    """
    if not observed.signed_in:
        return Plan(name=name, prepare=(CreateAgentSuperuser(),))
    recorded = {"settings_hash": fingerprint}
    found = differing(desired, observed.values)
    applied_before = status is not None and status.settings_hash == fingerprint
    if not applied_before:
        if not found and not desired.secrets:
            return Plan(name=name, status=recorded)
        return Plan(name=name, prepare=(ApplySettings(desired.fields),), status=recorded)
    if not found:
        return Plan(name=name, status=recorded)
    drift = Drift(
        "pocketbase settings",
        f"{', '.join(found)} changed outside the agent",
        "restored through PocketBase's API",
        None,
        None,
    )
    return Plan(
        name=name, prepare=(ApplySettings(found, repair=True),), drift=(drift,), status=recorded
    )
