"""The read-only host view the REST API gets: the reconciler's observations, in the API's terms.

``api.context.HostView`` is what the API may know about the host; this is the agent's side
of it. A service's runtime comes from the same ``SystemdUnits.observe`` the reconciler
plans from, and the site snippet's hash likewise, compared with the hashes the reconciler
last recorded, so "config_match" means what the host holds at this moment. Host checks are
real: a file is created (and removed) in each folder the agent writes, systemd is asked
over D-Bus for its version, Caddy's binary is looked up and Caddy asked whether it runs.
Every question to systemd or Caddy is bounded in time and answers "unknown" (with the
reason) rather than failing the request.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import structlog

from pockestrator.agent.controllers import Controllers
from pockestrator.agent.plan.versions import newest_backups
from pockestrator.agent.unitfacts import UnitFacts
from pockestrator.api.context import (
    ArchiveInfo,
    BackupInfo,
    HostFacts,
    ReleaseInfo,
    ServiceObservation,
    ServiceRuntime,
    UnitState,
)
from pockestrator.clock import utc_now
from pockestrator.config import AgentConfig
from pockestrator.controllers.apps import file_diff
from pockestrator.controllers.caddy.caddyfile import (
    admin_address,
    admin_reachable_by_instances,
    public_ports,
)
from pockestrator.controllers.servicedirs.usage import data_usage
from pockestrator.controllers.snapshots import Snapshot, SnapshotError
from pockestrator.controllers.snapshots.manifest import Manifest, ManifestError
from pockestrator.controllers.systemd.bus import (
    MANAGER_INTERFACE,
    MANAGER_PATH,
    PROPERTIES_INTERFACE,
)
from pockestrator.controllers.systemd.unit_state import UnitStatus
from pockestrator.journal import UnitScope
from pockestrator.specs.copying import copied
from pockestrator.specs.grammar import LOCAL_TARGET
from pockestrator.specs.public_url import (
    HTTP_DEFAULT_PORT,
    HTTPS_DEFAULT_PORT,
    PublicPorts,
)
from pockestrator.specs.store import ServiceStatus

log = structlog.get_logger("pockestrator.hostview")

QUERY_TIMEOUT = 5.0
# pb_data's size and the newest snapshot change slowly; a scrape every 15 s need not walk
# every instance's files each time.
DISK_FACTS_MAX_AGE = 60.0
# (measured at, monotonic; pb_data bytes; when the newest snapshot was taken)
DiskFacts = tuple[float, int | None, datetime | None]
CADDYFILE_READ_MAX = 1024 * 1024


class AgentHostView:
    """``api.context.HostView`` over the agent's controllers.

    ``config`` is asked each time: a SIGHUP replaces the agent's configuration.
    """

    def __init__(
        self,
        config: Callable[[], AgentConfig],
        controllers: Controllers,
        database_full: Callable[[], bool] = lambda: False,
    ) -> None:
        self._config = config
        self._database_full = database_full
        self.bus = controllers.bus
        self.units = controllers.units
        self.sites = controllers.sites
        self.releases = controllers.releases
        self.snapshots = controllers.snapshots
        self.dirs = controllers.dirs
        self.apps = controllers.apps
        self._manager_cgroup: str | None = None
        self._disk_cache: dict[str, DiskFacts] = {}
        self._disk_refresh: asyncio.Task[None] | None = None
        self.unit_facts = UnitFacts(controllers.bus)

    async def runtime(self, name: str, status: ServiceStatus | None) -> ServiceRuntime:
        unit: UnitState | None = None
        unit_error: str | None = None
        unit_file_hash: str | None = None
        try:
            observed = await asyncio.wait_for(self.units.observe(name), QUERY_TIMEOUT)
        except Exception as exc:  # systemd's answer is unknown; say why instead of failing
            unit_error = f"systemd did not answer: {exc}"
            unit_file_hash = self.units.observe_files(name).file_hash
        else:
            unit_file_hash = observed.file_hash
            unit = unit_state(observed.status) if observed.status is not None else None
        snippet = self._snippet_hash(name)
        config_match: bool | None = None
        if status is not None and status.systemd_config_hash and status.caddy_config_hash:
            config_match = (
                unit_file_hash == status.systemd_config_hash
                and snippet == status.caddy_config_hash
                and not (unit is not None and unit.need_daemon_reload)
            )
        return ServiceRuntime(
            unit=unit,
            unit_error=unit_error,
            caddy_status=caddy_status(status, snippet),
            config_match=config_match,
            checked_at=utc_now(),
        )

    def _snippet_hash(self, name: str) -> str | None:
        try:
            return self.sites.snippet_hash(name)
        except (OSError, ValueError):
            return None

    @property
    def config(self) -> AgentConfig:
        return self._config()

    async def facts(self) -> HostFacts:
        config = self.config
        directories = asyncio.create_task(asyncio.to_thread(self._directory_problems))
        version, systemd_problem = await self._systemd_version()
        caddy_running = await self._caddy_running()
        problems = await directories
        caddy_binary = find_executable(config.caddy_binary)
        return HostFacts(
            caddy_admin_exposed=self._caddy_admin_exposed(),
            systemd_version=version,
            systemd_problem=systemd_problem,
            directory_problems={key: problems[key] for key in problems if key != "caddyfile"},
            caddyfile_problem=problems["caddyfile"],
            database_full=self._database_full() or no_space_left(config.database.parent),
            caddy_binary=caddy_binary,
            caddy_running=caddy_running,
            tools={
                "systemctl": find_executable("systemctl"),
                "journalctl": find_executable("journalctl"),
                "caddy": caddy_binary,
            },
        )

    def _directory_problems(self) -> dict[str, str | None]:
        config = self.config
        return {
            "systemd_dir": probe_directory(config.systemd_dir),
            "base_dir": probe_directory(config.base_dir),
            "caddy_sites_dir": probe_directory(config.caddy_sites_dir),
            "database": probe_directory(config.database.parent),
            "caddyfile": probe_file(config.caddy_config),
        }

    async def _systemd_version(self) -> tuple[str | None, str | None]:
        """(version, None) when systemd answers over D-Bus, else (None, why not)."""
        if not self.bus.connected:
            return None, "the D-Bus connection to systemd is closed"
        try:
            value = await self._manager_property("Version")
        except Exception as exc:  # any failure means "not reachable"; the text says why
            return None, f"systemd does not answer over D-Bus: {exc}"
        return str(value) if value is not None else "unknown", None

    async def _manager_property(self, name: str) -> object:
        """One property of systemd's manager object, bounded in time."""
        reply = await asyncio.wait_for(
            self.bus.call(
                "Get",
                "ss",
                [MANAGER_INTERFACE, name],
                path=MANAGER_PATH,
                interface=PROPERTIES_INTERFACE,
            ),
            QUERY_TIMEOUT,
        )
        return getattr(reply[0], "value", reply[0]) if reply else None

    async def _caddy_running(self) -> bool:
        try:
            return await asyncio.wait_for(self.sites.caddy_running(), QUERY_TIMEOUT)
        except Exception:  # not running, not reachable or timed out all mean "no"
            return False

    def _main_caddyfile(self) -> str | None:
        try:
            with self.config.caddy_config.open("rb") as file:
                return file.read(CADDYFILE_READ_MAX).decode("utf-8", errors="replace")
        except OSError:
            return None

    def _caddy_admin_exposed(self) -> str | None:
        text = self._main_caddyfile()
        if text is None:
            return None
        address = admin_address(text)
        return address if admin_reachable_by_instances(address) else None

    def public_ports(self) -> PublicPorts:
        text = self._main_caddyfile()
        return PublicPorts() if text is None else public_ports(text)

    def public_port(self) -> int | None:
        return public_port(self.public_ports(), https=self.config.caddy_tls != "off")

    async def versions(self) -> Sequence[str]:
        return await self.releases.versions()

    async def backups(self, name: str) -> Sequence[BackupInfo]:
        """The local snapshots and those only the off-site targets hold, newest first."""
        local = [backup_info(s) for s in await self.snapshots.observe(name)]
        remote: dict[str, tuple[Manifest, list[str]]] = {}
        for found in await self.snapshots.remote(name):
            held = remote.setdefault(found.manifest.snapshot_id, (found.manifest, []))
            held[1].append(found.target)
        merged = []
        for info in local:
            targets = remote.pop(info.backup_id, (None, []))[1]
            extra = sorted(set(targets) - set(info.locations))
            merged.append(replace(info, locations=(*info.locations, *extra)))
        merged += [remote_info(m, tuple(sorted(t))) for m, t in remote.values()]
        merged.sort(key=lambda info: (info.created_at, info.backup_id), reverse=True)
        return merged

    async def backup(self, name: str, backup_id: str) -> BackupInfo | None:
        try:
            snapshot = await asyncio.to_thread(self.snapshots.get, name, backup_id)
        except (SnapshotError, ManifestError):
            held = [
                found
                for found in await self.snapshots.remote(name)
                if found.manifest.snapshot_id == backup_id
            ]
            if not held:
                return None
            targets = tuple(sorted(found.target for found in held))
            return remote_info(held[0].manifest, targets, with_files=True)
        return backup_info(snapshot, with_files=True)

    async def observe_services(self, names: Sequence[str]) -> Sequence[ServiceObservation]:
        """Every unit now in one look (``agent.unitfacts``); disk facts from a cache: a
        service not measured yet (new, or its pb_data not there yet) is measured now, and
        the cache is refreshed off the scrape, in the background, when older than
        ``DISK_FACTS_MAX_AGE`` (walking every pb_data is the dearest part of a look)."""
        try:
            units: Sequence[UnitState | None] = await asyncio.wait_for(
                self.unit_facts.look(names), QUERY_TIMEOUT
            )
        except Exception as exc:  # unknown for this look; the unit metrics are left out
            log.warning("systemd did not answer for the units", error=str(exc)[:200])
            units = [None] * len(names)
        cache = self._disk_cache
        missing = [name for name in names if name not in cache or cache[name][1] is None]
        if missing:
            cache.update(await asyncio.to_thread(self._measure_disks, missing))
        now = time.monotonic()
        stale = [name for name in names if now - cache[name][0] > DISK_FACTS_MAX_AGE]
        if stale and (self._disk_refresh is None or self._disk_refresh.done()):
            self._disk_refresh = asyncio.create_task(self._refresh_disks(stale))
        wanted = set(names)
        for name in [name for name in cache if name not in wanted]:
            del cache[name]  # a removed service
        return [
            ServiceObservation(name, unit, *cache[name][1:])
            for name, unit in zip(names, units, strict=True)
        ]

    async def _refresh_disks(self, names: list[str]) -> None:
        try:
            measured = await asyncio.to_thread(self._measure_disks, names)
        except Exception as exc:  # the old figures stay; the next look tries again
            log.warning("pb_data sizes not measured", error=str(exc)[:200])
            return
        for name, facts in measured.items():
            if name in self._disk_cache:  # not removed meanwhile
                self._disk_cache[name] = facts

    def _measure_disks(self, names: list[str]) -> dict[str, DiskFacts]:
        return {name: (time.monotonic(), *self._measure_disk(name)) for name in names}

    def _measure_disk(self, name: str) -> tuple[int | None, datetime | None]:
        try:
            usage = data_usage(self.snapshots.folders, name)
        except (OSError, ValueError):  # unsafe or unreadable: unknown
            usage = None
        try:
            newest = self.snapshots.folder.list(name)[:1]
        except (OSError, SnapshotError, ManifestError):
            newest = []
        snapshot = newest[0] if newest else None
        return (
            usage.bytes if usage is not None else None,
            snapshot.manifest.created_at if snapshot else None,
        )

    async def caddy_metrics(self) -> str | None:
        try:
            return await asyncio.wait_for(self.sites.admin_metrics(), QUERY_TIMEOUT)
        except Exception:  # Caddy's numbers are left out of this scrape
            return None

    async def archives(self) -> Sequence[ArchiveInfo]:
        return [
            ArchiveInfo(a.archive_id, a.service, a.archived_at, a.size_bytes)
            for a in await self.dirs.archives()
        ]

    async def data_backups(self, name: str) -> Mapping[str, datetime]:
        newest = newest_backups(await self.dirs.backups(name))
        return {version: backup.taken_at for version, backup in newest.items()}

    async def app_releases(self, name: str) -> Sequence[ReleaseInfo]:
        record = await asyncio.to_thread(self.apps.load, name)
        infos = []
        for index, release in enumerate(record.releases):
            before = record.releases[index + 1] if index + 1 < len(record.releases) else None
            diff = file_diff(release, before)
            infos.append(
                copied(
                    ReleaseInfo,
                    release,
                    size_bytes=release.size,
                    file_count=len(release.files),
                    live=release.release_id == record.live,
                    **{key: tuple(paths) for key, paths in diff.items()},
                )
            )
        return infos

    async def journal_scope(self) -> UnitScope:
        """The manager's cgroup is asked once; until systemd answers, none is known."""
        manager = self.config.systemd_manager
        if self._manager_cgroup is None and self.bus.connected:
            try:
                cgroup = str(await self._manager_property("ControlGroup"))
                UnitScope(manager, cgroup)  # a path, or ValueError
                self._manager_cgroup = cgroup
            except Exception as exc:  # unknown: logs are matched by the unit fields alone
                log.warning("systemd did not say its cgroup", error=str(exc)[:200])
        return UnitScope(manager, self._manager_cgroup)


