"""The vocabulary of a plan: each step one thing to do to the host, and drift found on it.

Steps are small frozen values, so plans compare, print and test as data; ``describe`` is the
line a step leaves in the service's event log. ``agent.plan`` decides which steps a
reconcile needs; ``agent.apply`` maps each one to a controller call.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, dataclass_transform


@dataclass_transform(frozen_default=True)
class Step:
    """One thing to do to the host (a plan's, or a backup plan's: ``agent.backup_plan``),
    each subclass made a frozen dataclass here, not decorated each time. ``describe`` is
    the line the event log gets: ``said=`` on the class line, formatted with the step's
    fields (``"pruned on {target}"``), unless the step has a describe of its own."""

    said: ClassVar[str]

    def __init_subclass__(cls, said: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if said:
            cls.said = said
        elif cls.describe is Step.describe:
            raise TypeError(f"step {cls.__name__} needs said= or a describe of its own")
        dataclass(frozen=True)(cls)

    def describe(self) -> str:
        return self.said.format_map(vars(self))


class EnsureRelease(Step):
    """Have another version's binary cached (an upgrade's way back) before anything stops."""

    version: str

    def describe(self) -> str:
        return f"PocketBase {self.version} cached"


class MigrateFolder(Step, said="service folder from an earlier agent cleaned up"):
    """Clean up a folder an earlier agent made (its binary, its marker file), keeping the
    superusers that marker names; systemd moves the folder to the instance's own dynamic
    user at the next start."""

    superusers: tuple[str, ...] = ()


class WriteEnvironment(Step):
    """Write the instance's root-only environment file (None: remove it)."""

    text: str | None

    def describe(self) -> str:
        return "environment file written" if self.text is not None else "environment file removed"


class WriteUnit(Step, said="unit file written"):
    text: str


class DaemonReload(Step, said="daemon-reload"):
    """One daemon-reload for the whole wave; its size orders the run and route groups."""


class LoadNewUnit(Step, said="unit file loaded by systemd at its start (no daemon-reload)"):
    """A unit systemd holds no unit for (``not-found``): no daemon-reload, since systemd
    loads a unit file that appeared after its last reload at the first reference to the
    name (its unit cache is stale once the folder changed; systemd 252 retries the load).
    It still joins the daemon-reload wave, whose size orders the run and route groups."""


class EnableUnit(Step, said="enabled"):
    """Have systemd start the unit at boot."""


class DisableUnit(Step, said="disabled"):
    """No start at boot any more."""


class CreateSuperuser(Step, said="first superuser created"):
    email: str


class StartUnit(Step, said="started"):
    """Clear a failed state (and the start limit's count) and start the unit.

    ``reset_failed`` is False for a unit systemd had never loaded: it has no failure or
    count to clear, and the call was one round trip before a new instance's start.
    """

    reset_failed: bool = True


class StopUnit(Step):
    reason: Literal["desired state", "upgrade", "removal", "sleep"] = "desired state"

    def describe(self) -> str:
        if self.reason == "sleep":
            return "put to sleep (idle)"
        return "stopped" if self.reason != "upgrade" else "stopped for upgrade"


class RestartUnit(Step):
    """``configuration changed``: a new unit file; ``health``: the probes kept failing."""

    reason: Literal["configuration changed", "health"]
    failures: int = 0

    def describe(self) -> str:
        return f"restarted ({self.reason})"


class WriteSite(Step, said="caddy site applied"):
    text: str


class RemoveSite(Step, said="caddy site removed"):
    """Take the service's Caddy site away."""


class RemoveUnitFile(Step, said="unit file removed"):
    """Delete the service's unit file (a removal)."""


class BackupData(Step, said="pb_data backed up"):
    """Copy ``pb_data`` aside (the unit is stopped) so that a failed upgrade can go back;
    the backup is named by ``version``, the one that wrote the data."""

    version: str | None = None


class RestoreData(Step):
    """A downgrade: put back the backup taken before the upgrade from the older version
    (the unit is stopped; the data it replaces is kept beside the backups)."""

    backup: Path

    def describe(self) -> str:
        return f"pb_data restored from {self.backup}"


class RemoveData(Step):
    """Archive the service folder, or delete it when the deletion asked for a purge."""

    purge: bool

    def describe(self) -> str:
        return "data purged" if self.purge else "data archived"


class CreateAgentSuperuser(Step, said="the agent's superuser created in PocketBase"):
    """Make the agent's own superuser in the instance (a new password), to reach its
    settings through its API."""


class ApplySettings(Step):
    """Send these declared settings (a repair: those found changed) and read them back."""

    fields: tuple[str, ...]
    repair: bool = False

    def describe(self) -> str:
        done = "restored" if self.repair else "applied"
        return f"PocketBase settings {done}: {', '.join(self.fields)}"


@dataclass(frozen=True)
class Drift:
    """Something on the host that differs from what the agent last made it."""

    what: Literal["unit file", "environment file", "caddy site", "run state", "pocketbase settings"]
    found: str
    action: str
    before_hash: str | None
    after_hash: str | None

    def message(self) -> str:
        return f"{self.what}: {self.found}; {self.action}"

    def details(self) -> dict[str, Any]:
        """Every field by its name, for the drift event's details."""
        return asdict(self)
