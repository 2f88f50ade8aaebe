"""After the steps: what the status says once they are done (``conclude``), from what the
host then shows (``Settled``): the state, the error, the restarts systemd made, a crash
loop's start, when to look again and when to check the certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pockestrator.agent.plan.model import (
    CRASH_LOOP,
    DEPLOYING_REQUEUE,
    RUNNING_STATES,
    Desired,
    Plan,
    Policy,
    gave_up,
)
from pockestrator.agent.plan.settings import settings_error_text
from pockestrator.controllers.systemd import START_LIMIT_BURST
from pockestrator.controllers.systemd.unit_state import UnitStatus
from pockestrator.specs.store import ServiceStatus


@dataclass(frozen=True)
class Settled:
    """What the host shows once a plan's steps are done (or, for an empty plan, before)."""

    unit: UnitStatus
    unit_file_hash: str | None
    site_hash: str | None
    environment_file_hash: str | None
    healthy: bool | None  # None: not probed this time
    checked_at: datetime | None = None  # when it was probed
    caddy_error: str | None = None
    settings_error: str | None = None  # PocketBase's settings could not be applied


def conclude(
    desired: Desired,
    plan: Plan,
    settled: Settled,
    previous: ServiceStatus | None,
) -> dict[str, Any]:
    """The status to record after ``plan``'s steps, from what the host then shows.

    A steady service (empty plan, last seen active and healthy) keeps its last health
    verdict: probing it is the health prober's job, not every resync's.
    """
    unit = settled.unit
    healthy = settled.healthy
    if healthy is None:
        healthy = previous is not None and previous.health_ok is True
    state: str
    error: str | None
    if settled.caddy_error:
        state, error = "error", f"Caddy refused the site: {settled.caddy_error}"
    elif not desired.should_run:
        state = "inactive" if unit.active_state not in RUNNING_STATES else "deploying"
        error = None
    elif desired.sleep != "awake" and unit.active_state not in RUNNING_STATES:
        # Asleep counts as active (the reference's status=active); the API shows sleeping.
        state, error = "active", None
    elif healthy and settled.settings_error:
        state, error = "error", settings_error_text(settled.settings_error)
    elif healthy:
        state, error = "active", None
    elif unit.active_state == "failed":
        state, error = "error", failure_message(unit)
    elif unit.sub_state == "auto-restart":
        state = "error"
        error = (
            f"PocketBase exited (status {unit.exec_main_status}); systemd restarts it "
            f"({unit.n_restarts or 0} restarts so far)"
        )
    elif stopped_answering(plan, unit, previous):
        state = "error"
        error = f"PocketBase (pid {unit.main_pid}) stopped answering its health check"
    else:
        state, error = "deploying", None
    if error is None and desired.version_note:
        error = desired.version_note  # the service runs; the version asked for does not
    if (
        error is None
        and previous is not None
        and previous.failed_version
        and previous.failed_version == desired.requested_version
    ):
        error = previous.last_error  # keep telling why the upgrade did not happen
    changes: dict[str, Any] = {
        **plan.status,
        "state": state,
        "config_match": (
            settled.unit_file_hash == desired.unit_hash
            and settled.environment_file_hash == desired.environment_hash
            and settled.site_hash == desired.site_hash
            and not unit.need_daemon_reload
        ),
        "caddy_status": "configured" if settled.site_hash == desired.site_hash else "error",
        "active_state": unit.active_state,
        "sub_state": unit.sub_state,
        "pid": unit.main_pid,
        "memory_bytes": unit.memory_current,
        "cpu_usage_nsec": unit.cpu_usage_nsec,
        "restarts": unit.n_restarts,
        "last_error": error,
    }
    if settled.healthy is not None:
        changes["health_ok"] = settled.healthy
        changes["last_health_check"] = settled.checked_at
    return changes


def certificate_check_due(
    https: bool,
    status: ServiceStatus | None,
    *,
    site_written: bool,
    now: datetime,
    interval: float,
) -> bool:
    """Whether to ask Caddy for the certificate it serves (``controllers.caddy.certificates``).

    Right after the site was written (a new domain, a new alias, a new mode); otherwise at
    most once per ``interval`` (the resync), and only while there is none yet (ACME takes a
    while, or fails until DNS points here) or once the recorded one is due for renewal or
    has expired. So a steady host with valid certificates makes no handshakes at all.
    """
    if not https:
        return False
    if site_written or status is None or status.certificate_checked_at is None:
        return True
    if (now - status.certificate_checked_at).total_seconds() < interval:
        return False
    before, after = status.certificate_not_before, status.certificate_not_after
    if before is None or after is None:
        return True
    return now >= after - (after - before) / 3


def failure_message(unit: UnitStatus) -> str:
    """Why a failed unit is down, in the words the status shows; a crash loop says so."""
    if gave_up(unit):
        return (
            f"{CRASH_LOOP}: PocketBase kept exiting (last exit status "
            f"{unit.exec_main_status}) and systemd stopped restarting it after "
            f"{unit.n_restarts or START_LIMIT_BURST} restarts (its start limit). "
            "Fix the cause (see its logs), then start or restart the service"
        )
    return f"unit failed: Result={unit.result}, ExecMainStatus={unit.exec_main_status}"


def restarted_by_systemd(previous: ServiceStatus | None, restarts: int | None) -> int:
    """How many times systemd restarted the process on its own since the last look.

    ``NRestarts`` counts only systemd's automatic restarts and starts again from 0 when
    the unit is started or restarted on purpose, so only a rise is a crash seen.
    """
    if previous is None or previous.restarts is None or restarts is None:
        return 0
    return max(0, restarts - previous.restarts)


def stopped_answering(plan: Plan, unit: UnitStatus, previous: ServiceStatus | None) -> bool:
    """Whether an unhealthy running unit is the very process this service last reported
    up: nothing was started, so it is no boot. As ``deploying`` the health prober would
    leave it alone and each reconcile's probe start another boot watch, so a hung instance
    was never restarted; as an error the prober counts its failures and asks for that."""
    return (
        not plan.run
        and previous is not None
        and previous.state in ("active", "error")
        and unit.main_pid is not None
        and previous.pid == unit.main_pid
    )


def crash_loop_began(previous: ServiceStatus | None, error: str | None) -> bool:
    """Whether a status with ``error`` reports a crash loop the previous one did not."""
    if error is None or not error.startswith(CRASH_LOOP):
        return False
    return previous is None or not (previous.last_error or "").startswith(CRASH_LOOP)


def requeue_after(state: str, refusal: str | None, policy: Policy) -> float | None:
    """When to look again: after a refusal (Caddy's of the site, PocketBase's of its
    settings) at the next resync, a deploying service soon."""
    if refusal:
        return policy.resync_interval
    if state == "deploying":
        return DEPLOYING_REQUEUE
    return None
