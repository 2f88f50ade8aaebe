"""Deleting a service's folder (archived as ``<archive>/<name>-<UTC stamp>``, or purged),
and the archive itself: listed with disk use, restored as a service, expired.

A deleted service's data is kept unless a purge is asked for: the folder is renamed into
the archive folder (copied and removed when that is on another file system), under a
unique timestamped name (``stamped_paths``), relative to descriptors of both parents. A
purge removes the tree with ``shutil.rmtree`` through a descriptor, and only where that is
safe against symlink attacks.

The archive is root-only and no instance runs on an archived folder, so listing walks it
without following anything, and a restore is one rename back into systemd's private tree.
``expired_archives`` (pure) is the retention: an archive older than the agent's
``archive_keep_days`` goes, and the answer says when the next one will, so the agent sleeps
until then instead of polling.

Neighbours: ``folders`` (where the folder is), ``fds.copy_tree_at`` (the cross-device copy).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from pockestrator.controllers.servicedirs.errors import ServiceDirError
from pockestrator.controllers.servicedirs.fds import copy_tree_at, opened_dir
from pockestrator.controllers.servicedirs.folders import Place, ServiceFolders
from pockestrator.controllers.stamped_paths import unique_stamped_path
from pockestrator.files import fsync_directory
from pockestrator.specs.grammar import ARCHIVE_ID, check_archive_id

log = structlog.get_logger("pockestrator.servicedirs")


@dataclass(frozen=True)
class DeleteResult:
    """Where a deleted service's folder went: archived, purged, or there was none."""

    path: Path
    existed: bool
    archived_to: Path | None = None
    purged: bool = False


def delete_folder(folders: ServiceFolders, name: str, *, purge: bool) -> DeleteResult:
    """Archive the folder as ``<archive>/<name>-<UTC stamp>``; remove it only on purge.

    The data is where ``folders.place`` finds it (systemd's private tree, or a legacy
    folder); the link systemd made at ``<base_dir>/<name>`` goes with it.
    """
    path = folders.path_for(name)
    place = folders.place(name)
    if place is Place.NONE:
        _remove_link(folders, name)
        return DeleteResult(path, existed=False)
    parent = folders.private_dir if place is Place.PRIVATE else folders.base_dir
    if purge:
        if not shutil.rmtree.avoids_symlink_attacks:
            raise ServiceDirError("this platform cannot remove a tree safely; archive instead")
        with opened_dir(parent) as parent_fd:
            shutil.rmtree(name, dir_fd=parent_fd)
        fsync_directory(parent)
        _remove_link(folders, name)
        log.info("service directory purged", service=name, path=str(path))
        return DeleteResult(path, existed=True, purged=True)
    folders.archive_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    destination = unique_stamped_path(folders.archive_dir, name)
    with opened_dir(parent) as parent_fd, opened_dir(folders.archive_dir) as archive_fd:
        try:
            os.rename(name, destination.name, src_dir_fd=parent_fd, dst_dir_fd=archive_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            copy_tree_at(parent_fd, name, archive_fd, destination.name)
            shutil.rmtree(name, dir_fd=parent_fd)
    fsync_directory(parent)
    fsync_directory(folders.archive_dir)
    _remove_link(folders, name)
    log.info("service directory archived", service=name, archived_to=str(destination))
    return DeleteResult(path, existed=True, archived_to=destination)


def _remove_link(folders: ServiceFolders, name: str) -> None:
    """The symlink systemd made at ``<base_dir>/<name>`` (only a symlink is removed)."""
    path = folders.path_for(name)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISLNK(os.lstat(path).st_mode):
            path.unlink()
            fsync_directory(folders.base_dir)


# -- what the archive holds: listed, restored as a service, expired -------------------


@dataclass(frozen=True)
class ArchivedFolder:
    """One deleted service's folder in the archive."""

    archive_id: str  # the folder's name, <service>-<UTC stamp>[-n]
    service: str
    archived_at: datetime
    size_bytes: int
    path: Path


def list_archives(folders: ServiceFolders) -> list[ArchivedFolder]:
    """The archived folders, newest first, with their disk use (nothing is followed)."""
    found = []
    try:
        entries = list(os.scandir(folders.archive_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        match = ARCHIVE_ID.fullmatch(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        archived_at = datetime.strptime(match["stamp"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        found.append(
            ArchivedFolder(
                entry.name,
                match["service"],
                archived_at,
                disk_use(Path(entry.path)),
                Path(entry.path),
            )
        )
    found.sort(key=lambda a: (a.archived_at, a.archive_id), reverse=True)
    return found


def disk_use(root: Path) -> int:
    """Bytes on disk under ``root``, counting each inode once and following nothing."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for folder, dirs, files in os.walk(root, followlinks=False):
        for entry in (*dirs, *files):
            try:
                info = os.lstat(os.path.join(folder, entry))
            except FileNotFoundError:
                continue
            if (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                total += info.st_blocks * 512
    return total


def restore_archive(folders: ServiceFolders, archive_id: str, name: str) -> Path:
    """Move an archived folder back as the folder of the service ``name`` (which has none):
    an undelete. The folder is the instance's own; systemd gives it to the new instance's
    user at its first start."""
    check_archive_id(archive_id)
    if folders.place(name) is not Place.NONE:
        raise ServiceDirError(f"{name} already has a folder")
    source = folders.archive_dir / archive_id
    if not stat.S_ISDIR(os.lstat(source).st_mode):
        raise ServiceDirError(f"{archive_id} is not an archived folder")
    folders.prepare_private_tree()
    target = folders.private_path(name)
    with opened_dir(folders.archive_dir) as archive_fd, opened_dir(folders.private_dir) as to_fd:
        try:
            os.rename(archive_id, name, src_dir_fd=archive_fd, dst_dir_fd=to_fd)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            copy_tree_at(archive_fd, archive_id, to_fd, name)
            shutil.rmtree(archive_id, dir_fd=archive_fd)
    fsync_directory(folders.private_dir)
    fsync_directory(folders.archive_dir)
    log.info("archived folder restored", archive=archive_id, service=name)
    return target


def remove_archive(folders: ServiceFolders, archive_id: str) -> None:
    """Delete one archived folder for good (the retention's work)."""
    check_archive_id(archive_id)
    with opened_dir(folders.archive_dir) as archive_fd:
        shutil.rmtree(archive_id, dir_fd=archive_fd)
    fsync_directory(folders.archive_dir)
    log.info("archived folder removed", archive=archive_id)


def expired_archives(
    archived: list[tuple[str, datetime]], now: datetime, keep_days: float
) -> tuple[list[str], datetime | None]:
    """Which archives are past ``keep_days`` (0: none ever are), and when the next one
    will be: (ids to remove, the next expiry or None)."""
    if keep_days <= 0:
        return [], None
    keep = timedelta(days=keep_days)
    expired = [archive_id for archive_id, at in archived if at + keep <= now]
    later = [at + keep for _id, at in archived if at + keep > now]
    return expired, min(later, default=None)