def backup_info(snapshot: Snapshot, *, with_files: bool = False) -> BackupInfo:
    """A snapshot in the API's terms."""
    verification = snapshot.verification
    return replace(
        remote_info(
            snapshot.manifest, (LOCAL_TARGET, *sorted(snapshot.uploaded)), with_files=with_files
        ),
        verified_at=verification.at if verification else None,
        verified_ok=verification.ok if verification else None,
        verification_detail=verification.detail if verification else None,
        path=snapshot.path,
    )


def remote_info(
    manifest: Manifest, targets: tuple[str, ...], *, with_files: bool = False
) -> BackupInfo:
    """A snapshot as its manifest describes it, held by ``targets`` (a snapshot only
    off-site targets hold has no verification here: a restore brings it back first)."""
    return BackupInfo(
        backup_id=manifest.snapshot_id,
        kind=manifest.kind,
        created_at=manifest.created_at,
        size_bytes=manifest.size,
        file_count=len(manifest.files),
        pocketbase_version=manifest.pocketbase_version,
        files=manifest.files if with_files else (),
        locations=targets,
    )


def unit_state(status: UnitStatus) -> UnitState:
    """systemd's answer in the API's terms."""
    since = status.active_enter_timestamp_usec
    return copied(
        UnitState,
        status,
        memory_bytes=status.memory_current,
        restarts=status.n_restarts,
        active_since=datetime.fromtimestamp(since / 1_000_000, UTC) if since else None,
        memory_max_bytes=status.memory_max,
        cpu_seconds=status.cpu_usage_nsec / 1e9 if status.cpu_usage_nsec is not None else None,
        memory_peak_bytes=None,  # the cgroup's files say it (agent.unitfacts), systemd not
    )


