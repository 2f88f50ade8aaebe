"""Taking a snapshot of a running instance without holding its writers back.

PocketBase keeps its data in SQLite in WAL mode, where a reader never blocks a writer. So
the databases (``data.db``, ``auxiliary.db``) are copied with SQLite's online backup API in
one step: a single read transaction, a consistent picture of the moment it began, while
the instance goes on writing (its WAL grows meanwhile; nothing waits). Stepping the backup
in small page counts would be worse here: a write by another connection between steps
makes SQLite start the backup over, which under a steady write load never ends.

The copy runs in the instance's own box (a transient unit with its identity and hardening,
``controllers.systemd``), with a small program of ours on the host's Python, because the
databases are the instance's files: opened by root they could be anything the instance
planted (a symlink to ``/etc/shadow``, a file crafted against SQLite's parser). It writes
into a staging folder inside the instance's own folder. Root then takes the staged
databases, ``pb_data/storage`` and the app folders (``pb_hooks``, ``pb_migrations``,
``pb_public``) into the snapshot through directory descriptors (``copy_tree_at``: nothing
in the folder is followed), leaves out anything that is not a file or a folder, hashes
every file, writes the manifest and makes the snapshot visible in one rename.

What the instance's writers must not feel (measured by ``tests/benchmarks/backups.py``):
the staged copy is scratch, written with no journal and no fsync, so it stays in memory;
root copies it into the snapshot in one pass that hashes as it goes, frees the scratch as
it reads it and writes the copy out a megabyte at a time in the idle IO class
(``controllers.background_copy``), so the final fsync has little
left to flush (one flush of the whole database, and the journal commit it forced, was the
writers' longest stall). Both the box and that copy run as processes of their own at the
lowest CPU priority, their session's scheduling group included (a thread's nice value
does not yield to other processes where the scheduler groups tasks by session).

Neighbours: ``folder`` (where snapshots go), ``manifest``; ``controllers.servicedirs``
(the descriptors and the service folders), ``controllers.systemd`` (the box).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import datetime
from pathlib import Path

import structlog
from dbus_fast import Variant

from pockestrator.controllers.background_copy import BACKGROUND_NICE
from pockestrator.controllers.service_layout import DATA_DIR
from pockestrator.controllers.servicedirs.fds import (
    DirFd,
    copy_tree_at,
    lstat_at,
    open_dir_at,
    opened_dir,
)
from pockestrator.controllers.servicedirs.folders import ServiceFolders
from pockestrator.controllers.snapshots.folder import (
    PartialSnapshot,
    Snapshot,
    SnapshotError,
    SnapshotFolder,
    commit_in_thread,
)
from pockestrator.controllers.snapshots.manifest import Kind, build_manifest
from pockestrator.controllers.systemd import SystemdBus, UnitSettings
from pockestrator.controllers.systemd.transient import run_transient
from pockestrator.files import HashedFile, read_chunks, sized_sha256
from pockestrator.specs.model import ServiceSpec
from pockestrator.subprocesses import run_bounded

log = structlog.get_logger("pockestrator.snapshots")

DATABASES = ("data.db", "auxiliary.db")
APP_DIRS = ("pb_hooks", "pb_migrations", "pb_public")
STORAGE = "storage"
STAGE_PREFIX = ".pockestrator-snapshot-"
SNAPSHOT_TIMEOUT = 3600.0
COPIER = "pockestrator.controllers.background_copy"
BACKGROUND_CPU_WEIGHT = 10  # systemd's default is 100

# Runs as the instance, in its folder: argv[1] is the staging folder to create. Prints
# nothing on success; any failure is a non-zero exit with Python's own message.
ONLINE_BACKUP = r"""
import os, sqlite3, sys
stage = sys.argv[1]
try:
    # Where the scheduler groups tasks by session (autogroup: no CPU cgroup), Nice= only
    # ranks this box's own threads; the group's nice is what yields to the instance.
    with open("/proc/self/autogroup", "w") as group:
        group.write("19")
except OSError:
    pass
os.mkdir(stage, 0o700)
for name in ("data.db", "auxiliary.db"):
    source = os.path.join("pb_data", name)
    if not os.path.isfile(source) or os.path.islink(source):
        continue
    src = sqlite3.connect(source, timeout=60)
    dst = sqlite3.connect(os.path.join(stage, name))
    # The staged copy is scratch: root copies it into the snapshot and flushes that. No
    # journal and no fsync here, so its pages stay in memory and never reach the disk.
    dst.execute("PRAGMA journal_mode=OFF")
    dst.execute("PRAGMA synchronous=OFF")
    src.backup(dst)
    dst.execute("PRAGMA journal_mode=DELETE")
    dst.close()
    # The WAL grew for as long as the copy's read transaction held it. Checkpoint it here,
    # passively (never blocking a writer), so that its fsync is this box's, not that of
    # the instance's next commit, whose one write connection would hold every write.
    try:
        src.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.Error:
        pass  # the instance checkpoints itself as before
    src.close()
