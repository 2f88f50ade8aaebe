"""When a settings check may take the host's part from the last quiet reconcile's look:
only for a steady, healthy service running the process its verdict was recorded with."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace
from typing import Any

import pytest

from pockestrator.agent.observe_round import Look
from pockestrator.agent.plan.model import Desired
from pockestrator.agent.settings_check import runs_in, steady
from pockestrator.controllers.systemd.cgroups import process_cgroup, systemd_cgroup
from pockestrator.controllers.systemd.unit_state import UnitStatus
from pockestrator.specs.model import ServiceSpec
from pockestrator.specs.store import ServiceStatus
from tests.testbed.builders import running_unit


def gone_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


PID = os.getpid()  # this very process: alive while the test runs


# This process's cgroup as a unit's ``ControlGroup`` would name it (the parser is pinned
# by the table at the end).
CGROUP = process_cgroup(PID)


def unit(**changes: Any) -> UnitStatus:
    return running_unit(**{"main_pid": PID, "control_group": CGROUP, **changes})


def desired(**spec: Any) -> Desired:
    values = {"project_name": "app", "port": 8100, "pocketbase_version": "0.40.6"}
    values |= {"domain": "app.test", **spec}
    model = ServiceSpec.model_validate(values)
    return Desired(
        spec=model,
        requested_version=model.pocketbase_version,
        desired_state="running",
        generation=3,
        unit_text="[Unit]\n",
        unit_hash="u" * 64,
        site_text="site {}\n",
        site_hash="s" * 64,
        environment_text=None,
        environment_hash=None,
    )


def status(**changes: Any) -> ServiceStatus:
    values: dict[str, Any] = {
        "state": "active",
        "health_ok": True,
        "pid": PID,
        "observed_generation": 3,
        **changes,
    }
    return ServiceStatus("app", **values)


def look(status: UnitStatus | None) -> Look:
    return Look((), ("loaded", "active", "running", False), (), status)


@pytest.mark.parametrize(
    ("wanted", "found", "seen", "expected"),
    [
        (desired(), status(), unit(), True),
        (desired(), None, unit(), False),
        (desired(), status(state="error"), unit(), False),
        (desired(), status(last_error="PocketBase settings not applied: x"), unit(), False),
        (desired(), status(health_ok=None), unit(), False),
        (desired(), status(health_ok=False), unit(), False),
        # a verdict of another process (a restart since the verdict was recorded)
        (desired(), status(pid=PID + 1), unit(), False),
        (desired(), status(pid=None), unit(main_pid=None), False),
        # the recorded pid, handed out again to a process of another cgroup
        (desired(), status(), unit(control_group="/system.slice/other.service"), False),
        (desired(), status(), unit(control_group=None), False),
        # a spec the last reconcile did not act on yet
        (desired(), status(observed_generation=2), unit(), False),
        (desired(), status(), unit(active_state="inactive", sub_state="dead"), False),
        (desired(), status(), None, False),
        # a service that sleeps, or runs another version than asked: the full way
        (desired(sleep_after="15m"), status(), unit(), False),
        (replace(desired(), version_note="a downgrade was refused"), status(), unit(), False),
        (replace(desired(), desired_state="stopped"), status(), unit(), False),
    ],
)
def test_a_settings_check_reuses_the_look_only_for_a_steady_service(
    wanted: Desired, found: ServiceStatus | None, seen: UnitStatus | None, expected: bool
) -> None:
    assert steady(wanted, found, look(seen)) is expected


def test_a_process_that_exited_since_the_look_is_not_steady() -> None:
    dead = gone_pid()
    assert not runs_in(dead, CGROUP)
    assert runs_in(PID, CGROUP)
    assert not steady(desired(), status(pid=dead), look(unit(main_pid=dead)))


APP = "/system.slice/app-pocketbase.service"


@pytest.mark.parametrize(
    ("text", "path"),
    [
        (f"0::{APP}\n", APP),
        # a user manager's own system.slice: the whole path, which is not the unit's
        (
            f"0::/user.slice/user@1000.service{APP}\n",
            f"/user.slice/user@1000.service{APP}",
        ),
        # a nested manager's units: the kernel's path, the manager's root included
        (f"0::/bed.scope{APP}\n", f"/bed.scope{APP}"),
        # the hybrid layout: v1 controllers' lines, the named systemd hierarchy, v2's
        (f"4:memory:/other\n1:name=systemd:{APP}\n0::/\n", APP),
        (f"0::/\n1:name=systemd:{APP}\n", APP),
        ("0::/\n", "/"),
        ("4:memory:/other\n", None),
        ("", None),
    ],
)
def test_a_processs_cgroup_is_read_from_systemds_hierarchy(text: str, path: str | None) -> None:
    assert systemd_cgroup(text) == path


def test_a_process_counts_as_the_units_only_in_exactly_its_cgroup() -> None:
    assert CGROUP is not None and runs_in(PID, CGROUP)
    assert not runs_in(PID, None)
    assert not runs_in(PID, CGROUP.rstrip("/") + "/system.slice/app-pocketbase.service")
    if CGROUP != "/":
        assert not runs_in(PID, CGROUP.rsplit("/", 1)[0] or "/")  # its parent
