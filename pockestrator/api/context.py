"""What the REST API may use of the running agent: a narrow, typed interface, read-only on the host.

The agent starts the API and hands it an object with this shape. Writes go to the store and
become reconciles (``enqueue``); the only action on the host is the one-off restart the agent
offers. Everything the API shows about the host comes through ``HostView``, which the agent
implements with the same controller observations the reconciler uses
(``agent.hostview``): so the API imports no controller, never speaks D-Bus and never reads
a rendered file itself, and its answers cannot disagree with what the reconciler sees.

The types here are the API's own read model of the host, in its terms: what systemd says
about a unit (``UnitState``), what the host shows for a service (``ServiceRuntime``), and
the raw facts of a host check (``HostFacts``), which ``api.hostcheck`` turns into the
reference's errors and warnings.
Callers are authenticated against the account store (``accounts``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pockestrator.accounts.store import AccountStore
from pockestrator.config import AgentConfig
from pockestrator.files import HashedFile
from pockestrator.journal import UnitScope
from pockestrator.specs.public_url import PublicPorts
from pockestrator.specs.store import ServiceStatus, Store
from pockestrator.telemetry import AgentMetrics

RUNNING_STATES = ("active", "reloading", "activating")


class ControlFailed(Exception):
    """systemd refused or failed a control action; the message says why."""


@dataclass(frozen=True)
class UnitState:
    """What systemd says about a service's unit right now (None: unknown)."""

    exists: bool
    active_state: str
    sub_state: str
    main_pid: int | None
    memory_bytes: int | None
    restarts: int | None
    active_since: datetime | None
    need_daemon_reload: bool
    memory_max_bytes: int | None = None  # the cgroup's limit; None: unlimited
    cpu_seconds: float | None = None
    memory_peak_bytes: int | None = None  # the cgroup's highest use (cgroup files only)

    @property
    def is_running(self) -> bool:
        return self.active_state in RUNNING_STATES


@dataclass(frozen=True)
class ServiceRuntime:
    """What the host shows for one service now: the unit, the site, whether files match."""

    unit: UnitState | None
    unit_error: str | None
    caddy_status: str
    config_match: bool | None
    checked_at: datetime

    @property
    def is_running(self) -> bool:
        return self.unit is not None and self.unit.is_running

    @property
    def systemd_status(self) -> str:
        if self.unit is None:
            return "unknown"
        if not self.unit.exists:
            return "not-found"
        return self.unit.active_state or "unknown"

    @property
    def sub_state(self) -> str | None:
        return self.unit.sub_state if self.unit is not None else None

    @property
    def active_since(self) -> datetime | None:
        return self.unit.active_since if self.unit is not None and self.unit.is_running else None

    def error_message(self, status: ServiceStatus | None) -> str | None:
        if status is not None and status.last_error:
            return status.last_error
        return self.unit_error


@dataclass(frozen=True)
class HostFacts:
    """What a host check found, checked for real: each ``*_problem`` is None when fine."""

    systemd_version: str | None
    systemd_problem: str | None
    directory_problems: dict[str, str | None]  # systemd_dir, base_dir, caddy_sites_dir, database
    caddyfile_problem: str | None
    caddy_binary: bool
    caddy_running: bool
    tools: dict[str, bool] = field(default_factory=dict)
    # Caddy's admin address when on TCP, where every instance can reach it (else None).
    caddy_admin_exposed: str | None = None
    # The database's folder has no space left (or its last write failed for want of it).
    database_full: bool = False


@dataclass(frozen=True)
class BackupInfo:
    """One snapshot of a service, as the API shows it (``files`` only when asked)."""

    backup_id: str
    kind: str
    created_at: datetime
    size_bytes: int
    file_count: int
    pocketbase_version: str | None
    verified_at: datetime | None = None
    verified_ok: bool | None = None
    verification_detail: str | None = None
    files: tuple[HashedFile, ...] = ()
    path: Path | None = None  # the snapshot's folder, for a download; never shown
    locations: tuple[str, ...] = ("local",)  # "local" and the targets that hold it


@dataclass(frozen=True)
class ArchiveInfo:
    """A deleted service's archived folder, as the API shows it."""

    archive_id: str
    service: str
    archived_at: datetime
    size_bytes: int


