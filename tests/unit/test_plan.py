"""Every decision of a reconcile, as table rows: a scenario, a change to it, the plan expected.

After kubelet's ``TestComputePodActions``: the base scenario is a converged, healthy, running
service; each row changes what is desired, what the status says or what the host shows, and
names the steps (by kind, in their groups), the drift and the waits the plan must contain.
No root, no systemd: these run in milliseconds, and the test bed then proves the steps.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pockestrator.agent.plan.conclude import (
    Settled,
    certificate_check_due,
    conclude,
    crash_loop_began,
    requeue_after,
    restarted_by_systemd,
)
from pockestrator.agent.plan.model import (
    DEACTIVATING_REQUEUE,
    DEPLOYING_REQUEUE,
    JOB_REQUEUE,
    Desired,
    DowngradeWithoutBackup,
    Observed,
    Plan,
    Policy,
    Upgrade,
    run_first,
    start_before_route,
)
from pockestrator.agent.plan.service import plan_catch_all, plan_removal, plan_service
from pockestrator.agent.plan.versions import (
    deployed_version,
    downgrade_refusal,
    newest_backups,
    target_version,
)
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
from pockestrator.controllers.servicedirs import DataBackup, Place, ServiceDirState
from pockestrator.controllers.systemd import START_LIMIT_BURST, UnitObservation
from pockestrator.controllers.systemd.unit_state import UnitStatus
from pockestrator.files import sha256_text
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.store import Deletion, ServiceStatus
from tests.testbed.builders import running_unit as unit_status

OLD, NEW = "0.39.11", "0.40.6"
POLICY = Policy(
    health_failures_before_restart=3,
    health_deadline=15.0,
    upgrade_health_deadline=30.0,
    resync_interval=60.0,
)
UNIT_HASH, SITE_HASH = "u" * 64, "s" * 64
OLD_UNIT_HASH, OLD_SITE_HASH, EDITED = "o" * 64, "p" * 64, "e" * 64
ENV_HASH, OLD_ENV_HASH = "v" * 64, "w" * 64


@dataclass
class Scenario:
    """One reconcile's inputs, mutable while a row sets it up."""

    spec: dict[str, Any] = field(default_factory=dict)
    desired_state: str = "running"
    status: ServiceStatus | None = None
    unit: UnitStatus | None = None
    file_hash: str | None = UNIT_HASH
    file_managed: bool = True
    file_version: str | None = NEW
    site_hash: str | None = SITE_HASH
    dirs: ServiceDirState | None = None
    rolling_back: bool = False
    environment: str | None = None  # the hash of the environment file the spec renders
    environment_file: str | None = None  # the hash of the one on disk
    unit_environment: str | None = None  # the hash the unit file on disk was rendered with


def converged() -> Scenario:
    """A running, healthy service whose host holds exactly the rendered files."""
    return Scenario(
        status=ServiceStatus(
            "app",
            state="active",
            systemd_config_hash=UNIT_HASH,
            caddy_config_hash=SITE_HASH,
            deployed_version=NEW,
            health_ok=True,
            observed_generation=1,
            pid=4242,
        ),
        unit=unit_status(),
        dirs=ServiceDirState(Path("/srv/app"), Place.PRIVATE),
    )


def desired_of(scenario: Scenario) -> Desired:
    values = {"project_name": "app", "port": 8100, "pocketbase_version": NEW, "domain": "app.test"}
    values.update(scenario.spec)
    spec = ServiceSpec.model_validate(values)
    return Desired(
        spec=spec,
        requested_version=spec.pocketbase_version,
        desired_state=scenario.desired_state,
        generation=2,
        unit_text="[Unit]\n",
        unit_hash=UNIT_HASH,
        site_text="site {}\n",
        site_hash=SITE_HASH,
        environment_text='A="1"\n' if scenario.environment is not None else None,
        environment_hash=scenario.environment,
    )


def observed_of(scenario: Scenario) -> Observed:
    return Observed(
        unit=UnitObservation(
            name="app",
            file_exists=scenario.file_hash is not None,
            file_hash=scenario.file_hash,
            managed=scenario.file_managed,
            status=scenario.unit,
            version=scenario.file_version if scenario.file_hash is not None else None,
            environment_hash=scenario.unit_environment,
            environment_file_hash=scenario.environment_file,
        ),
        site_hash=scenario.site_hash,
        dirs=scenario.dirs,
    )


def plan_for(scenario: Scenario) -> Plan:
    return plan_service(
        desired_of(scenario),
        scenario.status,
        observed_of(scenario),
        POLICY,
        rolling_back=scenario.rolling_back,
    )


def kinds(steps: tuple[object, ...]) -> list[str]:
    return [type(step).__name__ for step in steps]


# -- mutations of the converged scenario -------------------------------------------------


def on_status(**changes: Any) -> Callable[[Scenario], None]:
    def mutate(s: Scenario) -> None:
        assert s.status is not None
        s.status = replace(s.status, **changes)

    return mutate


def on_unit(**changes: Any) -> Callable[[Scenario], None]:
    def mutate(s: Scenario) -> None:
        assert s.unit is not None
        s.unit = replace(s.unit, **changes)

    return mutate


def on_dirs(**changes: Any) -> Callable[[Scenario], None]:
    def mutate(s: Scenario) -> None:
        assert s.dirs is not None
        s.dirs = replace(s.dirs, **changes)

    return mutate


def setting(**changes: Any) -> Callable[[Scenario], None]:
    def mutate(s: Scenario) -> None:
        for key, value in changes.items():
            setattr(s, key, value)

    return mutate


def spec_changed(s: Scenario) -> None:
    """The spec changed since the last reconcile: the agent's own files are now old."""
    s.file_hash = OLD_UNIT_HASH
    assert s.status is not None
    s.status = replace(s.status, systemd_config_hash=OLD_UNIT_HASH)


def brand_new(s: Scenario) -> None:
    s.status = None
    s.unit = unit_status(
        load_state="not-found",
        active_state="inactive",
        sub_state="dead",
        unit_file_state="",
        main_pid=None,
    )
    s.file_hash = None
    s.site_hash = None
    s.dirs = ServiceDirState(Path("/srv/app"), Place.NONE)


def upgrade_pending(s: Scenario) -> None:
    """The spec asks for NEW; OLD runs, from files the agent rendered for OLD."""
    assert s.status is not None
    s.status = replace(s.status, deployed_version=OLD, systemd_config_hash=OLD_UNIT_HASH)
    s.file_hash, s.file_version = OLD_UNIT_HASH, OLD


def both(*mutations: Callable[[Scenario], None]) -> Callable[[Scenario], None]:
    def mutate(s: Scenario) -> None:
        for mutation in mutations:
            mutation(s)

    return mutate


@dataclass(frozen=True)
class Row:
    id: str
    mutate: Callable[[Scenario], None]
    prepare: list[str] = field(default_factory=list)
    run: list[str] = field(default_factory=list)
    route: list[str] = field(default_factory=list)
    finish: list[str] = field(default_factory=list)
    drift: list[tuple[str, str]] = field(default_factory=list)  # (what, found)
    probe: float | None = None
    defer: float | None = None
    upgrade: Upgrade | None = None


