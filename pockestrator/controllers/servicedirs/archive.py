"""Deleting a service's folder: archived as ``<archive>/<name>-<UTC stamp>``, or purged.

A deleted service's data is kept unless a purge is asked for: the folder is renamed into
the archive folder (copied and removed when that is on another file system), under a
unique timestamped name (``stamped_paths``). A purge removes the tree with
``shutil.rmtree``, and only where that is safe against symlink attacks.

Neighbours: ``folders`` (where the folder is), ``fds.copy_tree`` (the cross-device copy).
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

from pockestrator.controllers.files import fsync_directory
from pockestrator.controllers.servicedirs.errors import ServiceDirError, UnsafePath
from pockestrator.controllers.servicedirs.fds import copy_tree
from pockestrator.controllers.servicedirs.folders import ServiceFolders
from pockestrator.controllers.stamped_paths import unique_stamped_path

log = structlog.get_logger("pockestrator.servicedirs")


@dataclass(frozen=True)
class DeleteResult:
    """Where a deleted service's folder went: archived, purged, or there was none."""

    path: Path
    existed: bool
    archived_to: Path | None = None
    purged: bool = False


def delete_folder(folders: ServiceFolders, name: str, *, purge: bool) -> DeleteResult:
    """Archive the folder as ``<archive>/<name>-<UTC stamp>``; remove it only on purge."""
    path = folders.path_for(name)
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return DeleteResult(path, existed=False)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{path} is a symlink or not a directory; refusing to delete it")
    if purge:
        if not shutil.rmtree.avoids_symlink_attacks:
            raise ServiceDirError("this platform cannot remove a tree safely; archive instead")
        shutil.rmtree(path)
        fsync_directory(folders.base_dir)
        log.info("service directory purged", service=name, path=str(path))
        return DeleteResult(path, existed=True, purged=True)
    folders.archive_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    destination = unique_stamped_path(folders.archive_dir, name)
    try:
        os.rename(path, destination)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        copy_tree(path, destination)
        shutil.rmtree(path)
    fsync_directory(folders.base_dir)
    fsync_directory(folders.archive_dir)
    log.info("service directory archived", service=name, archived_to=str(destination))
    return DeleteResult(path, existed=True, archived_to=destination)
