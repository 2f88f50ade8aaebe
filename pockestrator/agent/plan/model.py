"""What a plan is made of: the desired service, the observation and the agent's policy it is
decided from, the ``Plan`` it returns (steps in four groups, drift, status), and the unit
states the decisions read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pockestrator.agent.steps import (
    Drift,
    Step,
)
from pockestrator.controllers.pbsettings import DesiredSettings
from pockestrator.controllers.servicedirs import ServiceDirState
from pockestrator.controllers.systemd import START_LIMIT_BURST, UnitObservation
from pockestrator.controllers.systemd.bus import UnitStatus
from pockestrator.specs.model import ServiceSpec

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
    """Whether the run group goes before the route group in a wave of ``wave_size``."""
    return wave_size <= SMALL_WAVE
