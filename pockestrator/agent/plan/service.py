"""Deciding one service: ``plan_service`` (converge on the desired service, or upgrade to
its version first), ``plan_removal`` (a name with no spec any more) and ``plan_catch_all``
(Caddy's site for unknown domains). Pure: from values in, a ``Plan`` out.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pockestrator.agent.plan.model import (
    DEACTIVATING_REQUEUE,
    ENABLED_STATES,
    JOB_REQUEUE,
    RUNNING_STATES,
    Desired,
    DowngradeWithoutBackup,
    Observed,
    Plan,
    Policy,
    Upgrade,
    gave_up,
)
from pockestrator.agent.plan.versions import deployed_version, newest_backups
from pockestrator.agent.steps import (
    BackupData,
    CreateSuperuser,
    DaemonReload,
    DisableUnit,
    Drift,
    EnableUnit,
    EnsureRelease,
    LoadNewUnit,
    MigrateFolder,
    RemoveData,
    RemoveSite,
    RemoveUnitFile,
    RestartUnit,
    RestoreData,
    StartUnit,
    Step,
    StopUnit,
    WriteEnvironment,
    WriteSite,
    WriteUnit,
)
from pockestrator.controllers.caddy import CATCH_ALL
from pockestrator.controllers.systemd.unit_state import UnitStatus
from pockestrator.files import sha256_text
from pockestrator.specs.grammar import version_key
from pockestrator.specs.store import Deletion, ServiceStatus


def plan_service(
    desired: Desired,
    status: ServiceStatus | None,
    observed: Observed,
    policy: Policy,
    *,
    rolling_back: bool = False,
) -> Plan:
    """Everything that must change for ``desired`` to hold on the host.

    ``rolling_back``: the reconciler has just stopped the unit and put the old data back
    after a failed upgrade; the files the attempt wrote and the stop are the agent's own
    doing, so starting the old version again reports no drift.
    """
    previous = status or ServiceStatus(desired.name)
    running = deployed_version(status, observed)
    unit = observed.systemd
    if (
        not rolling_back
        and running is not None
        and running != desired.spec.pocketbase_version
        and unit is not None
        and unit.exists
        and desired.should_run
    ):
        return _upgrade(desired, previous, observed, policy, running)
    plan = _converge(desired, previous, observed, policy, stopped_by_agent=rolling_back)
    if rolling_back:
        # What differs now is what the failed attempt itself wrote: nothing to report.
        return replace(plan, drift=())
    return plan


def _upgrade(
    desired: Desired, status: ServiceStatus, observed: Observed, policy: Policy, old: str
) -> Plan:
    """Stop, back the data up (named by ``old``), converge on the new version. A downgrade
    also restores the backup taken before the upgrade from the version it goes back to."""
    new = desired.spec.pocketbase_version
    restore: Path | None = None
    if version_key(new) < version_key(old):
        backup = newest_backups(observed.dirs.backups if observed.dirs else ()).get(new)
        if backup is None:
            raise DowngradeWithoutBackup(f"no backup of PocketBase {new}'s data to restore")
        restore = backup.path
    converge = _converge(desired, status, observed, policy, stopped_by_agent=True)
    restored = (RestoreData(restore),) if restore is not None else ()
    return Plan(
        name=desired.name,
        prepare=(
            EnsureRelease(old),
            StopUnit("upgrade"),
            BackupData(old),
            *restored,
            *converge.prepare,
        ),
        run=converge.run,
        route=converge.route,
        drift=converge.drift,
        status=converge.status,
        probe_deadline=policy.upgrade_health_deadline,
        upgrade=Upgrade(old=old, new=new, restore=restore),
    )


def _converge(
    desired: Desired,
    status: ServiceStatus,
    observed: Observed,
    policy: Policy,
    *,
    stopped_by_agent: bool,
) -> Plan:
    drift: list[Drift] = []
    prepare: list[Step] = []
    dirs = observed.dirs
    if dirs is not None and dirs.legacy:
        prepare.append(MigrateFolder(dirs.legacy_superusers))

    unit_file = observed.unit
    environment_changed = unit_file.environment_file_hash != desired.environment_hash
    if environment_changed:
        prepare.append(WriteEnvironment(desired.environment_text))
        recorded = unit_file.environment_hash  # what the unit on disk was rendered with
        if status.systemd_config_hash and unit_file.environment_file_hash != recorded:
            drift.append(
                Drift(
                    "environment file",
                    "hand-edited" if unit_file.environment_file_hash else "deleted",
                    "rewrote the environment file",
                    unit_file.environment_file_hash,
                    desired.environment_hash,
                )
            )
    unit_changed = unit_file.file_hash != desired.unit_hash
    if unit_changed:
        prepare.append(WriteUnit(desired.unit_text))
        if status.systemd_config_hash and unit_file.file_hash != status.systemd_config_hash:
            drift.append(
                Drift(
                    "unit file",
                    "hand-edited" if unit_file.file_exists else "deleted",
                    "rewrote the unit file, daemon-reload",
                    unit_file.file_hash,
                    desired.unit_hash,
                )
            )
    unit = observed.systemd
    stale = unit is not None and unit.need_daemon_reload
    if unit_changed or stale:
        if not unit_changed:
            drift.append(
                Drift(
                    "unit file",
                    "systemd had not reloaded the file",
                    "daemon-reload",
                    desired.unit_hash,
                    desired.unit_hash,
                )
            )
        # A name systemd has no unit for needs no reload: it loads the file when asked.
        never_loaded = unit is None or unit.load_state == "not-found"
        prepare.append(LoadNewUnit() if never_loaded and not stale else DaemonReload())

    enabled = unit is not None and unit.unit_file_state in ENABLED_STATES
    # Before the start, not after it: a unit enabled after its start still read
    # UnitFileState=disabled to the next reconcile on the test bed (systemd keeps what it
    # read when it loaded the unit), which then neither saw it enabled nor disabled it.
    if desired.should_run and not enabled:
        prepare.append(EnableUnit())
    elif not desired.should_run and unit is not None and unit.unit_file_state == "enabled":
        prepare.append(DisableUnit())

    email = desired.spec.superuser_email
    created = {*status.superusers, *(dirs.legacy_superusers if dirs is not None else ())}
    if email is not None and email not in created:
        prepare.append(CreateSuperuser(email))

    run, defer, run_drift = _run_steps(
        desired,
        status,
        unit,
        policy,
        unit_changed or environment_changed,
        stopped_by_agent,
    )
    drift += run_drift
    route, route_drift = _route_steps(desired, status, observed.site_hash)
    drift += route_drift

    steps_planned = bool(prepare or run or route)
    # The last health verdict is of the process it was recorded with: one started since
    # (a wake, a control restart, systemd's own restart) may still be booting, so it is
    # probed before anything (its settings) talks to it.
    steady = (
        not steps_planned
        and status.state == "active"
        and status.health_ok is True
        and unit is not None
        and unit.active_state == "active"
        and unit.main_pid is not None
        and status.pid == unit.main_pid
    )
    return Plan(
        name=desired.name,
        prepare=tuple(prepare),
        run=run,
        route=route,
        drift=tuple(drift),
        status={
            "systemd_config_hash": desired.unit_hash,
            "caddy_config_hash": desired.site_hash,
            "deployed_version": desired.spec.pocketbase_version,
            "observed_generation": desired.generation,
        },
        probe_deadline=(
            policy.health_deadline
            if desired.should_run and not steady and desired.sleep == "awake"
            else None
        ),
        defer=defer,
    )


def _run_steps(
    desired: Desired,
    status: ServiceStatus,
    unit: UnitStatus | None,
    policy: Policy,
    config_changed: bool,
    stopped_by_agent: bool,
) -> tuple[tuple[Step, ...], float | None, list[Drift]]:
    """Start, stop or restart as the desired state asks: (steps, defer, drift)."""
    if stopped_by_agent or unit is None:
        # The plan itself stops the unit first (an upgrade) or the reconciler just did (a
        # rollback): starting it again repairs nothing. A unit systemd does not know at
        # all has never run here.
        start = StartUnit(reset_failed=unit is not None and unit.exists)
        return ((start,) if desired.should_run else ()), None, []
    if unit.job_pending:
        # Someone's job (an operator's restart, in its stop half) is under way: what the
        # unit shows now is not where it is going. Its end signals us back.
        return (), JOB_REQUEUE, []
    active = unit.active_state
    if not desired.should_run:
        return ((StopUnit(),) if active in RUNNING_STATES else ()), None, []
    if desired.sleep != "awake":
        # Idle: stop it (drowsy); asleep: a request wakes it, never a repair (agent.sleep).
        drowsy = desired.sleep == "drowsy" and active in RUNNING_STATES
        return ((StopUnit("sleep"),) if drowsy else ()), None, []
    if active in ("active", "reloading") and config_changed:
        return (RestartUnit("configuration changed"),), None, []
    if active in RUNNING_STATES:
        if status.health_failures >= policy.health_failures_before_restart:
            return (RestartUnit("health", status.health_failures),), None, []
        return (), None, []
    if active == "deactivating":
        # Someone is stopping it; starting now would cancel their job. Look again once it
        # settles (its PropertiesChanged also brings us back).
        return (), DEACTIVATING_REQUEUE, []
    if gave_up(unit) and not config_changed:
        # A crash loop: systemd gave up after StartLimitBurst starts. Starting it again
        # (reset-failed clears the limit) would defeat that brake; the status says why it
        # is down until the spec changes or an operator starts or restarts it.
        return (), None, []
    drift = []
    if status.state in ("active", "deploying") and status.deployed_version:
        drift.append(
            Drift(
                "run state",
                f"unit was {unit.active_state}/{unit.sub_state}",
                "started the unit",
                unit.active_state,
                "active",
            )
        )
    return (StartUnit(reset_failed=unit.exists),), None, drift


def _route_steps(
    desired: Desired, status: ServiceStatus, site_hash: str | None
) -> tuple[tuple[Step, ...], list[Drift]]:
    """The site snippet, rewritten when it is not the rendered one."""
    if site_hash == desired.site_hash:
        return (), []
    drift = []
    if status.caddy_config_hash and site_hash != status.caddy_config_hash:
        drift.append(
            Drift(
                "caddy site",
                "hand-edited" if site_hash else "deleted",
                "rewrote the site snippet, caddy reload",
                site_hash,
                desired.site_hash,
            )
        )
    return (WriteSite(desired.site_text),), drift


def plan_removal(name: str, deletion: Deletion | None, observed: Observed) -> Plan:
    """Take a service off the host: what of ours is there goes; a foreign unit stays.

    Our unit is the one whose file carries our marker; without it, a unit of that name
    belongs to someone else and is neither stopped nor disabled. The data is archived
    unless the deletion asked for a purge. Nothing at all to do (no tombstone, nothing of
    ours) is an empty plan.
    """
    ours = observed.unit.file_exists and observed.unit.managed
    has_site = observed.site_hash is not None
    has_environment = observed.unit.environment_file_hash is not None
    if deletion is None and not ours and not has_site and not has_environment:
        return Plan(name=name, removal=True)
    prepare: list[Step] = []
    unit = observed.systemd if ours else None
    if unit is not None and unit.active_state in RUNNING_STATES:
        prepare.append(StopUnit("removal"))
    if unit is not None and unit.unit_file_state in ("enabled", "enabled-runtime"):
        prepare.append(DisableUnit())
    if ours:
        prepare += [RemoveUnitFile(), DaemonReload()]
    if observed.unit.environment_file_hash is not None:
        prepare.append(WriteEnvironment(None))
    return Plan(
        name=name,
        prepare=tuple(prepare),
        route=(RemoveSite(),) if has_site else (),
        finish=(RemoveData(purge=bool(deletion and deletion.purge)),),
        removal=True,
    )


def plan_catch_all(text: str | None, on_disk: str | None) -> Plan:
    """The catch-all site (``controllers.caddy.render_catch_all``): written when the file's
    hash is not its render's, removed when it should not be there (``text`` None)."""
    if text is None:
        return Plan(name=CATCH_ALL, route=(RemoveSite(),) if on_disk is not None else ())
    if on_disk == sha256_text(text):
        return Plan(name=CATCH_ALL)
    return Plan(name=CATCH_ALL, route=(WriteSite(text),))
