"""Deleting a service's folder: archived as ``<archive>/<name>-<UTC stamp>``, or purged.

A deleted service's data is kept unless a purge is asked for: the folder is renamed into
the archive folder (copied and removed when that is on another file system), under a
unique timestamped name (``stamped_paths``), relative to descriptors of both parents. A
purge removes the tree with ``shutil.rmtree`` through a descriptor, and only where that is
safe against symlink attacks.

Neighbours: ``folders`` (where the folder is), ``fds.copy_tree_at`` (the cross-device copy).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

from pockestrator.controllers.servicedirs.errors import ServiceDirError
from pockestrator.controllers.servicedirs.fds import copy_tree_at, opened_dir
from pockestrator.controllers.servicedirs.folders import Place, ServiceFolders
from pockestrator.controllers.stamped_paths import unique_stamped_path
from pockestrator.files import fsync_directory

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