ROWS = [
    Row("a converged healthy service needs nothing and no probe", lambda s: None),
    Row(
        "a converged service whose last probe failed is probed again",
        on_status(health_ok=False),
        probe=15.0,
    ),
    Row(
        "a healthy service whose process is not the one last recorded (woken, restarted "
        "outside a plan) is probed, not trusted",
        on_unit(main_pid=5151),
        probe=15.0,
    ),
    Row(
        "a healthy service recorded without a process is probed",
        on_status(pid=None),
        probe=15.0,
    ),
    Row(
        "a converged service still deploying is probed",
        on_status(state="deploying", health_ok=None),
        probe=15.0,
    ),
    Row(
        "a converged service last seen in error is probed",
        on_status(state="error"),
        probe=15.0,
    ),
    Row(
        "a brand-new service gets its unit (loaded at its start, no reload), enablement, "
        "start and site",
        brand_new,
        prepare=["WriteUnit", "LoadNewUnit", "EnableUnit"],
        run=["StartUnit"],
        route=["WriteSite"],
        probe=15.0,
    ),
    Row(
        "a brand-new stopped service is written but neither enabled nor started",
        both(brand_new, setting(desired_state="stopped")),
        prepare=["WriteUnit", "LoadNewUnit"],
        route=["WriteSite"],
    ),
    Row(
        "a spec change rewrites the unit and restarts the running instance, without drift",
        spec_changed,
        prepare=["WriteUnit", "DaemonReload"],
        run=["RestartUnit"],
        probe=15.0,
    ),
    Row(
        "a hand-edited unit file is rewritten and recorded as drift",
        setting(file_hash=EDITED),
        prepare=["WriteUnit", "DaemonReload"],
        run=["RestartUnit"],
        drift=[("unit file", "hand-edited")],
        probe=15.0,
    ),
    Row(
        "a deleted unit file is rewritten and recorded as drift",
        setting(file_hash=None),
        prepare=["WriteUnit", "DaemonReload"],
        run=["RestartUnit"],
        drift=[("unit file", "deleted")],
        probe=15.0,
    ),
    Row(
        "a unit file written again for a unit systemd still holds (a failed one) is reloaded",
        both(setting(file_hash=None), on_unit(active_state="failed", sub_state="failed")),
        prepare=["WriteUnit", "DaemonReload"],
        run=["StartUnit"],
        drift=[("unit file", "deleted"), ("run state", "unit was failed/failed")],
        probe=15.0,
    ),
    Row(
        "a unit file systemd has not reloaded gets a daemon-reload and a drift event",
        on_unit(need_daemon_reload=True),
        prepare=["DaemonReload"],
        drift=[("unit file", "systemd had not reloaded the file")],
        probe=15.0,
    ),
    Row(
        "a unit stopped by hand is started again and recorded as drift",
        on_unit(active_state="inactive", sub_state="dead"),
        run=["StartUnit"],
        drift=[("run state", "unit was inactive/dead")],
        probe=15.0,
    ),
    Row(
        "a failed unit is started again and recorded as drift",
        on_unit(active_state="failed", sub_state="failed"),
        run=["StartUnit"],
        drift=[("run state", "unit was failed/failed")],
        probe=15.0,
    ),
    Row(
        "a unit that went down while its service was deploying is started as a repair",
        both(on_unit(active_state="inactive", sub_state="dead"), on_status(state="deploying")),
        run=["StartUnit"],
        drift=[("run state", "unit was inactive/dead")],
        probe=15.0,
    ),
    Row(
        "an upgrade repairs a hand-edited site on its way",
        both(upgrade_pending, setting(site_hash=EDITED)),
        prepare=[
            "EnsureRelease",
            "StopUnit",
            "BackupData",
            "WriteUnit",
            "DaemonReload",
        ],
        run=["StartUnit"],
        route=["WriteSite"],
        drift=[("caddy site", "hand-edited")],
        probe=30.0,
        upgrade=Upgrade(OLD, NEW),
    ),
    Row(
        "an inactive unit of a service in error is started without a drift event",
        both(on_unit(active_state="inactive"), on_status(state="error")),
        run=["StartUnit"],
        probe=15.0,
    ),
    Row(
        "a service never deployed is started without a drift event",
        both(on_unit(active_state="inactive"), on_status(state="deploying", deployed_version=None)),
        run=["StartUnit"],
        probe=15.0,
    ),
    Row(
        "a unit someone is stopping is left to finish and looked at again soon",
        on_unit(active_state="deactivating"),
        defer=DEACTIVATING_REQUEUE,
        probe=15.0,
    ),
    Row(
        "an activating unit is not started a second time",
        on_unit(active_state="activating"),
        probe=15.0,
    ),
    Row(
        "a reloading unit with a changed unit file is restarted",
        both(spec_changed, on_unit(active_state="reloading")),
        prepare=["WriteUnit", "DaemonReload"],
        run=["RestartUnit"],
        probe=15.0,
    ),
    Row(
        "an activating unit with a changed unit file is not restarted while it comes up",
        both(spec_changed, on_unit(active_state="activating")),
        prepare=["WriteUnit", "DaemonReload"],
        probe=15.0,
    ),
    Row(
        "an instance that failed as many probes as the threshold is restarted",
        on_status(health_failures=3),
        run=["RestartUnit"],
        probe=15.0,
    ),
    Row(
        "a unit with someone else's job under way is left to it and looked at again",
        both(on_status(health_failures=9), on_unit(active_state="inactive", job_pending=True)),
        defer=JOB_REQUEUE,
        probe=15.0,
    ),
    Row(
        "an instance one probe short of the threshold is not restarted",
        on_status(health_failures=2),
    ),
    Row(
        "an activating instance past the threshold is restarted too",
        both(on_status(health_failures=5), on_unit(active_state="activating")),
        run=["RestartUnit"],
        probe=15.0,
    ),
    Row(
        "a stopped desired state stops and disables a running unit",
        setting(desired_state="stopped"),
        prepare=["DisableUnit"],
        run=["StopUnit"],
    ),
    Row(
        "a stopped desired state stops an activating unit",
        both(setting(desired_state="stopped"), on_unit(active_state="activating")),
        prepare=["DisableUnit"],
        run=["StopUnit"],
    ),
    Row(
        "a stopped, disabled unit of a stopped service needs nothing",
        both(
            setting(desired_state="stopped"),
            on_unit(active_state="inactive", unit_file_state="disabled"),
        ),
    ),
    Row(
        "a stopped but still enabled unit is disabled",
        both(setting(desired_state="stopped"), on_unit(active_state="inactive")),
        prepare=["DisableUnit"],
    ),
    Row(
        "a runtime-enabled unit of a stopped service is left as it is",
        both(
            setting(desired_state="stopped"),
            on_unit(active_state="inactive", unit_file_state="enabled-runtime"),
        ),
    ),
    Row(
        "a disabled unit that should run is enabled",
        on_unit(unit_file_state="disabled"),
        prepare=["EnableUnit"],
        probe=15.0,
    ),
    Row(
        "a runtime-enabled unit that should run counts as enabled",
        on_unit(unit_file_state="enabled-runtime"),
    ),
    Row("a linked unit that should run counts as enabled", on_unit(unit_file_state="linked")),
    Row(
        "a hand-edited site is rewritten and recorded as drift",
        setting(site_hash=EDITED),
        route=["WriteSite"],
        drift=[("caddy site", "hand-edited")],
        probe=15.0,
    ),
    Row(
        "a deleted site is rewritten and recorded as drift",
        setting(site_hash=None),
        route=["WriteSite"],
        drift=[("caddy site", "deleted")],
        probe=15.0,
    ),
    Row(
        "a site the spec changed is rewritten without drift",
        both(setting(site_hash=OLD_SITE_HASH), on_status(caddy_config_hash=OLD_SITE_HASH)),
        route=["WriteSite"],
        probe=15.0,
    ),
    Row(
        "a missing site of a service never routed is written without drift",
        both(setting(site_hash=None), on_status(caddy_config_hash=None)),
        route=["WriteSite"],
        probe=15.0,
    ),
    Row(
        "a folder an earlier agent made is cleaned up for systemd to take over",
        both(setting(dirs=ServiceDirState(Path("/srv/app"), Place.LEGACY)), spec_changed),
        prepare=["MigrateFolder", "WriteUnit", "DaemonReload"],
        run=["RestartUnit"],
        probe=15.0,
    ),
    Row(
        "a first superuser not created yet is created",
        setting(spec={"superuser_email": "o@example.test"}),
        prepare=["CreateSuperuser"],
        probe=15.0,
    ),
    Row(
        "a first superuser already created is not created again",
        both(
            setting(spec={"superuser_email": "o@example.test"}),
            on_status(superusers=("o@example.test",)),
        ),
    ),
    Row(
        "a first superuser an earlier agent created is not created again",
        both(
            setting(spec={"superuser_email": "o@example.test"}),
            setting(dirs=ServiceDirState(Path("/srv/app"), Place.LEGACY, ("o@example.test",))),
        ),
        prepare=["MigrateFolder"],
        probe=15.0,
    ),
    Row(
        "a new superuser e-mail is created beside the ones made before",
        both(
            setting(spec={"superuser_email": "new@example.test"}),
            on_status(superusers=("old@example.test",)),
        ),
        prepare=["CreateSuperuser"],
        probe=15.0,
    ),
    Row(
        "a hand-edited environment file is rewritten, recorded and the instance restarted",
        setting(environment=ENV_HASH, environment_file=EDITED, unit_environment=ENV_HASH),
        prepare=["WriteEnvironment"],
        run=["RestartUnit"],
        drift=[("environment file", "hand-edited")],
        probe=15.0,
    ),
    Row(
        "a deleted environment file is written again and recorded",
        setting(environment=ENV_HASH, environment_file=None, unit_environment=ENV_HASH),
        prepare=["WriteEnvironment"],
        run=["RestartUnit"],
        drift=[("environment file", "deleted")],
        probe=15.0,
    ),
    Row(
        "an environment the spec changed is written with the unit, without drift",
        both(
            spec_changed,
            setting(
                environment=ENV_HASH,
                environment_file=OLD_ENV_HASH,
                unit_environment=OLD_ENV_HASH,
            ),
        ),
        prepare=["WriteEnvironment", "WriteUnit", "DaemonReload"],
        run=["RestartUnit"],
        probe=15.0,
    ),
    Row(
        "an environment the spec dropped is removed with the unit's change",
        both(
            spec_changed,
            setting(environment=None, environment_file=OLD_ENV_HASH, unit_environment=OLD_ENV_HASH),
        ),
        prepare=["WriteEnvironment", "WriteUnit", "DaemonReload"],
        run=["RestartUnit"],
        probe=15.0,
    ),
    Row(
        "a converged environment file needs nothing",
        setting(environment=ENV_HASH, environment_file=ENV_HASH, unit_environment=ENV_HASH),
    ),
    Row(
        "a new service's first superuser is created after its folder is made",
        both(brand_new, setting(spec={"superuser_email": "o@example.test"})),
        prepare=["WriteUnit", "LoadNewUnit", "EnableUnit", "CreateSuperuser"],
        run=["StartUnit"],
        route=["WriteSite"],
        probe=15.0,
    ),
    Row(
        "a version change of a running service is an upgrade: stop, backup, converge, start",
        upgrade_pending,
        prepare=[
            "EnsureRelease",
            "StopUnit",
            "BackupData",
            "WriteUnit",
            "DaemonReload",
        ],
        run=["StartUnit"],
        probe=30.0,
        upgrade=Upgrade(OLD, NEW),
    ),
    Row(
        "an upgrade of a stopped-by-hand unit records no run-state drift for its own start",
        both(upgrade_pending, on_unit(active_state="inactive")),
        prepare=[
            "EnsureRelease",
            "StopUnit",
            "BackupData",
            "WriteUnit",
            "DaemonReload",
        ],
        run=["StartUnit"],
        probe=30.0,
        upgrade=Upgrade(OLD, NEW),
    ),
    Row(
        "an upgrade takes the version from the unit file when the status has none",
        both(upgrade_pending, on_status(deployed_version=None)),
        prepare=[
            "EnsureRelease",
            "StopUnit",
            "BackupData",
            "WriteUnit",
            "DaemonReload",
        ],
        run=["StartUnit"],
        probe=30.0,
        upgrade=Upgrade(OLD, NEW),
    ),
    Row(
        "a version change of a stopped service is no upgrade, only new files",
        both(upgrade_pending, setting(desired_state="stopped")),
        prepare=["WriteUnit", "DaemonReload", "DisableUnit"],
        run=["StopUnit"],
    ),
    Row(
        "a version change of a unit systemd lost is no upgrade, and its start is a repair",
        both(
            upgrade_pending,
            on_unit(load_state="not-found", active_state="inactive", sub_state="dead"),
        ),
        prepare=["WriteUnit", "LoadNewUnit"],
        run=["StartUnit"],
        drift=[("run state", "unit was inactive/dead")],
        probe=15.0,
    ),
    Row(
        "a unit systemd does not know at all is enabled and started",
        setting(unit=None),
        prepare=["EnableUnit"],
        run=["StartUnit"],
        probe=15.0,
    ),
    Row(
        "a stopped service whose unit systemd does not know needs nothing",
        setting(unit=None, desired_state="stopped"),
    ),
    Row(
        "the recorded version wins over the unit file's when they disagree",
        both(upgrade_pending, setting(file_version=NEW)),
        prepare=[
            "EnsureRelease",
            "StopUnit",
            "BackupData",
            "WriteUnit",
            "DaemonReload",
        ],
        run=["StartUnit"],
        probe=30.0,
        upgrade=Upgrade(OLD, NEW),
    ),
    Row(
        "a rollback starts the old version again without drift and without a new upgrade",
        both(
            upgrade_pending,
            on_unit(active_state="inactive"),
            setting(rolling_back=True),
        ),
        prepare=["WriteUnit", "DaemonReload"],
        run=["StartUnit"],
        probe=15.0,
    ),
    Row(
        "a rollback of a service that should be stopped leaves it stopped",
        both(
            setting(rolling_back=True, desired_state="stopped"),
            on_unit(active_state="inactive", unit_file_state="disabled"),
        ),
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_plan_table(row: Row) -> None:
    scenario = converged()
    row.mutate(scenario)
    plan = plan_for(scenario)
    assert kinds(plan.prepare) == row.prepare
    assert kinds(plan.run) == row.run
    assert kinds(plan.route) == row.route
    assert kinds(plan.finish) == row.finish
    assert [(d.what, d.found) for d in plan.drift] == row.drift
    assert plan.probe_deadline == row.probe
    assert plan.defer == row.defer
    assert plan.upgrade == row.upgrade
    assert bool(plan) == bool(row.prepare or row.run or row.route or row.finish)
    assert plan.name == "app" and not plan.removal
    desired = desired_of(scenario)
    for step in plan.steps:
        if isinstance(step, WriteUnit):
            assert step.text == desired.unit_text
        if isinstance(step, WriteSite):
            assert step.text == desired.site_text
    assert plan.status == {
        "systemd_config_hash": UNIT_HASH,
        "caddy_config_hash": SITE_HASH,
        "deployed_version": NEW,
        "observed_generation": 2,
    }


def test_drift_events_carry_the_hash_found_and_the_hash_written() -> None:
    scenario = converged()
    scenario.file_hash, scenario.site_hash = EDITED, None
    drift = {d.what: d for d in plan_for(scenario).drift}
    assert (drift["unit file"].before_hash, drift["unit file"].after_hash) == (EDITED, UNIT_HASH)
    assert (drift["caddy site"].before_hash, drift["caddy site"].after_hash) == (None, SITE_HASH)
    assert drift["unit file"].message() == (
        "unit file: hand-edited; rewrote the unit file, daemon-reload"
    )
    assert drift["caddy site"].details() == {
        "what": "caddy site",
        "found": "deleted",
        "action": "rewrote the site snippet, caddy reload",
        "before_hash": None,
        "after_hash": SITE_HASH,
    }


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        (
            setting(file_hash=EDITED),
            Drift(
                "unit file",
                "hand-edited",
                "rewrote the unit file, daemon-reload",
                EDITED,
                UNIT_HASH,
            ),
        ),
        (
            on_unit(need_daemon_reload=True),
            Drift(
                "unit file",
                "systemd had not reloaded the file",
                "daemon-reload",
                UNIT_HASH,
                UNIT_HASH,
            ),
        ),
        (
            on_unit(active_state="failed", sub_state="failed"),
            Drift("run state", "unit was failed/failed", "started the unit", "failed", "active"),
        ),
        (
            setting(site_hash=EDITED),
            Drift(
                "caddy site",
                "hand-edited",
                "rewrote the site snippet, caddy reload",
                EDITED,
                SITE_HASH,
            ),
        ),
    ],
    ids=["unit file edited", "unit file not reloaded", "run state", "caddy site edited"],
)
def test_each_kind_of_drift_says_what_was_found_and_done(
    mutation: Callable[[Scenario], None], expected: Drift
) -> None:
    scenario = converged()
    mutation(scenario)
    assert plan_for(scenario).drift == (expected,)


