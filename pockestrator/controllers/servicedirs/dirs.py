"""Service folders as the reconciler sees them: ``ServiceDirs``, ``observe`` and the steps.

systemd makes and owns each instance's folder (its state directory, ``folders``); there is
nothing to converge in it. What the agent still does to a folder is done here, through
directory descriptors, never through a path inside it:

- ``observe``: where the data is (``Place``), and, for a folder an earlier agent made, the
  first superusers its marker file says it created (read as a bounded, non-blocking,
  regular file: the instance could have replaced it with anything);
- ``migrate_legacy``: remove what an earlier agent kept in the folder (its hard-linked
  binary and that marker; the next start under the new unit hands the folder to systemd);
- delete (``archive``), upgrade backups and restores (``backups``), and the first
  superuser (``superuser``, a transient unit in the instance's own box).

Neighbours: ``folders`` and ``fds`` (reaching into folders an instance owns);
``controllers.systemd`` (the box, the transient units).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

from pockestrator.config import AgentConfig
from pockestrator.controllers.service_layout import BINARY_NAME
from pockestrator.controllers.servicedirs.archive import (
    ArchivedFolder,
    DeleteResult,
    delete_folder,
    list_archives,
    remove_archive,
    restore_archive,
)
from pockestrator.controllers.servicedirs.backups import (
    DataBackup,
    backup_data,
    list_backups,
    remove_partial_backups,
    restore_data,
)
from pockestrator.controllers.servicedirs.folders import Place, ServiceFolders
from pockestrator.controllers.servicedirs.superuser import (
    SuperuserCreated,
    ensure_superuser,
    sweep_bootstrap_leftovers,
)
from pockestrator.controllers.systemd import SystemdBus, UnitSettings
from pockestrator.specs.model import ServiceSpec

# What an earlier agent kept in a service folder, beside the instance's own files.
LEGACY_MARKER = ".pockestrator-superuser"
LEGACY_MARKER_MAX_BYTES = 64 * 1024
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

log = structlog.get_logger("pockestrator.servicedirs")


@dataclass(frozen=True)
class ServiceDirState:
    """Where a service's data is; for a legacy folder, the superusers its marker names."""

    path: Path
    place: Place
    legacy_superusers: tuple[str, ...] = ()
    # The versioned backups of pb_data, newest first (a downgrade restores one of them).
    backups: tuple[DataBackup, ...] = ()

    @property
    def exists(self) -> bool:
        return self.place is not Place.NONE

    @property
    def legacy(self) -> bool:
        return self.place is Place.LEGACY


