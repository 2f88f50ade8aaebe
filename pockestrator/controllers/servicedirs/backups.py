"""Backups of ``pb_data`` for upgrades, and their restore on rollback.

Before an upgrade the reconciler stops the service and ``backup_data`` copies its
``pb_data`` to ``<base_dir>/.backups/<name>/pb_data-<version>-<UTC stamp>`` (root-only),
named by the version that wrote it: into a ``.partial`` folder first, renamed when
complete, so a backup that exists is whole (an agent killed during the copy leaves the
``.partial``; the next one removes it when it starts, ``remove_partial_backups``). When
the new version is not healthy, ``restore_data`` copies the backup back in and swaps it
for the current ``pb_data`` with renames; the data it displaces is kept as
``pb_data-replaced-<UTC stamp>`` beside the backups, for the operator to look at. A
downgrade restores the newest backup of the version it goes back to (``list_backups`` says
which there are): older code never runs on data a newer version has migrated. Backups made
before their names carried a version (``pb_data-<stamp>``) are kept and restorable, but
belong to no version.

Neighbours: ``folders`` (where things are), ``fds`` (``copy_tree_at``, descriptors),
``stamped_paths`` (the names).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from pockestrator.controllers.service_layout import DATA_DIR
from pockestrator.controllers.servicedirs.errors import ServiceDirError, UnsafePath
from pockestrator.controllers.servicedirs.fds import copy_tree_at, lstat_at, opened_dir
from pockestrator.controllers.servicedirs.folders import ServiceFolders
from pockestrator.controllers.stamped_paths import unique_stamped_path
from pockestrator.files import fsync_directory
from pockestrator.specs.grammar import GrammarError, check_version

log = structlog.get_logger("pockestrator.servicedirs")


def backups_for(folders: ServiceFolders, name: str) -> Path:
    """``<base_dir>/.backups/<name>/``, created root-only (0700) if needed."""
    folders.path_for(name)
    folder = folders.backups_dir / name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folders.backups_dir, 0o700)
    return folder


PARTIAL_SUFFIX = ".partial"


def remove_partial_backups(folders: ServiceFolders) -> list[Path]:
    """Remove the unfinished copies killed backups left; the ones removed.

    For when the agent starts, before any backup of its own runs: each is a full copy of
    a ``pb_data`` cut short, which nothing reads and nothing else would ever remove.
    """
    removed: list[Path] = []
    if not folders.backups_dir.is_dir():
        return removed
    for folder in sorted(folders.backups_dir.iterdir()):
        if folder.is_symlink() or not folder.is_dir():
            continue
        for partial in sorted(folder.glob(f".*{PARTIAL_SUFFIX}")):
            shutil.rmtree(partial, ignore_errors=True)
            removed.append(partial)
    return removed


@dataclass(frozen=True)
class DataBackup:
    """One whole backup of a service's ``pb_data``: the version that wrote it, and when."""

    version: str
    taken_at: datetime
    path: Path


# pb_data-<version>-<stamp>[-<n>]; a version has no "-" before its pre-release part ends.
_VERSIONED = re.compile(
    rf"{DATA_DIR}-(?P<version>[0-9]+\.[0-9]+\.[0-9]+(?:-[0-9A-Za-z.]+)?)"
    r"-(?P<stamp>[0-9]{8}T[0-9]{6}Z)(?:-[0-9]+)?"
)


def list_backups(folders: ServiceFolders, name: str) -> list[DataBackup]:
    """The versioned backups of ``name``, newest first (partial ones are never listed)."""
    folder = folders.backups_dir / name
    try:
        entries = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        match = _VERSIONED.fullmatch(entry)
        if match is None:
            continue
        try:
            version = check_version(match["version"])
            taken_at = datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except (GrammarError, ValueError):
            continue
        if stat.S_ISDIR(os.lstat(folder / entry).st_mode):
            found.append(DataBackup(version, taken_at, folder / entry))
    return sorted(found, key=lambda backup: (backup.taken_at, backup.path.name), reverse=True)


def backup_data(folders: ServiceFolders, name: str, version: str | None = None) -> Path:
    """Copy ``pb_data`` (the service must be stopped) to a timestamped, root-only backup,
    named by the ``version`` that wrote the data."""
    path = folders.path_for(name)
    folder = backups_for(folders, name)
    with folders.open_service(name) as service_fd:
        if service_fd is None:
            raise ServiceDirError(f"{path} does not exist; nothing to back up")
        data_info = lstat_at(service_fd, DATA_DIR)
        if data_info is None or not stat.S_ISDIR(data_info.st_mode):
            raise UnsafePath(f"{path / DATA_DIR} is missing, a symlink or not a directory")
        stem = DATA_DIR if version is None else f"{DATA_DIR}-{check_version(version)}"
        target = unique_stamped_path(folder, stem)
        partial = folder / f".{target.name}{PARTIAL_SUFFIX}"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            with opened_dir(folder) as backups_fd:
                copy_tree_at(service_fd, DATA_DIR, backups_fd, partial.name)
            os.rename(partial, target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    fsync_directory(folder)
    log.info("service data backed up", service=name, backup=str(target))
    return target


def restore_data(folders: ServiceFolders, name: str, backup: Path) -> Path:
    """Put a backup of ``pb_data`` back; where the data it replaced went (beside the backups).

    The service must be stopped. Only a backup of this service, in its own backups
    folder, is accepted.
    """
    path = folders.path_for(name)
    folder = backups_for(folders, name)
    resolved = backup.resolve()
    if resolved.parent != folder or not resolved.name.startswith(f"{DATA_DIR}-"):
        raise UnsafePath(f"{backup} is not a backup of {name} in {folder}")
    if not stat.S_ISDIR(os.lstat(resolved).st_mode):
        raise UnsafePath(f"{backup} is not a directory")
    incoming = f".{DATA_DIR}.restore-{secrets.token_hex(4)}"
    displaced = unique_stamped_path(folder, f"{DATA_DIR}-replaced")
    with folders.open_service(name) as service_fd:
        if service_fd is None:
            raise ServiceDirError(f"{path} does not exist; nothing to restore into")
        with opened_dir(folder) as backups_fd:
            copy_tree_at(backups_fd, resolved.name, service_fd, incoming)
        try:
            current = lstat_at(service_fd, DATA_DIR)
            if current is not None:
                if not stat.S_ISDIR(current.st_mode):
                    raise UnsafePath(f"{path / DATA_DIR} is a symlink or not a directory")
                os.rename(DATA_DIR, displaced, src_dir_fd=service_fd)
            os.rename(incoming, DATA_DIR, src_dir_fd=service_fd, dst_dir_fd=service_fd)
        except BaseException:
            shutil.rmtree(incoming, dir_fd=service_fd, ignore_errors=True)
            raise
        os.fsync(service_fd)
        restored = lstat_at(service_fd, DATA_DIR)
        if restored is None or not stat.S_ISDIR(restored.st_mode):
            # The instance swapped the copy for something else under us (nothing was
            # followed): the restore did not happen, and must not be reported as done.
            raise UnsafePath(f"{path / DATA_DIR} was replaced while it was restored")
    log.info("service data restored", service=name, backup=str(resolved))
    return displaced