@dataclass(frozen=True)
class ReleaseInfo:
    """One app release of a service, as the API shows it."""

    release_id: str
    created_at: datetime
    created_by: str
    source: str
    size_bytes: int
    file_count: int
    live: bool
    # File names against the release before it in the list (the one deployed before).
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceObservation:
    """What ``/metrics`` reports of one service besides its status: the unit now, and its
    disk facts (``pb_data``'s size, when the newest complete snapshot was taken), which may
    be up to a minute old (a walk of every ``pb_data`` per scrape would cost more than the
    scrape)."""

    name: str
    unit: UnitState | None
    data_bytes: int | None = None
    last_backup_at: datetime | None = None


@dataclass(frozen=True)
class HistoryPoint:
    """One interval of a service (or of the host's totals) in the agent's short history.
    None: not known for that interval (a first round, a restart, no requests)."""

    at: datetime
    memory_bytes: int | None
    cpu_cores: float | None  # CPU seconds per second: 1.0 is one core busy
    requests_per_second: float | None
    errors_per_second: float | None  # answers 500-599
    p95_seconds: float | None  # of the interval's requests, through Caddy


class HistoryView(Protocol):
    """The agent's short history, read-only (``agent.history``)."""

    def series(self, name: str) -> list[HistoryPoint]: ...

    def host(self) -> list[HistoryPoint]: ...

    def memory_max(self, name: str) -> int | None:
        """The service's MemoryMax at the last round; None: unlimited or unknown."""
        ...


class HostView(Protocol):
    """The host as the reconciler observes it, read-only."""

    async def runtime(self, name: str, status: ServiceStatus | None) -> ServiceRuntime:
        """The unit and site of ``name`` now, compared with what was last rendered."""
        ...

    async def facts(self) -> HostFacts:
        """Every host check, run now."""
        ...

    def public_port(self) -> int | None:
        """The port Caddy serves the instances on, when not the scheme's default."""
        ...

    def public_ports(self) -> PublicPorts:
        """Caddy's HTTP and HTTPS ports, for the services' URLs (``specs.public_url``)."""
        ...

    async def versions(self) -> Sequence[str]:
        """Deployable PocketBase versions, newest first (``specs.validation.ReleaseIndex``)."""
        ...

    async def backups(self, name: str) -> Sequence[BackupInfo]:
        """The complete snapshots of ``name``, newest first."""
        ...

    async def backup(self, name: str, backup_id: str) -> BackupInfo | None:
        """One snapshot with its files; None when ``name`` has no such snapshot."""
        ...

    async def observe_services(self, names: Sequence[str]) -> Sequence[ServiceObservation]:
        """Every service of ``names`` as ``/metrics`` shows it, observed now."""
        ...

    async def caddy_metrics(self) -> str | None:
        """Caddy's own metrics text (per host when the Caddyfile turns that on), or None."""
        ...

    async def archives(self) -> Sequence[ArchiveInfo]:
        """The deleted services' archived folders, newest first, with disk use."""
        ...

    async def data_backups(self, name: str) -> Mapping[str, datetime]:
        """When the newest backup of each version's data of ``name`` was taken (the
        backups a downgrade can restore)."""
        ...

    async def app_releases(self, name: str) -> Sequence[ReleaseInfo]:
        """The app releases of ``name``, newest first."""
        ...

    async def journal_scope(self) -> UnitScope:
        """The manager of the instances' units and its cgroup, to attribute their logs."""
        ...


class AgentContext(Protocol):
    @property
    def config(self) -> AgentConfig: ...

    @property
    def store(self) -> Store: ...

    @property
    def accounts(self) -> AccountStore: ...

    @property
    def host(self) -> HostView: ...

    @property
    def started_at(self) -> datetime:
        """When the agent started (UTC); uptime is measured from it."""
        ...

    def enqueue(self, name: str) -> None:
        """Ask for a reconcile of ``name`` (desired state changed)."""

    async def wait_reconciled(self, name: str, timeout: float) -> bool:
        """Wait until a reconcile of ``name`` that started after this call has finished."""
        ...

    async def restart_service(self, name: str) -> None:
        """A one-off restart (the desired state stays ``running``); a unit systemd does not
        know yet is left to the reconcile. Raises ``ControlFailed``."""

    def queue_depth(self) -> int:
        """Keys waiting to be reconciled now."""
        ...

    @property
    def history(self) -> HistoryView: ...

    @property
    def metrics(self) -> AgentMetrics:
        """The agent's own instruments (reconciles, waves, API requests, probes)."""
        ...

    def sleeping(self, name: str) -> bool:
        """Whether the service sleeps now (``sleep_after``): its status shows ``sleeping``."""
        ...
