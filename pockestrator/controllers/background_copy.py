"""Copying a snapshot's database in a process of its own, at the lowest CPU priority.

``python -m pockestrator.controllers.background_copy READ_FD WRITE_FD`` copies from one
inherited descriptor to the other and prints ``{"size": ..., "sha256": ...}``, or
``{"errno": ..., "error": ...}`` with exit status 1 when a read or write fails. The agent
(``snapshots.take``) opens both files itself, safely (through directory descriptors, no
link followed), and hands them over: this process opens nothing by name.

Why a process: the copy of a 500 MB database is CPU the instance's writers need on a
small host, and a thread's nice value does not give it back to them. Where the scheduler
groups tasks by session (autogroup, when no CPU cgroup applies), a thread only ranks
against its own process's threads; a process in a session of its own can lower its whole
group (``/proc/self/autogroup``) as well as itself (``nice``). With a CPU cgroup (systemd's
``CPUWeight=``), the agent's own unit weight decides; lowering this process still helps
inside it.

This module imports nothing but the standard library, so the process starts in tens of
milliseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import stat
import sys
from collections.abc import Callable
from typing import BinaryIO, cast

CHUNK = 1024 * 1024
WRITEBACK_CHUNK = 1024 * 1024
RELEASE_CHUNK = 8 * 1024 * 1024
BACKGROUND_NICE = 19
# ioprio_set(2) by architecture (Python's os has no wrapper); the idle class, level 0.
_IOPRIO_SET = {"x86_64": 251, "aarch64": 30, "i686": 289, "armv7l": 314, "riscv64": 30}
_IOPRIO_WHO_PROCESS = 1
IOPRIO_IDLE = 3 << 13
_FourInts = Callable[[int, int, int, int], int]  # a libc call's (see _libc)


def copy_hashed(reader: BinaryIO, writer: BinaryIO, *, release: bool = False) -> tuple[int, str]:
    """Copy ``reader`` to ``writer``; the size and SHA-256 of what was copied.

    With ``release``, what was read of ``reader`` (a scratch file) is freed as the copy
    goes (``_release``), ``RELEASE_CHUNK`` at a time.

    One pass: the bytes are hashed as they go by, not read again. The written file goes
    out to the disk as it is copied, at most two ``WRITEBACK_CHUNK`` (1 MiB) in flight:
    each chunk is handed to writeback at once (``sync_file_range``, which commits no
    journal), and the copy waits for the one before it. So the snapshot never piles up
    hundreds of megabytes for the final fsync to flush at once (that flush, and the
    journal commit it forced, held the instance's WAL writes back), and never puts more
    than a couple of megabytes in the disk's queue ahead of an instance's checkpoint
    fsync. What is on the disk is then dropped from the page cache (``DONTNEED`` on a
    clean range costs no IO), so a 500 MB snapshot does not push the instance's own
    pages out. The reader's pages are left alone: the staged copy is scratch that was
    never written back, and advice on dirty pages would write it all to the disk.
    Where ``sync_file_range`` is missing, advice starts the writeback without the wait.
    """
    digest = hashlib.sha256()
    size = flushed = previous = released = 0
    writer_fd = writer.fileno()
    while chunk := reader.read(CHUNK):
        digest.update(chunk)
        writer.write(chunk)
        size += len(chunk)
        if release and size - released >= RELEASE_CHUNK:
            _release(reader.fileno(), released, size - released)
            released = size
        if size - flushed >= WRITEBACK_CHUNK:
            writer.flush()
            _write_back(writer_fd, flushed, size - flushed, wait=False)
            if flushed > previous:
                _write_back(writer_fd, previous, flushed - previous, wait=True)
                _drop_cached(writer_fd, previous, flushed - previous)
            previous, flushed = flushed, size
    writer.flush()
    return size, digest.hexdigest()


def _release(fd: int, offset: int, length: int) -> None:
    """Punch a hole where the scratch copy was read (errors ignored: it is only memory).

    The staged copy is written with no fsync and never meant to reach the disk: its pages
    stay dirty, hundreds of megabytes of them until the stage is removed after the commit.
    Dirty pages are what the kernel's writeback thresholds count, across the host; past
    them the flusher writes the scratch out and writers (the instance's WAL appends among
    them) are throttled. A hole drops those pages at once, with no IO."""
    if _FALLOCATE is None:
        return
    _FALLOCATE(fd, _FALLOC_FL_KEEP_SIZE | _FALLOC_FL_PUNCH_HOLE, offset, length)


def releasable(fd: int) -> bool:
    """True when holes may be punched in ``fd``: open for writing, a regular file with one
    name (a hard link planted in the stage would make the hole another file's too)."""
    info = os.fstat(fd)
    mode = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and mode == os.O_RDWR


def _drop_cached(fd: int, offset: int, length: int) -> None:
    """Drop a range already on the disk from the page cache (advice: errors ignored)."""
    with contextlib.suppress(OSError):
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def _write_back(fd: int, offset: int, length: int, *, wait: bool) -> None:
    """Start (or, with ``wait``, finish) the writeback of a range of ``fd``."""
    if _SYNC_FILE_RANGE is None:
        if not wait:
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
        return
    flags = _SYNC_WAIT_BEFORE | _SYNC_WRITE | _SYNC_WAIT_AFTER if wait else _SYNC_WRITE
    if _SYNC_FILE_RANGE(fd, offset, length, flags) != 0:
        error = ctypes.get_errno()
        raise OSError(error, os.strerror(error))


def _libc(name: str, *argtypes: type[ctypes._SimpleCData[int]]) -> _FourInts | None:
    """A libc call of four integers that Python's ``os`` does not offer (Linux), or None
    where this libc has none by that name."""
    function = getattr(ctypes.CDLL(None, use_errno=True), name, None)
    if function is None:
        return None
    function.argtypes = argtypes
    function.restype = ctypes.c_int
    return cast(_FourInts, function)


_SYNC_WAIT_BEFORE, _SYNC_WRITE, _SYNC_WAIT_AFTER = 1, 2, 4
_SYNC_FILE_RANGE = _libc(
    "sync_file_range", ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint
)
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE = 1, 2
# fallocate, for its hole punching.
_FALLOCATE = _libc("fallocate64", ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)


def lower_priority() -> None:
    """This process (and, under autogroup, its session's group) at the lowest priority,
    for the CPU and for the disk (the idle IO class: where the scheduler honours it, an
    instance's checkpoint fsync is served before any of the copy's writeback)."""
    with contextlib.suppress(OSError):
        os.nice(BACKGROUND_NICE)
    idle_io()
    try:
        with open("/proc/self/autogroup", "w") as group:
            group.write(str(BACKGROUND_NICE))
    except OSError:
        pass  # no autogroup here (or asked again too soon): the nice value is what applies


def idle_io() -> bool:
    """This process in the idle IO class; False where the kernel or architecture says no.

    Idle is safe here and only here: the copy holds no read transaction on the instance's
    database (the box's online backup is over), so a copy slowed by the disk being busy
    delays the snapshot, never a checkpoint of the instance."""
    number = _IOPRIO_SET.get(os.uname().machine)
    if number is None:
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.syscall(number, _IOPRIO_WHO_PROCESS, 0, IOPRIO_IDLE) == 0)


def main(argv: list[str]) -> int:
    reader_fd, writer_fd = (int(value) for value in argv)
    lower_priority()
    try:
        with (
            os.fdopen(reader_fd, "rb", closefd=False) as reader,
            os.fdopen(writer_fd, "wb", closefd=False) as writer,
        ):
            size, digest = copy_hashed(reader, writer, release=releasable(reader_fd))
    except OSError as exc:  # the caller maps errno (a full disk) to its own message
        print(json.dumps({"errno": exc.errno, "error": exc.strerror or str(exc)}))
        return 1
    print(json.dumps({"size": size, "sha256": digest}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