class ServiceDirs:
    """Everything the agent does to service folders under ``base_dir``."""

    def __init__(self, config: AgentConfig, bus: SystemdBus) -> None:
        self.config = config
        self.bus = bus
        self.folders = ServiceFolders(config)
        self.settings = UnitSettings.from_config(config)

    def path_for(self, name: str) -> Path:
        """``<base_dir>/<name>``, where the instance sees its folder."""
        return self.folders.path_for(name)

    async def observe(self, spec: ServiceSpec) -> ServiceDirState:
        """Where the folder of ``spec`` is; changes nothing."""
        return await asyncio.to_thread(self._observe, spec.project_name)

    def _observe(self, name: str) -> ServiceDirState:
        place = self.folders.place(name)
        legacy: tuple[str, ...] = ()
        if place is Place.LEGACY:
            with self.folders.open_service(name) as service_fd:
                if service_fd is not None:
                    legacy = _marker_emails(service_fd)
        return ServiceDirState(
            self.path_for(name), place, legacy, tuple(list_backups(self.folders, name))
        )

    async def backups(self, name: str) -> list[DataBackup]:
        """The versioned backups of ``name``'s data, newest first."""
        return await asyncio.to_thread(list_backups, self.folders, name)

    async def migrate_legacy(self, name: str) -> list[str]:
        """Take out what an earlier agent left in the folder; what was done, line by line."""
        return await asyncio.to_thread(self._migrate_legacy, name)

    def _migrate_legacy(self, name: str) -> list[str]:
        done: list[str] = []
        with self.folders.open_service(name) as service_fd:
            if service_fd is None or self.folders.place(name) is not Place.LEGACY:
                return done
            for leftover in (BINARY_NAME, LEGACY_MARKER):
                try:
                    os.unlink(leftover, dir_fd=service_fd)
                except FileNotFoundError:
                    continue
                except IsADirectoryError:
                    continue  # the instance's own; leave it
                done.append(f"removed {self.path_for(name) / leftover} (left by an earlier agent)")
            os.fsync(service_fd)
        if done:
            log.info("legacy service folder cleaned", service=name, changes=done)
        return done

    # Delete, backups, the first superuser --------------------------------------------

    async def delete(self, name: str, *, purge: bool = False) -> DeleteResult:
        """Archive the folder as ``<archive>/<name>-<UTC stamp>``; remove it only on purge."""
        return await asyncio.to_thread(delete_folder, self.folders, name, purge=purge)

    async def archives(self) -> list[ArchivedFolder]:
        """The deleted services' archived folders, newest first, with disk use."""
        return await asyncio.to_thread(list_archives, self.folders)

    async def restore_archive(self, archive_id: str, name: str) -> Path:
        """An archived folder back as the folder of ``name`` (which has none)."""
        return await asyncio.to_thread(restore_archive, self.folders, archive_id, name)

    async def remove_archive(self, archive_id: str) -> None:
        await asyncio.to_thread(remove_archive, self.folders, archive_id)

    async def backup_data(self, name: str, version: str | None = None) -> Path:
        """Copy ``pb_data`` (the service must be stopped) to a timestamped, root-only backup
        named by the ``version`` that wrote the data."""
        return await asyncio.to_thread(backup_data, self.folders, name, version)

    async def restore_data(self, name: str, backup: Path) -> Path:
        """Put a backup of ``pb_data`` back; the data it replaces is kept beside the backups.

        Returns where the replaced ``pb_data`` went. The service must be stopped.
        """
        return await asyncio.to_thread(restore_data, self.folders, name, backup)

    async def sweep_bootstrap_leftovers(self) -> list[str]:
        """What a killed agent's superuser runs left (``superuser.sweep_bootstrap_leftovers``)."""
        return await sweep_bootstrap_leftovers(self.bus, self.settings, self._bootstrap_dir)

    async def sweep_partial_backups(self) -> list[str]:
        """The unfinished backups killed upgrades left (``backups.remove_partial_backups``)."""
        removed = await asyncio.to_thread(remove_partial_backups, self.folders)
        return [str(path) for path in removed]

    @property
    def _bootstrap_dir(self) -> Path:
        return self.config.base_dir / ".bootstrap"

    async def ensure_superuser(
        self, spec: ServiceSpec, email: str, password: str | None = None
    ) -> SuperuserCreated:
        """Create (or update) the superuser ``email`` in the instance, in its own box.

        The password is ``password`` when the caller has one (the API generates it so it
        can show it at creation), else read from ``superuser_password_file``, else
        generated; a generated one is in the result, the only place it ever appears.
        """
        return await ensure_superuser(
            self.bus,
            self.settings,
            spec,
            email,
            password,
            bootstrap_dir=self._bootstrap_dir,
        )


def _marker_emails(service_fd: int) -> tuple[str, ...]:
    """The e-mails an earlier agent's marker file lists, read without trusting the file."""
    try:
        fd = os.open(LEGACY_MARKER, _READ_FLAGS, dir_fd=service_fd)
    except OSError:
        return ()
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ()
        data = json.loads(os.read(fd, LEGACY_MARKER_MAX_BYTES))
    except (OSError, ValueError):
        return ()
    finally:
        os.close(fd)
    emails = data.get("emails") if isinstance(data, dict) else None
    if not isinstance(emails, list):
        return ()
    return tuple(email for email in emails if isinstance(email, str))