"""


# The services this process is taking a snapshot of now: their partial and staging folders
# are not an interrupted snapshot's, and ``Snapshots.clean`` leaves them alone.
TAKING: Counter[str] = Counter()


async def take_snapshot(
    bus: SystemdBus,
    settings: UnitSettings,
    folders: ServiceFolders,
    snapshots: SnapshotFolder,
    spec: ServiceSpec,
    *,
    kind: Kind,
    now: datetime,
    python: Path,
    timeout: float = SNAPSHOT_TIMEOUT,
    data_from: Callable[[Path], Awaitable[None]] | None = None,
) -> Snapshot:
    """A complete snapshot of ``spec``'s instance, or ``SnapshotError`` and nothing listed.

    ``data_from`` replaces the copied ``data.db`` in the snapshot's ``pb_data`` before it is
    hashed (a point-in-time restore's database from the replica)."""
    name = spec.project_name
    with _taking(name):
        partial = await asyncio.to_thread(snapshots.begin, name, now)
        stage = STAGE_PREFIX + secrets.token_hex(6)
        phases = _Phases()
        try:
            await _stage_databases(bus, settings, spec, stage, python, timeout)
            phases.mark("stage")
            hashed = await _copy_databases(folders, name, stage, partial, timeout)
            phases.mark("copy")
            await asyncio.to_thread(_collect, folders, name, partial)
            phases.mark("collect")
            if data_from is not None:  # data.db from elsewhere (a replica's point in time)
                await data_from(partial.path / DATA_DIR)
                hashed.pop(f"{DATA_DIR}/{DATABASES[0]}", None)
            files = await asyncio.to_thread(_hash_tree, partial.path, hashed)
            phases.mark("hash")
            manifest = build_manifest(
                name, partial.snapshot_id, kind, now, spec.pocketbase_version, files
            )
            snapshot = await commit_in_thread(snapshots, partial, manifest)
            phases.mark("commit")
        except BaseException:
            await asyncio.to_thread(snapshots.abandon, partial)
            raise
        finally:
            await asyncio.to_thread(_remove_stage, folders, name, stage)
        log.info(
            "snapshot taken",
            service=name,
            snapshot=snapshot.snapshot_id,
            kind=kind,
            files=len(files),
            bytes=manifest.size,
            **phases.seconds,
        )
        return snapshot


@contextlib.contextmanager
def _taking(name: str) -> Iterator[None]:
    """``name`` in ``TAKING`` while one of its snapshots is under way in this process."""
    TAKING[name] += 1
    try:
        yield
    finally:
        TAKING[name] -= 1
        if TAKING[name] <= 0:
            del TAKING[name]


class _Phases:
    """Seconds spent in each phase of a snapshot, for the log line that ends it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.monotonic()

    def mark(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[f"{phase}_seconds"] = round(now - self._last, 3)
        self._last = now


async def _stage_databases(
    bus: SystemdBus,
    settings: UnitSettings,
    spec: ServiceSpec,
    stage: str,
    python: Path,
    timeout: float,
) -> None:
    name = spec.project_name
    properties = [
        *(directive.as_property() for directive in settings.box(spec)),
        ("WorkingDirectory", Variant("s", str(settings.service_dir(name)))),
        # The copy yields the CPU to the instance it copies (2 cores are often all).
        ("Nice", Variant("i", BACKGROUND_NICE)),
        ("CPUWeight", Variant("t", BACKGROUND_CPU_WEIGHT)),
    ]
    run = await run_transient(
        bus,
        f"pockestrator-snapshot-{name}.service",
        [str(python), "-I", "-S", "-c", ONLINE_BACKUP, stage],
        properties,
        timeout=timeout,
    )
    if not run.ok:
        raise SnapshotError(
            f"the online copy of {name}'s databases failed ({run.result}, exit status "
            f"{run.exit_status}): {run.output.strip()[-500:]}"
        )


async def _copy_databases(
    folders: ServiceFolders, name: str, stage: str, partial: PartialSnapshot, timeout: float
) -> dict[str, HashedFile]:
    """The staged databases copied into ``partial``'s ``pb_data``, hashed on the way; their
    entries. The copy is a process of its own at the lowest priority (``background_copy``),
    given the two files open: it opens nothing by name."""
    await asyncio.to_thread((partial.path / DATA_DIR).mkdir, 0o700)
    hashed: dict[str, HashedFile] = {}
    for database in DATABASES:
        opened = await asyncio.to_thread(_open_staged, folders, name, stage, partial, database)
        if opened is None:
            continue
        reader, writer = opened
        try:
            result = await run_bounded(
                [sys.executable, "-m", COPIER, str(reader), str(writer)],
                timeout=timeout,
                pass_fds=(reader, writer),
                new_session=True,
            )
        finally:
            os.close(reader)
            os.close(writer)
        copied = _copy_answer(result.stdout_text)
        if result.returncode != 0 or "sha256" not in copied:
            if isinstance(copied.get("errno"), int):  # e.g. ENOSPC: the caller says "full"
                raise OSError(copied["errno"], f"copying {database}: {copied.get('error')}")
            raise SnapshotError(
                f"copying {name}'s {database} into the snapshot failed: "
                f"{result.stderr_text.strip()[-500:]}"
            )
        hashed[f"{DATA_DIR}/{database}"] = HashedFile(
            f"{DATA_DIR}/{database}", int(str(copied["size"])), str(copied["sha256"])
        )
    if f"{DATA_DIR}/{DATABASES[0]}" not in hashed:
        raise SnapshotError(f"{name} has no pb_data/data.db yet: nothing to snapshot")
    return hashed


def _copy_answer(text: str) -> dict[str, object]:
    try:
        answer = json.loads(text)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def _open_staged(
    folders: ServiceFolders, name: str, stage: str, partial: PartialSnapshot, database: str
) -> tuple[int, int] | None:
    """The staged ``database`` open for reading (no link followed, a regular file only)
    and its new file in the snapshot open for writing; None when it was not staged."""
    with folders.open_service(name) as service_fd:
        if service_fd is None:
            raise SnapshotError(f"{name} has no folder to snapshot")
        with _dir_at(service_fd, stage) as stage_fd:
            info = lstat_at(stage_fd, database)
            if info is None:
                return None
            if not stat.S_ISREG(info.st_mode):
                raise SnapshotError(f"the staged {database} is not a regular file")
            reader = _open_scratch(database, stage_fd)
    try:
        if not stat.S_ISREG(os.fstat(reader).st_mode):
            raise SnapshotError(f"the staged {database} is not a regular file")
        with opened_dir(partial.path / DATA_DIR) as data_target:
            writer = os.open(
                database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=data_target
            )
    except BaseException:
        os.close(reader)
        raise
    return reader, writer


def _open_scratch(database: str, stage_fd: int) -> int:
    """The staged ``database`` open (no link followed), for writing too where it may be:
    the copier frees the scratch copy as it reads it (``background_copy.releasable``) and
    writes no byte of it. Read only where writing is refused."""
    flags = os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        return os.open(database, os.O_RDWR | flags, dir_fd=stage_fd)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        return os.open(database, os.O_RDONLY | flags, dir_fd=stage_fd)


def _collect(folders: ServiceFolders, name: str, partial: PartialSnapshot) -> None:
    """Copy the rest of what the snapshot holds into ``partial`` (hashed by ``_hash_tree``):
    ``pb_data/storage`` and the app folders."""
    with folders.open_service(name) as service_fd:
        if service_fd is None:
            raise SnapshotError(f"{name} has no folder to snapshot")
        with opened_dir(partial.path) as target_fd:
            with opened_dir(partial.path / DATA_DIR) as data_target:
                data_info = lstat_at(service_fd, DATA_DIR)
                if data_info is not None and stat.S_ISDIR(data_info.st_mode):
                    with _dir_at(service_fd, DATA_DIR) as data_fd:
                        if _is_dir_at(data_fd, STORAGE):
                            copy_tree_at(data_fd, STORAGE, data_target, STORAGE)
            for app_dir in APP_DIRS:
                if _is_dir_at(service_fd, app_dir):
                    copy_tree_at(service_fd, app_dir, target_fd, app_dir)


def _dir_at(parent_fd: int, name: str) -> DirFd:
    return open_dir_at(parent_fd, name, Path(name))


def _is_dir_at(parent_fd: int, name: str) -> bool:
    info = lstat_at(parent_fd, name)
    return info is not None and stat.S_ISDIR(info.st_mode)


def _hash_tree(root: Path, hashed: dict[str, HashedFile]) -> list[HashedFile]:
    """Every regular file under ``root`` with its size and SHA-256; anything else removed.

    ``hashed`` are entries taken while copying (the databases), not read again."""
    entries = []
    for folder, _dirs, files in os.walk(root):
        for leaf in files:
            path = Path(folder) / leaf
            known = hashed.get(path.relative_to(root).as_posix())
            if known is not None:
                entries.append(known)
                continue
            if not stat.S_ISREG(os.lstat(path).st_mode) or not _utf8(str(path)):
                # A link copied as a link, or a name no manifest can spell: a snapshot
                # holds regular files with names in UTF-8 only.
                log.warning("left out of a snapshot", path=repr(str(path.relative_to(root))))
                path.unlink()
                continue
            with path.open("rb") as reader:
                size, sha256 = sized_sha256(read_chunks(reader))
            entries.append(HashedFile(path.relative_to(root).as_posix(), size, sha256))
    return entries


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _remove_stage(folders: ServiceFolders, name: str, stage: str) -> None:
    with folders.open_service(name) as service_fd:
        if service_fd is not None and lstat_at(service_fd, stage) is not None:
            shutil.rmtree(stage, dir_fd=service_fd, ignore_errors=True)