def test_a_plan_is_no_rollback_unless_the_reconciler_says_so() -> None:
    scenario = converged()
    upgrade_pending(scenario)
    plan = plan_service(desired_of(scenario), scenario.status, observed_of(scenario), POLICY)
    assert plan.upgrade == Upgrade(OLD, NEW)


def test_every_step_says_what_it_did_in_the_event_log() -> None:
    steps = [
        EnsureRelease(OLD),
        MigrateFolder(),
        WriteEnvironment("A=1\n"),
        WriteEnvironment(None),
        WriteUnit("x"),
        DaemonReload(),
        LoadNewUnit(),
        EnableUnit(),
        DisableUnit(),
        CreateSuperuser("o@example.test"),
        StartUnit(),
        StopUnit(),
        StopUnit("upgrade"),
        StopUnit("removal"),
        RestartUnit("configuration changed"),
        RestartUnit("health", 3),
        WriteSite("x"),
        RemoveSite(),
        RemoveUnitFile(),
        BackupData(OLD),
        RestoreData(Path("/b/pb_data-0.39.11-20260101T000000Z")),
        RemoveData(purge=False),
        RemoveData(purge=True),
    ]
    assert [step.describe() for step in steps] == [
        f"PocketBase {OLD} cached",
        "service folder from an earlier agent cleaned up",
        "environment file written",
        "environment file removed",
        "unit file written",
        "daemon-reload",
        "unit file loaded by systemd at its start (no daemon-reload)",
        "enabled",
        "disabled",
        "first superuser created",
        "started",
        "stopped",
        "stopped for upgrade",
        "stopped",
        "restarted (configuration changed)",
        "restarted (health)",
        "caddy site applied",
        "caddy site removed",
        "unit file removed",
        "pb_data backed up",
        "pb_data restored from /b/pb_data-0.39.11-20260101T000000Z",
        "data archived",
        "data purged",
    ]
    assert Plan("app", prepare=(StartUnit(),), run=(StopUnit(),)).describe() == [
        "started",
        "stopped",
    ]