def caddy_status(status: ServiceStatus | None, on_disk: str | None) -> str:
    """configured, pending, missing, drifted or error: the snippet against the last render."""
    if status is not None and status.caddy_status == "error":
        return "error"
    if status is None or status.caddy_config_hash is None:
        return "pending" if on_disk is None else "configured"
    if on_disk is None:
        return "missing"
    return "configured" if on_disk == status.caddy_config_hash else "drifted"


def public_port(ports: PublicPorts, *, https: bool) -> int | None:
    """The port the agent's scheme serves sites on (``https_port`` with TLS, else
    ``http_port``); None when it is the scheme's default, so links need no port."""
    port, default = (ports.https, HTTPS_DEFAULT_PORT) if https else (ports.http, HTTP_DEFAULT_PORT)
    return None if port == default else port


def _existing_ancestor(path: Path) -> Path:
    current = path
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def probe_directory(path: Path) -> str | None:
    """None when a file can be created in ``path`` (or where it would be created).

    Creating one proves it, where ``os.access`` answers yes to root on a read-only mount
    or under ``ProtectSystem=`` on the agent's own unit.
    """
    target = path if path.is_dir() else _existing_ancestor(path)
    if not target.is_dir():
        return f"{target} is not a directory"
    try:
        handle, name = tempfile.mkstemp(prefix=".pockestrator-probe-", dir=target)
    except OSError as exc:
        return f"cannot write to {target}: {exc.strerror or exc}"
    os.close(handle)
    os.unlink(name)
    return None


def no_space_left(path: Path) -> bool:
    """The file system of ``path`` has not one block free (root's reserve included): an
    empty probe file can still be made there, but SQLite cannot grow its files."""
    try:
        stats = os.statvfs(_existing_ancestor(path))
    except OSError:
        return False
    return stats.f_blocks > 0 and stats.f_bfree == 0


def probe_file(path: Path) -> str | None:
    """None when ``path`` exists and opens for writing (nothing is written)."""
    if not path.is_file():
        return f"{path} does not exist"
    try:
        with path.open("ab"):
            pass
    except OSError as exc:
        return f"cannot write to {path}: {exc.strerror or exc}"
    return None


def find_executable(name: str) -> bool:
    """An absolute (or relative) path must be an executable file; a bare name is on PATH."""
    if "/" in name:
        candidate = Path(name)
        return candidate.is_file() and os.access(candidate, os.X_OK)
    return shutil.which(name) is not None
