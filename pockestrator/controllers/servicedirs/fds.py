"""Working inside folders an instance user owns: directory descriptors, never symlinks.

The agent runs as root and the instance user owns every service folder, so anything in
there may have been planted. Work inside a service folder therefore goes through
directory file descriptors: ``open_dir_at`` opens with ``O_NOFOLLOW | O_DIRECTORY`` (a
symlink planted as ``pb_data`` is refused, ``UnsafePath``), ``lstat_at`` and
``mkdir_at`` act on one name in one directory. ``copy_tree`` copies ``pb_data`` for
backups and archives: owners, modes and times kept, symlinks copied as symlinks (never
followed), sockets and devices left out, every file a new one (``hashed_copy``).

Neighbours: ``folders`` opens a service folder with these; ``dirs``, ``backups`` and
``superuser`` work inside it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from pockestrator.controllers.hashed_copy import copy_hashing
from pockestrator.controllers.servicedirs.errors import UnsafePath


class DirFd:
    """An open directory file descriptor, closed on exit."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir_at(parent_fd: int | None, name: str, shown: Path) -> DirFd:
    """Open a directory without following a symlink in its last component."""
    try:
        return DirFd(os.open(name, DIR_FLAGS, dir_fd=parent_fd))
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(
                f"{shown} is a symlink or not a directory; refusing to use it"
            ) from None
        raise


def lstat_at(parent_fd: int, name: str) -> os.stat_result | None:
    """``lstat`` of ``name`` in a directory; None when nothing has that name."""
    try:
        return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def mkdir_at(parent_fd: int, name: str, mode: int) -> bool:
    """Create a directory; False when something already has that name."""
    try:
        os.mkdir(name, mode, dir_fd=parent_fd)
    except FileExistsError:
        return False
    return True


def copy_tree(source: Path, destination: Path) -> None:
    """Copy a tree with owners, modes and times; symlinks are copied, never followed."""
    info = os.lstat(source)
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafePath(f"{source} is not a directory")
    os.mkdir(destination, 0o700)
    with os.scandir(source) as entries:
        for entry in entries:
            origin = Path(entry.path)
            target = destination / entry.name
            entry_info = entry.stat(follow_symlinks=False)
            if stat.S_ISLNK(entry_info.st_mode):
                os.symlink(os.readlink(origin), target)
            elif stat.S_ISDIR(entry_info.st_mode):
                copy_tree(origin, target)
                continue
            elif stat.S_ISREG(entry_info.st_mode):
                source_fd = os.open(origin, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(source_fd, "rb") as reader:
                    # Data, not a binary: nothing to verify, so no digest is computed.
                    copy_hashing(reader, target, mode=0o600, algorithms=())
            else:
                continue  # sockets, FIFOs and devices are not data
            copy_metadata(target, entry_info)
    copy_metadata(destination, info)


def copy_metadata(path: Path, info: os.stat_result) -> None:
    """Owner, mode and times of ``info`` onto ``path`` (a symlink keeps its own mode)."""
    os.chown(path, info.st_uid, info.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(path, stat.S_IMODE(info.st_mode))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)