def test_a_step_class_says_its_line_from_said_and_is_a_frozen_dataclass() -> None:
    class Probed(Step, said="probed {what}"):
        what: str

    step = Probed("the unit")
    assert step.describe() == "probed the unit"
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.what = "x"  # type: ignore[misc]
    with pytest.raises(TypeError, match="step Silent needs said= or a describe of its own"):

        class Silent(Step):
            pass


def test_the_sleep_and_settings_steps_say_what_they_did_in_the_event_log() -> None:
    steps = [
        StopUnit("sleep"),
        CreateAgentSuperuser(),
        ApplySettings(("settings.app_name", "settings.app_url")),
        ApplySettings(("settings.app_name",), repair=True),
    ]
    assert [step.describe() for step in steps] == [
        "put to sleep (idle)",
        "the agent's superuser created in PocketBase",
        "PocketBase settings applied: settings.app_name, settings.app_url",
        "PocketBase settings restored: settings.app_name",
    ]


def test_a_spec_change_restarts_for_the_configuration_not_for_health() -> None:
    scenario = converged()
    spec_changed(scenario)
    on_status(health_failures=9)(scenario)
    assert plan_for(scenario).run == (RestartUnit("configuration changed"),)


def test_a_health_restart_names_how_many_probes_failed() -> None:
    scenario = converged()
    on_status(health_failures=4)(scenario)
    assert plan_for(scenario).run == (RestartUnit("health", 4),)


def test_an_upgrade_stops_the_unit_itself_and_keeps_the_old_release_for_the_way_back() -> None:
    scenario = converged()
    upgrade_pending(scenario)
    plan = plan_for(scenario)
    assert plan.prepare[0].describe() == f"PocketBase {OLD} cached"
    assert plan.prepare[1] == StopUnit("upgrade")
    assert plan.prepare[2] == BackupData(OLD)
    assert plan.drift == ()


