"""Putting a snapshot into a service's folder: over its data (a restore), or as its first
data (a clone or an import seeding a new service).

A restore runs with the instance stopped. For each folder the snapshot holds (``pb_data``,
and ``pb_hooks``/``pb_migrations``/``pb_public`` when it has them) a copy goes into the
service's folder under a hidden name, owned by the folder's user, then the current one is
moved out to the root-only ``<base_dir>/.backups/<name>/replaced-<stamp>/`` and the copy
renamed into place: each swap is one rename, and nothing replaced is deleted. Everything
inside the folder goes through directory descriptors (``servicedirs.fds``), as the
instance may have planted anything there.

A new service has no folder yet: ``seed`` makes its private state directory as root with
the snapshot's folders in it; at the instance's first start systemd hands the whole tree
to the instance's dynamic user (it fixes the owner of a state directory that is not its
user's, recursively).

Neighbours: ``take`` (what a snapshot holds), ``folder``; the reconciler decides when
(``agent.apply``: a safety snapshot first, then stop, place, start, a health gate).
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
from pathlib import Path

import structlog

from pockestrator.controllers.service_layout import DATA_DIR
from pockestrator.controllers.servicedirs.backups import backups_for
from pockestrator.controllers.servicedirs.errors import UnsafePath
from pockestrator.controllers.servicedirs.fds import copy_tree_at, lstat_at, opened_dir
from pockestrator.controllers.servicedirs.folders import Place, ServiceFolders
from pockestrator.controllers.snapshots.folder import Snapshot, SnapshotError
from pockestrator.controllers.snapshots.take import APP_DIRS
from pockestrator.controllers.stamped_paths import unique_stamped_path
from pockestrator.files import fsync_directory

log = structlog.get_logger("pockestrator.snapshots")

FOLDERS = (DATA_DIR, *APP_DIRS)


def place_snapshot(folders: ServiceFolders, snapshot: Snapshot, name: str) -> Path:
    """Swap the snapshot's folders into ``name``'s (stopped) folder; where the replaced
    ones went."""
    held = [folder for folder in FOLDERS if (snapshot.path / folder).is_dir()]
    if DATA_DIR not in held:
        raise SnapshotError(f"snapshot {snapshot.snapshot_id} has no pb_data")
    replaced = unique_stamped_path(backups_for(folders, name), "replaced")
    replaced.mkdir(mode=0o700)
    token = secrets.token_hex(4)
    with folders.open_service(name) as service_fd:
        if service_fd is None:
            raise SnapshotError(f"{name} has no folder to restore into")
        info = os.fstat(service_fd)
        owner = (info.st_uid, info.st_gid)
        with opened_dir(snapshot.path) as source_fd:
            incoming = {}
            try:
                for folder in held:
                    incoming[folder] = f".restore-{token}-{folder}"
                    copy_tree_at(source_fd, folder, service_fd, incoming[folder], owner=owner)
                with opened_dir(replaced) as replaced_fd:
                    for folder in held:
                        _move_out(service_fd, folder, replaced_fd)
                        os.rename(
                            incoming.pop(folder),
                            folder,
                            src_dir_fd=service_fd,
                            dst_dir_fd=service_fd,
                        )
            finally:
                for leftover in incoming.values():
                    shutil.rmtree(leftover, dir_fd=service_fd, ignore_errors=True)
        os.fsync(service_fd)
        placed = lstat_at(service_fd, DATA_DIR)
        if placed is None or not stat.S_ISDIR(placed.st_mode):
            raise UnsafePath(f"{name}'s pb_data was replaced while it was restored")
    log.info(
        "snapshot restored", service=name, snapshot=snapshot.snapshot_id, replaced=str(replaced)
    )
    return replaced


def _move_out(service_fd: int, folder: str, replaced_fd: int) -> None:
    """The service's current ``folder`` (whatever it is) into the replaced-data folder."""
    if lstat_at(service_fd, folder) is None:
        return
    try:
        os.rename(folder, folder, src_dir_fd=service_fd, dst_dir_fd=replaced_fd)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        current = lstat_at(service_fd, folder)
        if current is not None and stat.S_ISDIR(current.st_mode):
            copy_tree_at(service_fd, folder, replaced_fd, folder)
            shutil.rmtree(folder, dir_fd=service_fd)
        else:
            os.unlink(folder, dir_fd=service_fd)  # the instance's own link or file


def seed(folders: ServiceFolders, snapshot: Snapshot, name: str) -> Path:
    """The first data of a service that has no folder yet: its private state directory,
    made here with the snapshot's folders in it (systemd gives it to the instance's user)."""
    target = seed_from(folders, snapshot.path, name, f"snapshot {snapshot.snapshot_id}")
    log.info("service seeded from a snapshot", service=name, snapshot=snapshot.snapshot_id)
    return target


def copy_snapshot_folders(snapshot: Snapshot, into: Path) -> None:
    """The snapshot's folders (``pb_data`` and the app folders) copied into ``into``, a
    root-only folder, files and folders only (what ``seed_from`` takes)."""
    for folder in FOLDERS:
        if (snapshot.path / folder).is_dir():
            shutil.copytree(snapshot.path / folder, into / folder, symlinks=True, ignore=_not_plain)


def seed_from(folders: ServiceFolders, source: Path, name: str, label: str) -> Path:
    """``seed`` from any root-only folder holding ``pb_data`` (and maybe the app folders):
    a snapshot, or an unpacked import. Only files and folders are copied."""
    if folders.place(name) is not Place.NONE:
        raise SnapshotError(f"{name} already has a folder; restore into it instead")
    held = [folder for folder in FOLDERS if (source / folder).is_dir()]
    if DATA_DIR not in held:
        raise SnapshotError(f"{label} has no pb_data")
    target = folders.private_path(name)
    folders.prepare_private_tree()
    partial = target.with_name(f".{target.name}.seeding-{secrets.token_hex(4)}")
    partial.mkdir(mode=0o700)
    try:
        for folder in held:
            shutil.copytree(source / folder, partial / folder, symlinks=True, ignore=_not_plain)
        os.rename(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    fsync_directory(target.parent)
    return target


def _not_plain(folder: str, names: list[str]) -> set[str]:
    """What ``copytree`` leaves out: anything but a regular file or a folder."""
    left = set()
    for entry in names:
        mode = os.lstat(os.path.join(folder, entry)).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            left.add(entry)
    return left
