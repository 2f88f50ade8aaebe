"""Working inside folders an instance user owns: directory descriptors, never symlinks.

The agent runs as root and the instance user owns every service folder, so anything in
there may have been planted. Work inside a service folder therefore goes through
directory file descriptors: ``open_dir_at`` opens with ``O_NOFOLLOW | O_DIRECTORY`` (a
symlink planted as ``pb_data`` is refused, ``UnsafePath``), ``lstat_at`` and
``mkdir_at`` act on one name in one directory. ``copy_tree_at`` copies ``pb_data`` for
backups and archives the same way, one descriptor per folder, so root never follows a
path inside an instance's folder, even while the instance changes it under the copy.

Neighbours: ``folders`` opens a service folder with these; ``dirs``, ``backups`` and
``superuser`` work inside it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
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


_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def copy_tree_at(
    source_dir: int,
    source: str,
    target_dir: int,
    target: str,
    *,
    owner: tuple[int, int] | None = None,
) -> None:
    """Copy the tree ``source`` (in ``source_dir``) to a new ``target`` (in ``target_dir``).

    Every name is opened relative to its parent's descriptor with ``O_NOFOLLOW``, so no
    component is ever resolved through a symlink, whatever the tree's owner swaps while
    the copy runs: a directory replaced by a symlink is refused (``UnsafePath``), a file
    replaced by a FIFO cannot block (``O_NONBLOCK``) and is refused unless it is still a
    regular file. Owners, modes and times are kept, symlinks are copied as symlinks
    (never followed), sockets, FIFOs and devices are left out, every file is a new one
    (``hashed_copy``), and the target is created root-only (0700) until its own mode is
    set at the end. With ``owner`` every copy belongs to that uid and gid instead (a
    snapshot put back into a folder whose user is not the one that made it).
    """
    with _open_tree(source_dir, source) as src:
        info = os.fstat(src)
        os.mkdir(target, 0o700, dir_fd=target_dir)
        with _open_tree(target_dir, target) as dst:
            for name in os.listdir(src):
                entry = lstat_at(src, name)
                if entry is None:
                    continue  # gone since the listing
                if stat.S_ISDIR(entry.st_mode):
                    copy_tree_at(src, name, dst, name, owner=owner)
                elif stat.S_ISLNK(entry.st_mode):
                    os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
                    _keep_times(dst, name, entry)
                    uid, gid = owner or (entry.st_uid, entry.st_gid)
                    os.chown(name, uid, gid, dir_fd=dst, follow_symlinks=False)
                elif stat.S_ISREG(entry.st_mode):
                    _copy_file_at(src, name, dst, entry, owner)
            os.fchown(dst, *(owner or (info.st_uid, info.st_gid)))
            os.fchmod(dst, stat.S_IMODE(info.st_mode))
            os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns))


def _open_tree(parent: int, name: str) -> DirFd:
    try:
        return DirFd(os.open(name, DIR_FLAGS, dir_fd=parent))
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(f"{name!r} became a symlink or stopped being a folder") from None
        raise


def _copy_file_at(
    src: int, name: str, dst: int, entry: os.stat_result, owner: tuple[int, int] | None
) -> None:
    try:
        fd = os.open(name, _FILE_FLAGS, dir_fd=src)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(f"{name!r} became a symlink while it was copied") from None
        raise
    with os.fdopen(fd, "rb") as reader:
        now = os.fstat(reader.fileno())
        if not stat.S_ISREG(now.st_mode):
            raise UnsafePath(f"{name!r} stopped being a regular file while it was copied")
        # Data, not a binary: nothing to verify, so no digest is computed.
        copy_hashing(
            reader,
            name,
            dir_fd=dst,
            mode=stat.S_IMODE(now.st_mode),
            algorithms=(),
            owner=owner or (now.st_uid, now.st_gid),
        )
    _keep_times(dst, name, now)


def _keep_times(directory: int, name: str, info: os.stat_result) -> None:
    os.utime(name, ns=(info.st_atime_ns, info.st_mtime_ns), dir_fd=directory, follow_symlinks=False)


@contextlib.contextmanager
def opened_dir(path: Path) -> Iterator[int]:
    """A root-owned folder of the agent's own (backups, the archive), opened as a descriptor."""
    with DirFd(os.open(path, DIR_FLAGS)) as fd:
        yield fd