def test_a_plan_settles_the_hashes_version_and_generation_it_applies() -> None:
    scenario = converged()
    spec_changed(scenario)
    assert plan_for(scenario).status == {
        "systemd_config_hash": UNIT_HASH,
        "caddy_config_hash": SITE_HASH,
        "deployed_version": NEW,
        "observed_generation": 2,
    }


def test_a_first_superuser_step_names_the_e_mail() -> None:
    scenario = converged()
    setting(spec={"superuser_email": "o@example.test"})(scenario)
    assert plan_for(scenario).prepare == (CreateSuperuser("o@example.test"),)


# -- versions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failed", "deployed", "expected"),
    [
        (None, OLD, NEW),
        (NEW, OLD, OLD),
        (NEW, None, NEW),
        ("0.41.0", OLD, NEW),
    ],
    ids=[
        "the spec's version when nothing failed",
        "the old version when the spec's one was rolled back",
        "the spec's version when a failed one never ran before",
        "the spec's version when another version failed",
    ],
)
def test_target_version(failed: str | None, deployed: str | None, expected: str) -> None:
    spec = ServiceSpec.model_validate(
        {"project_name": "app", "port": 8100, "pocketbase_version": NEW, "domain": "app.test"}
    )
    status = ServiceStatus("app", failed_version=failed, deployed_version=deployed)
    assert target_version(spec, status) == expected


def test_target_version_without_a_status_is_the_spec_s() -> None:
    spec = ServiceSpec.model_validate(
        {"project_name": "app", "port": 8100, "pocketbase_version": NEW, "domain": "app.test"}
    )
    assert target_version(spec, None) == NEW


def test_the_deployed_version_is_the_status_s_else_the_unit_file_s() -> None:
    scenario = converged()
    scenario.file_version = OLD
    observed = observed_of(scenario)
    assert deployed_version(ServiceStatus("app", deployed_version=NEW), observed) == NEW
    assert deployed_version(ServiceStatus("app"), observed) == OLD
    assert deployed_version(None, observed) == OLD


# -- removal ------------------------------------------------------------------------------


def removal(
    deletion: Deletion | None,
    *,
    managed: bool = True,
    file: bool = True,
    unit: UnitStatus | None = None,
    site: bool = True,
) -> Plan:
    observed = Observed(
        unit=UnitObservation(
            name="app",
            file_exists=file,
            file_hash=UNIT_HASH if file else None,
            managed=managed and file,
            status=unit,
        ),
        site_hash=SITE_HASH if site else None,
    )
    return plan_removal("app", deletion, observed)


def deletion(purge: bool = False) -> Deletion:
    return Deletion("app", "abc123", purge, datetime(2026, 1, 1, tzinfo=UTC))


def test_a_name_with_nothing_of_ours_and_no_tombstone_needs_no_removal() -> None:
    plan = removal(None, file=False, site=False)
    assert plan.steps == () and not plan


def test_a_foreign_unit_of_that_name_is_never_stopped_disabled_or_removed() -> None:
    plan = removal(None, managed=False, unit=unit_status(), site=False)
    assert plan.steps == ()


def test_removing_a_running_service_stops_disables_removes_and_archives() -> None:
    assert removal(deletion(), unit=unit_status()) == Plan(
        name="app",
        prepare=(StopUnit("removal"), DisableUnit(), RemoveUnitFile(), DaemonReload()),
        route=(RemoveSite(),),
        finish=(RemoveData(purge=False),),
        removal=True,
    )


def test_an_empty_removal_is_still_a_removal_plan_of_that_name() -> None:
    assert removal(None, file=False, site=False) == Plan(name="app", removal=True)


def test_removing_a_stopped_disabled_service_only_removes_its_files() -> None:
    plan = removal(
        deletion(), unit=unit_status(active_state="inactive", unit_file_state="disabled")
    )
    assert kinds(plan.prepare) == ["RemoveUnitFile", "DaemonReload"]


def test_removing_a_runtime_enabled_unit_disables_it_but_a_linked_one_is_not_disabled() -> None:
    runtime = removal(deletion(), unit=unit_status(unit_file_state="enabled-runtime"))
    linked = removal(deletion(), unit=unit_status(unit_file_state="linked"))
    assert "DisableUnit" in kinds(runtime.prepare)
    assert "DisableUnit" not in kinds(linked.prepare)


def test_a_purge_deletes_the_data_instead_of_archiving_it() -> None:
    assert removal(deletion(purge=True), unit=unit_status()).finish == (RemoveData(purge=True),)


def test_a_tombstone_with_nothing_on_the_host_still_archives_what_the_folder_holds() -> None:
    plan = removal(deletion(), file=False, site=False)
    assert plan.prepare == () and plan.route == ()
    assert plan.finish == (RemoveData(purge=False),)


def test_a_leftover_site_without_a_unit_is_removed() -> None:
    plan = removal(None, file=False, site=True)
    assert kinds(plan.route) == ["RemoveSite"]


def test_a_site_beside_a_foreign_unit_is_removed_but_the_unit_left_alone() -> None:
    plan = removal(None, managed=False, unit=unit_status(), site=True)
    assert plan.prepare == ()
    assert kinds(plan.route) == ["RemoveSite"]


# -- after the steps ------------------------------------------------------------------------


def settle(
    *,
    unit: UnitStatus | None = None,
    healthy: bool | None = True,
    site: str | None = SITE_HASH,
    unit_file: str | None = UNIT_HASH,
    caddy_error: str | None = None,
    desired_state: str = "running",
    previous: ServiceStatus | None = None,
    environment: str | None = None,
    environment_file: str | None = None,
    version_note: str | None = None,
) -> dict[str, Any]:
    scenario = converged()
    scenario.desired_state = desired_state
    scenario.environment = environment
    desired = replace(desired_of(scenario), version_note=version_note)
    plan = Plan(name="app", status={"deployed_version": NEW})
    settled = Settled(
        unit=unit or unit_status(),
        unit_file_hash=unit_file,
        environment_file_hash=environment_file,
        site_hash=site,
        healthy=healthy,
        checked_at=datetime(2026, 1, 1, tzinfo=UTC) if healthy is not None else None,
        caddy_error=caddy_error,
    )
    return conclude(desired, plan, settled, previous)


def test_a_healthy_instance_is_active_with_its_unit_s_figures() -> None:
    assert settle(unit=unit_status(cpu_usage_nsec=7)) == {
        "deployed_version": NEW,
        "state": "active",
        "config_match": True,
        "caddy_status": "configured",
        "active_state": "active",
        "sub_state": "running",
        "pid": 4242,
        "memory_bytes": 30_000_000,
        "cpu_usage_nsec": 7,
        "restarts": 0,
        "last_error": None,
        "health_ok": True,
        "last_health_check": datetime(2026, 1, 1, tzinfo=UTC),
    }


def test_an_unprobed_steady_instance_keeps_its_health_verdict_and_records_no_probe() -> None:
    changes = settle(healthy=None, previous=ServiceStatus("app", state="active", health_ok=True))
    assert changes["state"] == "active"
    assert "health_ok" not in changes and "last_health_check" not in changes


def test_an_unprobed_instance_never_seen_healthy_is_still_deploying() -> None:
    assert settle(healthy=None, previous=ServiceStatus("app", health_ok=None))["state"] == (
        "deploying"
    )


