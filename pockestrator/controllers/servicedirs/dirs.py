"""Service folders converged to their spec: ``ServiceDirs``, ``observe`` and ``apply``.

Each service gets a folder owned by the instance user (mode 0750) holding ``pb_data`` and
the optional ``pb_hooks``, ``pb_migrations`` and ``pb_public``, plus ``pocketbase``: the
cached binary of the spec's version, hard-linked from the release cache (copied when the
cache is on another file system), root-owned 0755, swapped in with one rename when the
version changes. ``observe`` reports what differs (``ServiceDirState``); ``apply``
converges and returns what it changed (``DirChanges``; nothing, when nothing differed),
so the reconciler can record events. A copied (not linked) binary is re-hashed only when
its inode, size or times change (a small memo), not on every observe.

``ServiceDirs`` is also the one object the agent holds for everything else done to a
service folder, delegated to ``archive`` (delete), ``backups`` (upgrade backups and
restores) and ``superuser`` (the first superuser).

Neighbours: ``folders`` and ``fds`` (reaching into folders the instance user owns),
``controllers.releases`` (the cache the binary comes from).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

from pockestrator.config import AgentConfig
from pockestrator.controllers.files import sha256_stream
from pockestrator.controllers.hashed_copy import copy_hashing
from pockestrator.controllers.releases import CachedRelease, ReleaseStore
from pockestrator.controllers.service_layout import BINARY_NAME, DATA_DIR
from pockestrator.controllers.servicedirs.archive import DeleteResult, delete_folder
from pockestrator.controllers.servicedirs.backups import backup_data, restore_data
from pockestrator.controllers.servicedirs.errors import ServiceDirError, UnsafePath
from pockestrator.controllers.servicedirs.fds import lstat_at, mkdir_at, open_dir_at
from pockestrator.controllers.servicedirs.folders import DIR_MODE, ServiceFolders
from pockestrator.controllers.servicedirs.owner import InstanceOwner, resolve_instance_owner
from pockestrator.controllers.servicedirs.superuser import (
    SuperuserCreated,
    ensure_superuser,
    superusers_done,
)
from pockestrator.specs.model import ServiceSpec

BINARY_MODE = 0o755
_HASH_MEMO_MAX = 4096

log = structlog.get_logger("pockestrator.servicedirs")


@dataclass(frozen=True)
class ServiceDirState:
    """What is on disk for one service, compared with its spec."""

    path: Path
    exists: bool
    owner_ok: bool = False
    mode_ok: bool = False
    missing_dirs: tuple[str, ...] = ()
    drifted_dirs: tuple[str, ...] = ()
    binary_present: bool = False
    binary_matches: bool = False
    superuser_done: bool | None = None

    @property
    def converged(self) -> bool:
        return (
            self.exists
            and self.owner_ok
            and self.mode_ok
            and not self.missing_dirs
            and not self.drifted_dirs
            and self.binary_matches
        )

    def problems(self) -> list[str]:
        """Human-readable differences (empty when converged)."""
        if not self.exists:
            return [f"{self.path} does not exist"]
        found = []
        if not self.owner_ok:
            found.append(f"{self.path} has the wrong owner")
        if not self.mode_ok:
            found.append(f"{self.path} has the wrong mode")
        found += [f"{self.path / name} is missing" for name in self.missing_dirs]
        found += [f"{self.path / name} has the wrong owner or mode" for name in self.drifted_dirs]
        if not self.binary_present:
            found.append(f"{self.path / BINARY_NAME} is missing")
        elif not self.binary_matches:
            found.append(f"{self.path / BINARY_NAME} is not the cached binary of the version")
        return found


@dataclass(frozen=True)
class DirChanges:
    """What ``apply`` changed, one line per change (empty: nothing needed changing)."""

    path: Path
    changes: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)


class ServiceDirs:
    """Creates, observes, archives and backs up service directories under ``base_dir``.

    Observing and converging a folder is done here; deleting, backups and the first
    superuser are delegated to ``archive``, ``backups`` and ``superuser``.
    """

    def __init__(self, config: AgentConfig, store: ReleaseStore) -> None:
        self.config = config
        self.store = store
        self.folders = ServiceFolders(config)
        self._hash_memo: dict[tuple[int, int, int, int, int], str] = {}

    def path_for(self, name: str) -> Path:
        """``<base_dir>/<name>`` after checking the name and that it resolves to itself."""
        return self.folders.path_for(name)

    def owner(self) -> InstanceOwner:
        return resolve_instance_owner(self.config.instance_user, self.config.instance_group)

    # Observe -----------------------------------------------------------------------------

    async def observe(self, spec: ServiceSpec) -> ServiceDirState:
        """Compare the folder of ``spec`` with what it should be; changes nothing."""
        return await asyncio.to_thread(self._observe, spec)

    def _observe(self, spec: ServiceSpec) -> ServiceDirState:
        path = self.path_for(spec.project_name)
        owner = self.owner()
        with self.folders.open_service(spec.project_name) as opened:
            if opened is None:
                return ServiceDirState(path, exists=False)
            service_fd, _ = opened
            info = os.fstat(service_fd)
            missing, drifted = [], []
            for child in (DATA_DIR, *spec.extra_dirs):
                child_info = lstat_at(service_fd, child)
                if child_info is None:
                    missing.append(child)
                elif not stat.S_ISDIR(child_info.st_mode):
                    raise UnsafePath(f"{path / child} is a symlink or not a directory")
                elif not self._owned_right(child_info, owner):
                    drifted.append(child)
            binary_info = lstat_at(service_fd, BINARY_NAME)
            record = self.store.record(spec.pocketbase_version)
            matches = (
                binary_info is not None
                and record is not None
                and self._binary_matches(service_fd, binary_info, record)
            )
            done = None
            if spec.superuser_email is not None:
                done = spec.superuser_email in superusers_done(service_fd)
            return ServiceDirState(
                path,
                exists=True,
                owner_ok=(info.st_uid, info.st_gid) == (owner.uid, owner.gid),
                mode_ok=stat.S_IMODE(info.st_mode) == DIR_MODE,
                missing_dirs=tuple(missing),
                drifted_dirs=tuple(drifted),
                binary_present=binary_info is not None and stat.S_ISREG(binary_info.st_mode),
                binary_matches=matches,
                superuser_done=done,
            )

    @staticmethod
    def _owned_right(info: os.stat_result, owner: InstanceOwner) -> bool:
        return (info.st_uid, info.st_gid) == (owner.uid, owner.gid) and stat.S_IMODE(
            info.st_mode
        ) == DIR_MODE

    def _binary_matches(self, service_fd: int, info: os.stat_result, record: CachedRelease) -> bool:
        """The service's binary is the cache's file (same inode) or a faithful copy of it."""
        if not stat.S_ISREG(info.st_mode):
            return False
        try:
            cached = os.stat(record.path, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if (info.st_dev, info.st_ino) == (cached.st_dev, cached.st_ino):
            return True
        expected_uid = 0 if os.geteuid() == 0 else os.geteuid()
        if (
            info.st_uid != expected_uid
            or stat.S_IMODE(info.st_mode) != BINARY_MODE
            or info.st_size != cached.st_size
        ):
            return False
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        digest = self._hash_memo.get(key)
        if digest is None:
            fd = os.open(BINARY_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=service_fd)
            with os.fdopen(fd, "rb") as reader:
                digest = sha256_stream(reader)
            if len(self._hash_memo) >= _HASH_MEMO_MAX:
                self._hash_memo.clear()
            self._hash_memo[key] = digest
        return digest == record.sha256

    # Apply -------------------------------------------------------------------------------

    async def apply(self, spec: ServiceSpec) -> DirChanges:
        """Converge the folder of ``spec``; the binary of its version must be cached."""
        return await asyncio.to_thread(self._apply, spec)

    def _apply(self, spec: ServiceSpec) -> DirChanges:
        path = self.path_for(spec.project_name)
        owner = self.owner()
        record = self.store.record(spec.pocketbase_version)
        if record is None:
            raise ServiceDirError(
                f"PocketBase {spec.pocketbase_version} is not in the release cache; fetch it first"
            )
        changes: list[str] = []
        with self.folders.open_service(spec.project_name, create=True) as opened:
            assert opened is not None
            service_fd, created = opened
            if created:
                changes.append(f"created {path}")
            changes += self._fix_ownership(service_fd, path, owner, quiet=created)
            for child in (DATA_DIR, *spec.extra_dirs):
                child_created = mkdir_at(service_fd, child, DIR_MODE)
                if child_created:
                    changes.append(f"created {path / child}")
                with open_dir_at(service_fd, child, path / child) as child_fd:
                    changes += self._fix_ownership(child_fd, path / child, owner, child_created)
            change = self._place_binary(service_fd, path, record)
            if change:
                changes.append(change)
            if changes:
                os.fsync(service_fd)
        if changes:
            log.info("service directory changed", service=spec.project_name, changes=changes)
        return DirChanges(path, tuple(changes))

    @staticmethod
    def _fix_ownership(fd: int, shown: Path, owner: InstanceOwner, quiet: bool) -> list[str]:
        info = os.fstat(fd)
        changes = []
        if (info.st_uid, info.st_gid) != (owner.uid, owner.gid):
            os.fchown(fd, owner.uid, owner.gid)
            changes.append(
                f"owner of {shown} set to {owner.user}:{owner.group} "
                f"(was {info.st_uid}:{info.st_gid})"
            )
        if stat.S_IMODE(info.st_mode) != DIR_MODE:
            os.fchmod(fd, DIR_MODE)
            changes.append(
                f"mode of {shown} set to {DIR_MODE:o} (was {stat.S_IMODE(info.st_mode):o})"
            )
        return [] if quiet else changes

    def _place_binary(self, service_fd: int, path: Path, record: CachedRelease) -> str | None:
        """Link (or copy) the cached binary in, replacing whatever is there in one rename."""
        current = lstat_at(service_fd, BINARY_NAME)
        if current is not None and self._binary_matches(service_fd, current, record):
            return None
        temporary = f".{BINARY_NAME}.{secrets.token_hex(6)}.tmp"
        try:
            try:
                os.link(record.path, temporary, dst_dir_fd=service_fd, follow_symlinks=False)
                how = "linked"
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                self._copy_binary(service_fd, temporary, record)
                how = "copied"
            os.replace(temporary, BINARY_NAME, src_dir_fd=service_fd, dst_dir_fd=service_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=service_fd)
            raise
        replaced = "" if current is None else " (replacing a different file)"
        return f"PocketBase {record.version} {how} to {path / BINARY_NAME}{replaced}"

    @staticmethod
    def _copy_binary(service_fd: int, name: str, record: CachedRelease) -> None:
        root = (0, 0) if os.geteuid() == 0 else None
        with open(record.path, "rb") as reader:
            copied = copy_hashing(reader, name, dir_fd=service_fd, mode=BINARY_MODE, owner=root)
        if copied.sha256 != record.sha256:
            raise ServiceDirError(
                f"the cached binary of {record.version} no longer matches its recorded hash"
            )

    # Delete, backups, the first superuser --------------------------------------------

    async def delete(self, name: str, *, purge: bool = False) -> DeleteResult:
        """Archive the folder as ``<archive>/<name>-<UTC stamp>``; remove it only on purge."""
        return await asyncio.to_thread(delete_folder, self.folders, name, purge=purge)

    async def backup_data(self, name: str) -> Path:
        """Copy ``pb_data`` (the service must be stopped) to a timestamped, root-only backup."""
        return await asyncio.to_thread(backup_data, self.folders, name)

    async def restore_data(self, name: str, backup: Path) -> Path:
        """Put a backup of ``pb_data`` back; the data it replaces is kept beside the backups.

        Returns where the replaced ``pb_data`` went. The service must be stopped.
        """
        return await asyncio.to_thread(restore_data, self.folders, name, backup)

    async def ensure_superuser(
        self, spec: ServiceSpec, password: str | None = None
    ) -> SuperuserCreated | None:
        """Create the spec's first superuser once; None when there is none or it exists.

        The password is ``password`` when the caller has one (the API generates it so it
        can show it at creation), else read from ``superuser_password_file``, else
        generated; a generated one is in the result, the only place it ever appears.
        """
        return await ensure_superuser(self.folders, self.owner, spec, password)
