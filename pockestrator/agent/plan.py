"""The decision of one reconcile, as a value: what should change on the host, and why.

After kubelet's ``computePodActions``: from the desired service (its spec, rendered), its last
status and a fresh observation of the host, ``plan_service`` returns a ``Plan``: the steps
that converge the host, the drift it found (what differs from what the agent itself last
wrote), and what the status will say once the steps are done. ``plan_removal`` does the same
for a name that has no spec any more. Nothing here does I/O; ``agent.reconciler`` observes,
calls these, and carries the steps out (``agent.apply``). So every decision the reconciler
makes has a row in ``tests/unit/test_plan.py`` that runs in milliseconds, and a plan can be
logged, compared and tested before anything changes (Terraform's plan and apply).

A plan's steps come in four groups. ``prepare`` (folder, binary, unit file, daemon-reload,
enablement, first superuser) always runs first; ``run`` (start, stop, restart) and ``route``
(the Caddy site) follow in the order the daemon-reload wave's size and the run steps give
(``start_before_route``): instances that only start do so before Caddy loads, in a
wave of any size, so they boot meanwhile; restarts do too in a small wave, and in a large
one wait for Caddy to have the new site. ``finish`` (a removal's data) comes last.

An upgrade is a plan too: it stops the service itself (no drift: the stop is its own),
backs the data up, converges on the new version and gates on health with the longer
upgrade deadline. If that fails, the reconciler restores the data and plans again with the
failed version recorded, which pins the target to the version that ran before.

PocketBase's own settings are planned once the instance is healthy, by ``plan_settings``
(with ``settings_due`` deciding whether to look at all): they live behind the instance's
API, so they can be observed only once it answers, and their drift is found only by
looking, at most every ``settings_interval``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pockestrator.agent.steps import (
    ApplySettings,
    BackupData,
    CreateAgentSuperuser,
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
from pockestrator.controllers.pbsettings import DesiredSettings, SettingsObservation, differing
from pockestrator.controllers.servicedirs import DataBackup, ServiceDirState
from pockestrator.controllers.systemd import START_LIMIT_BURST, UnitObservation
from pockestrator.controllers.systemd.bus import UnitStatus
from pockestrator.files import sha256_text
from pockestrator.specs.grammar import version_key
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.store import Deletion, ServiceStatus
from pockestrator.specs.validation import downgrade_issue

# Up to this many units in a daemon-reload wave, instances start before Caddy reloads.
SMALL_WAVE = 4
RUNNING_STATES = ("active", "activating", "reloading")
ENABLED_STATES = ("enabled", "enabled-runtime", "linked")
# Look again this soon at a unit someone else is stopping, and at one still coming up.
DEACTIVATING_REQUEUE = 0.5
JOB_REQUEUE = 2.0
DEPLOYING_REQUEUE = 1.0
# systemd's verdict on a unit that failed to start too often (StartLimitBurst=): a crash
# loop. The agent keeps that brake (it does not start the unit again by itself) and says so.
START_LIMIT_HIT = "start-limit-hit"
CRASH_LOOP = "crash loop"


def gave_up(unit: UnitStatus) -> bool:
    """Whether systemd stopped restarting the unit: a crash loop.

    systemd says ``start-limit-hit`` only when the result was still a success; a process
    that kept exiting keeps its ``exit-code`` and lands in ``failed`` once its restarts
    reach the start limit (an instance's unit restarts always, so nothing else leaves it
    failed after restarts).
    """
    if unit.active_state != "failed":
        return False
    return unit.result == START_LIMIT_HIT or (unit.n_restarts or 0) >= START_LIMIT_BURST


@dataclass(frozen=True)
class Policy:
    """The agent's settings that shape decisions (from ``AgentConfig``)."""

    health_failures_before_restart: int = 3
    health_deadline: float = 15.0
    upgrade_health_deadline: float = 30.0
    resync_interval: float = 60.0
    settings_interval: float = 300.0


@dataclass(frozen=True)
class Desired:
    """A service that should exist, rendered for the version it should run."""

    spec: ServiceSpec  # pocketbase_version is the target (a rolled-back one stays pinned)
    requested_version: str  # what the stored spec asks for
    desired_state: str  # "running" or "stopped": an API start/stop override applied
    generation: int
    unit_text: str
    unit_hash: str
    site_text: str
    site_hash: str
    environment_text: str | None = None  # the environment file; None: the spec has none
    environment_hash: str | None = None
    # Why the version the spec asks for is not the target (a refused downgrade).
    version_note: str | None = None
    settings: DesiredSettings | None = None  # PocketBase's own; None: not managed
    # agent.sleep: awake, drowsy (idle: stop it now) or asleep (the agent holds its port
    # and starts it on the first request; the reconciler never does).
    sleep: Literal["awake", "drowsy", "asleep"] = "awake"

    @property
    def name(self) -> str:
        return self.spec.project_name

    @property
    def should_run(self) -> bool:
        return self.desired_state == "running"