def test_a_refused_site_is_an_error_that_quotes_caddy() -> None:
    changes = settle(caddy_error="ambiguous site definition: x.test")
    assert changes["state"] == "error"
    assert changes["last_error"] == "Caddy refused the site: ambiguous site definition: x.test"


def test_a_stopped_service_is_inactive_once_its_unit_is_down_and_deploying_until_then() -> None:
    down = unit_status(active_state="inactive", sub_state="dead")
    stopped = settle(desired_state="stopped", unit=down, healthy=None)
    assert (stopped["state"], stopped["last_error"]) == ("inactive", None)
    assert settle(desired_state="stopped", healthy=None)["state"] == "deploying"


def test_an_unhealthy_failed_unit_is_an_error_with_systemd_s_reason() -> None:
    failed = unit_status(active_state="failed", result="exit-code", exec_main_status=1)
    changes = settle(unit=failed, healthy=False)
    assert changes["state"] == "error"
    assert changes["last_error"] == "unit failed: Result=exit-code, ExecMainStatus=1"
    assert changes["health_ok"] is False


def test_an_unhealthy_running_unit_is_still_deploying() -> None:
    assert settle(healthy=False)["state"] == "deploying"


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        (ServiceStatus("app", state="active", pid=4242), "error"),
        (ServiceStatus("app", state="error", pid=4242), "error"),
        (ServiceStatus("app", state="active", pid=1111), "deploying"),  # a new process
        (ServiceStatus("app", state="deploying", pid=4242), "deploying"),  # its boot
    ],
    ids=["was active", "was failing its probes", "another process", "still booting"],
)
def test_a_process_that_was_up_and_stops_answering_is_an_error_not_a_boot(
    previous: ServiceStatus, expected: str
) -> None:
    """As ``deploying`` the health prober skipped it and no restart came (a SIGSTOPped
    instance stayed 'deploying' for over a minute on a loaded machine)."""
    changes = settle(unit=unit_status(main_pid=4242), healthy=False, previous=previous)
    assert changes["state"] == expected
    if expected == "error":
        assert changes["last_error"] == "PocketBase (pid 4242) stopped answering its health check"


def test_a_rolled_back_version_keeps_its_reason_in_the_status() -> None:
    previous = ServiceStatus("app", failed_version=NEW, last_error="PocketBase 0.40.6 ...")
    assert settle(previous=previous)["last_error"] == "PocketBase 0.40.6 ..."
    other = ServiceStatus("app", failed_version="0.41.0", last_error="old news")
    assert settle(previous=other)["last_error"] is None


def test_config_match_needs_the_environment_file_as_rendered_too() -> None:
    assert settle(environment=ENV_HASH, environment_file=ENV_HASH)["config_match"] is True
    assert settle(environment=ENV_HASH, environment_file=EDITED)["config_match"] is False
    assert settle(environment=None, environment_file=EDITED)["config_match"] is False


def test_removal_takes_the_environment_file_away_too() -> None:
    observed = Observed(
        unit=UnitObservation(
            name="app",
            file_exists=False,
            file_hash=None,
            managed=False,
            status=None,
            environment_file_hash=ENV_HASH,
        ),
        site_hash=None,
    )
    plan = plan_removal("app", None, observed)
    assert plan.prepare == (WriteEnvironment(None),)
    assert plan.finish == (RemoveData(purge=False),)


def test_a_legacy_folder_hands_its_superusers_to_the_status() -> None:
    scenario = converged()
    scenario.dirs = ServiceDirState(Path("/srv/app"), Place.LEGACY, ("a@example.test",))
    assert plan_for(scenario).prepare == (MigrateFolder(("a@example.test",)),)


@pytest.mark.parametrize(
    ("site", "unit_file", "need_reload", "match", "caddy"),
    [
        (SITE_HASH, UNIT_HASH, False, True, "configured"),
        (EDITED, UNIT_HASH, False, False, "error"),
        (SITE_HASH, EDITED, False, False, "configured"),
        (SITE_HASH, UNIT_HASH, True, False, "configured"),
    ],
    ids=["all as rendered", "site differs", "unit file differs", "reload pending"],
)
def test_config_match_needs_both_files_as_rendered_and_nothing_to_reload(
    site: str, unit_file: str, need_reload: bool, match: bool, caddy: str
) -> None:
    changes = settle(
        site=site, unit_file=unit_file, unit=unit_status(need_daemon_reload=need_reload)
    )
    assert (changes["config_match"], changes["caddy_status"]) == (match, caddy)


@pytest.mark.parametrize(
    ("state", "caddy_error", "expected"),
    [("active", None, None), ("deploying", None, DEPLOYING_REQUEUE), ("error", "x", 60.0)],
    ids=["active: no requeue", "deploying: soon", "refused site: at the next resync"],
)
def test_requeue_after(state: str, caddy_error: str | None, expected: float | None) -> None:
    assert requeue_after(state, caddy_error, POLICY) == expected


def test_small_waves_start_instances_before_caddy_and_large_ones_after() -> None:
    assert [run_first(size) for size in (1, 4, 5, 64)] == [True, True, False, False]


@pytest.mark.parametrize(
    ("wave_size", "run", "expected"),
    [
        (1, (RestartUnit("configuration changed"),), True),
        (64, (StartUnit(),), True),
        (64, (RestartUnit("configuration changed"),), False),
        (64, (StopUnit(),), False),
        (64, (), True),
    ],
    ids=[
        "a small wave restarts before Caddy loads",
        "a large wave of new instances starts them while Caddy loads",
        "a large wave's restart waits for Caddy to have the new site",
        "a large wave's stop waits for Caddy too",
        "nothing to run: the order does not matter",
    ],
)
def test_instances_that_only_start_boot_while_caddy_loads(
    wave_size: int, run: tuple[Step, ...], expected: bool
) -> None:
    assert start_before_route(wave_size, run) is expected


def test_every_row_is_a_distinct_scenario() -> None:
    ids = [row.id for row in ROWS]
    assert len(ids) == len(set(ids)) >= 40
    assert dataclasses.is_dataclass(ROWS[0])


# -- downgrades ---------------------------------------------------------------------------

BACKUP_OF_OLD = DataBackup(
    OLD, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), Path("/b/pb_data-0.39.11-20260102T030405Z")
)
OLDER_BACKUP_OF_OLD = DataBackup(
    OLD, datetime(2025, 6, 1, tzinfo=UTC), Path("/b/pb_data-0.39.11-20250601T000000Z")
)


def downgrade_spec(allow: bool) -> ServiceSpec:
    return ServiceSpec.model_validate(
        {
            "project_name": "app",
            "port": 8100,
            "pocketbase_version": OLD,
            "domain": "app.test",
            "allow_downgrade": allow,
        }
    )


@pytest.mark.parametrize(
    ("allow", "backups", "target", "refused"),
    [
        (False, [BACKUP_OF_OLD], NEW, "set allow_downgrade to restore the backup taken before"),
        (True, [], NEW, "no backup of the data 0.39.11 ran on exists"),
        (False, [], NEW, "no backup of the data 0.39.11 ran on exists"),
        (True, [BACKUP_OF_OLD], OLD, None),
    ],
    ids=["not allowed", "allowed without a backup", "neither", "allowed with a backup"],
)
def test_a_lower_version_runs_only_when_allowed_and_its_data_can_come_back(
    allow: bool, backups: list[DataBackup], target: str, refused: str | None
) -> None:
    spec = downgrade_spec(allow)
    status = ServiceStatus("app", deployed_version=NEW)
    assert target_version(spec, status, backups) == target
    note = downgrade_refusal(spec, status, backups)
    if refused is None:
        assert note is None
    else:
        assert note is not None and refused in note and note.endswith("[VERSION_DOWNGRADE]")


def test_a_refusal_names_the_backup_that_allow_downgrade_would_restore() -> None:
    note = downgrade_refusal(
        downgrade_spec(False), ServiceStatus("app", deployed_version=NEW), [BACKUP_OF_OLD]
    )
    assert note is not None and "(2026-01-02 03:04:05 UTC)" in note


def test_a_version_not_below_the_deployed_one_is_never_a_downgrade() -> None:
    spec = downgrade_spec(False)
    assert downgrade_refusal(spec, ServiceStatus("app", deployed_version=OLD)) is None
    assert downgrade_refusal(spec, ServiceStatus("app", deployed_version=None)) is None
    assert downgrade_refusal(spec, None) is None
    assert target_version(spec, ServiceStatus("app", deployed_version="0.29.0")) == OLD


def test_the_newest_backup_of_each_version_is_the_one_restored() -> None:
    other = DataBackup(NEW, datetime(2027, 1, 1, tzinfo=UTC), Path("/b/pb_data-0.40.6-x"))
    assert newest_backups([OLDER_BACKUP_OF_OLD, other, BACKUP_OF_OLD]) == {
        OLD: BACKUP_OF_OLD,
        NEW: other,
    }


def test_of_two_backups_of_one_second_the_first_listed_is_restored() -> None:
    # list_backups lists newest first, a later copy of the same second (its -2) before it.
    later = DataBackup(OLD, BACKUP_OF_OLD.taken_at, Path(f"{BACKUP_OF_OLD.path}-2"))
    assert newest_backups([later, BACKUP_OF_OLD]) == {OLD: later}


def downgrade_pending(s: Scenario) -> None:
    """NEW runs; the spec asks for OLD with allow_downgrade, and OLD's data is backed up."""
    s.spec = {"pocketbase_version": OLD, "allow_downgrade": True}
    s.dirs = ServiceDirState(
        Path("/srv/app"), Place.PRIVATE, backups=(OLDER_BACKUP_OF_OLD, BACKUP_OF_OLD)
    )


def test_an_allowed_downgrade_backs_up_the_newer_data_then_restores_the_older() -> None:
    scenario = converged()
    downgrade_pending(scenario)
    plan = plan_for(scenario)
    assert plan.upgrade == Upgrade(NEW, OLD, restore=BACKUP_OF_OLD.path)
    assert plan.upgrade.downgrade
    assert plan.prepare[:4] == (
        EnsureRelease(NEW),
        StopUnit("upgrade"),
        BackupData(NEW),
        RestoreData(BACKUP_OF_OLD.path),
    )
    assert kinds(plan.run) == ["StartUnit"]
    assert plan.probe_deadline == POLICY.upgrade_health_deadline


def test_a_downgrade_whose_backup_went_is_not_planned_at_all() -> None:
    scenario = converged()
    downgrade_pending(scenario)
    scenario.dirs = ServiceDirState(Path("/srv/app"), Place.PRIVATE)
    with pytest.raises(DowngradeWithoutBackup):
        plan_for(scenario)


def test_a_downgrade_with_no_service_folder_seen_is_refused_naming_the_version() -> None:
    scenario = converged()
    downgrade_pending(scenario)
    scenario.dirs = None
    with pytest.raises(DowngradeWithoutBackup) as refused:
        plan_for(scenario)
    assert str(refused.value) == f"no backup of PocketBase {OLD}'s data to restore"


def test_a_change_between_two_spellings_of_one_version_restores_nothing() -> None:
    scenario = converged()
    upgrade_pending(scenario)
    assert scenario.status is not None
    scenario.status = replace(scenario.status, deployed_version="0.40.6-01")
    scenario.file_version = "0.40.6-01"
    scenario.spec = {"pocketbase_version": "0.40.6-1"}
    plan = plan_for(scenario)
    assert plan.upgrade == Upgrade("0.40.6-01", "0.40.6-1")
    assert not plan.upgrade.downgrade


def test_an_upgrade_restores_nothing() -> None:
    scenario = converged()
    upgrade_pending(scenario)
    assert plan_for(scenario).upgrade == Upgrade(OLD, NEW)


def test_a_refused_downgrade_is_the_error_of_a_service_that_keeps_running() -> None:
    changes = settle(version_note="Version 0.39.11 is lower ... [VERSION_DOWNGRADE]")
    assert changes["state"] == "active"
    assert changes["last_error"] == "Version 0.39.11 is lower ... [VERSION_DOWNGRADE]"


# -- crash loops --------------------------------------------------------------------------

GAVE_UP = {"active_state": "failed", "sub_state": "failed", "result": "start-limit-hit"}
# What systemd 252 shows for a process that kept exiting: its result stays exit-code
# (start-limit-hit is only set over a success) and NRestarts reached StartLimitBurst.
RESTARTED_OUT = {
    "active_state": "failed",
    "sub_state": "failed",
    "result": "exit-code",
    "n_restarts": START_LIMIT_BURST,
}
GAVE_UP_SHAPES = pytest.mark.parametrize(
    "gave_up", [GAVE_UP, RESTARTED_OUT], ids=["start-limit-hit", "restarted out"]
)


@GAVE_UP_SHAPES
def test_a_unit_systemd_gave_up_on_is_not_started_again_by_the_agent(
    gave_up: dict[str, Any],
) -> None:
    scenario = converged()
    on_unit(**gave_up, exec_main_status=1)(scenario)
    plan = plan_for(scenario)
    assert plan.run == () and plan.drift == ()


def test_a_unit_that_failed_without_restarting_out_is_started_again() -> None:
    scenario = converged()
    on_unit(**{**RESTARTED_OUT, "n_restarts": START_LIMIT_BURST - 1})(scenario)
    assert kinds(plan_for(scenario).run) == ["StartUnit"]


@GAVE_UP_SHAPES
def test_a_crash_looping_unit_is_started_again_when_its_configuration_changes(
    gave_up: dict[str, Any],
) -> None:
    scenario = converged()
    spec_changed(scenario)
    on_unit(**gave_up)(scenario)
    assert kinds(plan_for(scenario).run) == ["StartUnit"]


@GAVE_UP_SHAPES
def test_a_crash_loop_is_reported_as_such(gave_up: dict[str, Any]) -> None:
    changes = settle(unit=unit_status(**gave_up, exec_main_status=2), healthy=False)
    assert changes["state"] == "error"
    assert changes["last_error"].startswith("crash loop: PocketBase kept exiting")
    assert "last exit status 2" in changes["last_error"]
    assert f"after {START_LIMIT_BURST} restarts" in changes["last_error"]
    assert changes["last_error"].endswith(
        " restarts (its start limit). Fix the cause (see its logs), then start or restart the"
        " service"
    )