@dataclass(frozen=True)
class Observed:
    """What the host holds for one service right now (see ``agent.reconciler.observe``)."""

    unit: UnitObservation
    site_hash: str | None
    dirs: ServiceDirState | None = None  # None: not looked at (a removal)

    @property
    def systemd(self) -> UnitStatus | None:
        return self.unit.status


# -- what a plan says besides its steps --------------------------------------------------


@dataclass(frozen=True)
class Upgrade:
    """A plan that changes the running version: where it comes from and goes to, and for a
    downgrade the backup of ``new``'s data it restores."""

    old: str
    new: str
    restore: Path | None = None

    @property
    def downgrade(self) -> bool:
        return self.restore is not None


class DowngradeWithoutBackup(Exception):
    """A downgrade was planned, but the backup it would restore is gone; retried, the
    target falls back to the deployed version and the status says why."""


@dataclass(frozen=True)
class Plan:
    """The steps of one reconcile and what it found; empty when the host is converged.

    ``probe_deadline``: after the steps, wait up to so many seconds for ``/api/health``
    (None: do not probe; a steady service is left to the health prober). ``defer``: do
    nothing more now and look again after so many seconds (someone else's job is running).
    ``status`` holds the status fields the plan settles whatever the outcome of the health
    wait; ``conclude`` adds the rest after it.
    """

    name: str
    prepare: tuple[Step, ...] = ()
    run: tuple[Step, ...] = ()
    route: tuple[Step, ...] = ()
    finish: tuple[Step, ...] = ()
    drift: tuple[Drift, ...] = ()
    status: Mapping[str, Any] = field(default_factory=dict)
    probe_deadline: float | None = None
    defer: float | None = None
    upgrade: Upgrade | None = None
    removal: bool = False

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.prepare + self.run + self.route + self.finish

    def __bool__(self) -> bool:
        return bool(self.steps)

    def describe(self) -> list[str]:
        return [step.describe() for step in self.steps]


def run_first(wave_size: int) -> bool:
    """Whether a wave of ``wave_size`` is small: its instances start before Caddy loads,
    and its reconciles wait for health themselves (a large one's are watched)."""
    return wave_size <= SMALL_WAVE


def start_before_route(wave_size: int, run: tuple[Step, ...]) -> bool:
    """Whether ``run`` goes before the route group. Starting instances that do not run
    (nothing old answers behind the site) lets them boot while Caddy loads, in a wave of
    any size: Caddy's admin API no longer forks a validation that boots starve."""
    return run_first(wave_size) or all(isinstance(step, StartUnit) for step in run)


# -- deciding ----------------------------------------------------------------------------


def newest_backups(backups: Iterable[DataBackup]) -> dict[str, DataBackup]:
    """The newest backup of each version's data."""
    newest: dict[str, DataBackup] = {}
    for backup in backups:
        if backup.version not in newest or backup.taken_at > newest[backup.version].taken_at:
            newest[backup.version] = backup
    return newest


def downgrade_refusal(
    spec: ServiceSpec, status: ServiceStatus | None, backups: Iterable[DataBackup] = ()
) -> str | None:
    """Why the spec's version, lower than the deployed one, is not run (``VERSION_DOWNGRADE``:
    no ``allow_downgrade``, or no backup of that version's data); None when it is no
    downgrade or one that can be done."""
    deployed = status.deployed_version if status is not None else None
    taken = {version: backup.taken_at for version, backup in newest_backups(backups).items()}
    issue = downgrade_issue(spec, deployed, taken)
    return None if issue is None else f"{issue.message} [{issue.code}]"


def target_version(
    spec: ServiceSpec, status: ServiceStatus | None, backups: Iterable[DataBackup] = ()
) -> str:
    """The version to run: the spec's, unless that one was rolled back or is a downgrade
    that may not be done (then the deployed one).

    A version that failed its upgrade is not tried again until the spec names another.
    """
    deployed = status.deployed_version if status is not None else None
    if deployed and status is not None and status.failed_version == spec.pocketbase_version:
        return deployed
    if deployed and downgrade_refusal(spec, status, backups) is not None:
        return deployed
    return spec.pocketbase_version


def deployed_version(status: ServiceStatus | None, observed: Observed) -> str | None:
    """What runs now: as last recorded, else as the unit file on disk says."""
    if status is not None and status.deployed_version:
        return status.deployed_version
    return observed.unit.version


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
    steady = (
        not steps_planned
        and status.state == "active"
        and status.health_ok is True
        and unit is not None
        and unit.active_state == "active"
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
        return ((StartUnit(),) if desired.should_run else ()), None, []
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
    return (StartUnit(),), None, drift


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


# -- after the steps ---------------------------------------------------------------------


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


# -- PocketBase's own settings, once the instance is up ----------------------------------


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