def test_a_unit_failed_once_is_an_error_but_no_crash_loop() -> None:
    once = unit_status(**{**RESTARTED_OUT, "n_restarts": 1}, exec_main_status=2)
    changes = settle(unit=once, healthy=False)
    assert changes["last_error"] == "unit failed: Result=exit-code, ExecMainStatus=2"


def test_a_failure_is_the_error_shown_even_when_the_version_asked_for_has_a_note() -> None:
    once = unit_status(**{**RESTARTED_OUT, "n_restarts": 1}, exec_main_status=2)
    changes = settle(unit=once, healthy=False, version_note="0.40.7 is not released yet")
    assert changes["last_error"] == "unit failed: Result=exit-code, ExecMainStatus=2"


def test_an_instance_systemd_is_about_to_restart_is_an_error_with_its_exit_status() -> None:
    waiting = unit_status(
        active_state="activating", sub_state="auto-restart", exec_main_status=1, n_restarts=3
    )
    changes = settle(unit=waiting, healthy=False)
    assert changes["state"] == "error"
    assert changes["last_error"] == (
        "PocketBase exited (status 1); systemd restarts it (3 restarts so far)"
    )


def test_an_instance_restarting_with_no_count_from_systemd_says_none_so_far() -> None:
    waiting = unit_status(
        active_state="activating", sub_state="auto-restart", exec_main_status=1, n_restarts=None
    )
    assert settle(unit=waiting, healthy=False)["last_error"] == (
        "PocketBase exited (status 1); systemd restarts it (0 restarts so far)"
    )


@pytest.mark.parametrize(
    ("previous", "restarts", "crashes"),
    [
        (None, 3, 0),
        (ServiceStatus("app", restarts=None), 3, 0),
        (ServiceStatus("app", restarts=2), None, 0),
        (ServiceStatus("app", restarts=2), 2, 0),
        (ServiceStatus("app", restarts=2), 5, 3),
        (ServiceStatus("app", restarts=5), 0, 0),
    ],
    ids=["first look", "no count before", "no count now", "no rise", "a rise", "reset by a start"],
)
def test_only_a_rise_of_systemds_restart_count_is_counted_as_crashes(
    previous: ServiceStatus | None, restarts: int | None, crashes: int
) -> None:
    assert restarted_by_systemd(previous, restarts) == crashes


def test_the_crash_loop_event_is_recorded_when_the_loop_begins_not_at_every_reconcile() -> None:
    loop = "crash loop: PocketBase kept exiting"
    assert crash_loop_began(None, loop)
    assert crash_loop_began(ServiceStatus("app", last_error="unit failed: x"), loop)
    assert not crash_loop_began(ServiceStatus("app", last_error=loop + " (earlier)"), loop)
    assert not crash_loop_began(ServiceStatus("app"), "unit failed: Result=exit-code")
    assert not crash_loop_began(ServiceStatus("app"), None)


# -- the catch-all and certificates ---------------------------------------------------------


def test_the_catch_all_is_written_when_its_file_differs_and_removed_when_unwanted() -> None:
    text = "http:// {\n}\n"
    assert plan_catch_all(text, None) == Plan(CATCH_ALL, route=(WriteSite(text),))
    assert plan_catch_all(text, EDITED) == Plan(CATCH_ALL, route=(WriteSite(text),))
    assert plan_catch_all(text, sha256_text(text)) == Plan(CATCH_ALL)
    assert plan_catch_all(None, EDITED) == Plan(CATCH_ALL, route=(RemoveSite(),))
    assert plan_catch_all(None, None) == Plan(CATCH_ALL)


NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ISSUED = NOW - timedelta(days=10)


def cert_status(**changes: Any) -> ServiceStatus:
    base = ServiceStatus(
        "app",
        certificate_not_before=ISSUED,
        certificate_not_after=ISSUED + timedelta(days=90),
        certificate_checked_at=NOW - timedelta(seconds=61),
    )
    return replace(base, **changes)


def none_yet(checked_ago: float) -> ServiceStatus:
    """No certificate seen yet, the last question ``checked_ago`` seconds ago."""
    return cert_status(
        certificate_not_before=None,
        certificate_not_after=None,
        certificate_checked_at=NOW - timedelta(seconds=checked_ago),
    )


@pytest.mark.parametrize(
    ("https", "status", "written", "due"),
    [
        (False, None, True, False),
        (True, None, False, True),
        (True, cert_status(certificate_checked_at=None), False, True),
        (True, cert_status(), True, True),
        (True, cert_status(), False, False),
        (True, cert_status(certificate_not_after=ISSUED + timedelta(days=12)), False, True),
        (True, cert_status(certificate_not_after=NOW - timedelta(days=1)), False, True),
        (True, none_yet(61), False, True),
        (True, none_yet(5), False, False),
        (
            True,
            cert_status(
                certificate_not_after=ISSUED + timedelta(days=12),
                certificate_checked_at=NOW - timedelta(seconds=5),
            ),
            False,
            False,
        ),
        (True, none_yet(60), False, True),
        (True, cert_status(certificate_not_before=None), False, True),
        (
            True,
            cert_status(
                certificate_not_before=NOW - timedelta(days=60),
                certificate_not_after=NOW + timedelta(days=30),
            ),
            False,
            True,
        ),
        (
            True,
            cert_status(
                certificate_not_before=NOW - timedelta(days=60),
                certificate_not_after=NOW + timedelta(days=30, seconds=1),
            ),
            False,
            False,
        ),
    ],
    ids=[
        "no TLS, never",
        "never asked",
        "never asked for this status",
        "the site was just written",
        "a valid certificate, far from renewal",
        "inside the renewal window",
        "expired",
        "none yet, a resync later",
        "none yet, asked moments ago",
        "due for renewal, asked moments ago",
        "none yet, asked exactly one resync ago",
        "only its end known",
        "exactly at the start of its last third",
        "just before its last third",
    ],
)
def test_caddy_is_asked_for_the_certificate_only_when_it_may_have_changed(
    https: bool, status: ServiceStatus | None, written: bool, due: bool
) -> None:
    assert certificate_check_due(https, status, site_written=written, now=NOW, interval=60.0) is due


@pytest.mark.parametrize(
    ("mutate", "reset_failed"),
    [
        (brand_new, False),  # never loaded: nothing to clear, one call less before start
        (setting(unit=None), False),
        (on_unit(active_state="failed", sub_state="failed"), True),
        (on_unit(active_state="inactive", sub_state="dead"), True),
    ],
)
def test_a_start_clears_a_failed_state_only_for_a_unit_systemd_has_loaded(
    mutate: Callable[[Scenario], None], reset_failed: bool
) -> None:
    scenario = converged()
    mutate(scenario)
    starts = [step for step in plan_for(scenario).run if isinstance(step, StartUnit)]
    assert [step.reset_failed for step in starts] == [reset_failed]
