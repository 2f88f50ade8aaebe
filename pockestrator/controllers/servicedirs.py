"""Service directories: ``<base_dir>/<name>/`` with its data, its binary and its first superuser.

Each service gets a folder owned by the instance user (mode 0750) holding ``pb_data`` and
the optional ``pb_hooks``, ``pb_migrations`` and ``pb_public``, plus ``pocketbase``: the
cached binary of the spec's version, hard-linked from the release cache (copied when the
cache is on another file system), root-owned 0755, swapped in with one rename when the
version changes. ``observe`` reports what differs; ``apply`` converges and returns what it
changed (nothing, when nothing differed), so the reconciler can record events.

The instance user owns these folders, so the agent (root) treats everything inside them
as hostile: names are checked against the grammar, every path is resolved and must stay
directly under ``base_dir``, and work inside a service folder goes through directory file
descriptors opened with ``O_NOFOLLOW``, so a symlink planted as the folder, as ``pb_data``
or as the binary is refused or replaced, never followed. Nothing outside ``base_dir`` and
the archive folder is touched.

Deleting archives the folder as ``<archive>/<name>-<UTC timestamp>`` unless a purge is asked
for. Upgrades back ``pb_data`` up to ``<base_dir>/.backups/<name>/`` (root-only) and restore
it on rollback. The first superuser is created once with ``pocketbase superuser upsert``,
run as the instance user so that file ownership never drifts; its generated password is
returned to the caller once and never logged, raised or recorded.

Neighbours: ``releases`` fills the cache this module links from; the systemd controller
renders units whose ``ExecStart`` runs ``<dir>/pocketbase``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import json
import os
import pwd
import secrets
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from pockestrator.config import AgentConfig
from pockestrator.controllers.files import fsync_directory, sha256_stream, write_atomic
from pockestrator.controllers.hashed_copy import copy_hashing
from pockestrator.controllers.releases import CachedRelease, ReleaseStore
from pockestrator.controllers.service_layout import BINARY_NAME, DATA_DIR
from pockestrator.controllers.stamped_paths import unique_stamped_path, utc_stamp
from pockestrator.specs.grammar import GrammarError, check_project_name
from pockestrator.specs.model import ServiceSpec
from pockestrator.subprocesses import ProcessTimedOut, run_bounded

DIR_MODE = 0o750
BINARY_MODE = 0o755
SUPERUSER_MARKER = ".pockestrator-superuser"
BACKUPS_DIR = ".backups"
SUPERUSER_TIMEOUT = 60.0
# The upsert prints a line or two; whatever prints a megabyte is not PocketBase's upsert.
SUPERUSER_OUTPUT_MAX_BYTES = 1024 * 1024
PASSWORD_FILE_MAX_BYTES = 4096
SETPRIV = "setpriv"
_HASH_MEMO_MAX = 4096

log = structlog.get_logger("pockestrator.servicedirs")


class ServiceDirError(Exception):
    """A service directory could not be brought to its desired state."""


class UnsafePath(ServiceDirError):
    """A name or path would lead outside ``base_dir`` (or through a symlink): refused."""


class SuperuserError(ServiceDirError):
    """The first superuser could not be created (the message never holds the password)."""


@dataclass(frozen=True)
class InstanceOwner:
    """The account instances run as, resolved from the configured names."""

    user: str
    group: str
    uid: int
    gid: int


def resolve_instance_owner(user: str, group: str | None = None) -> InstanceOwner:
    """uid/gid of ``user`` and ``group`` (default: the user's primary group)."""
    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise ServiceDirError(f"instance user '{user}' does not exist on this host") from None
    if group is None:
        gid = account.pw_gid
        try:
            group = grp.getgrgid(gid).gr_name
        except KeyError:
            group = str(gid)
    else:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise ServiceDirError(f"instance group '{group}' does not exist on this host") from None
    return InstanceOwner(user, group, account.pw_uid, gid)


def redact(text: str, secret: str) -> str:
    """``text`` with every occurrence of ``secret`` replaced, for error messages."""
    return text.replace(secret, "[redacted]") if secret else text


def superuser_command(
    binary: Path, data_dir: Path, email: str, password: str, owner: InstanceOwner | None
) -> list[str]:
    """The argument list of ``pocketbase superuser upsert``, as ``owner`` when given.

    PocketBase takes the password only as an argument, so it is visible in ``/proc`` to the
    host's other users for the fraction of a second the command runs.
    """
    # "--" ends the options: a password may start with "-" (token_urlsafe's alphabet has it).
    command = [str(binary), "superuser", "upsert", f"--dir={data_dir}", "--", email, password]
    if owner is None:
        return command
    setpriv = shutil.which(SETPRIV) or f"/usr/bin/{SETPRIV}"
    return [
        setpriv,
        f"--reuid={owner.uid}",
        f"--regid={owner.gid}",
        "--init-groups",
        "--",
        *command,
    ]


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


@dataclass(frozen=True)
class DeleteResult:
    """Where a deleted service's folder went: archived, purged, or there was none."""

    path: Path
    existed: bool
    archived_to: Path | None = None
    purged: bool = False


@dataclass(frozen=True)
class SuperuserCreated:
    """The first superuser was created; ``password`` only when generated (shown once)."""

    email: str
    password: str | None = field(default=None, repr=False)


class _Fd:
    """An open directory file descriptor, closed on exit."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> int:
        return self.fd

    def __exit__(self, *exc_info: object) -> None:
        os.close(self.fd)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir_at(parent_fd: int | None, name: str, shown: Path) -> _Fd:
    """Open a directory without following a symlink in its last component."""
    try:
        return _Fd(os.open(name, _DIR_FLAGS, dir_fd=parent_fd))
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise UnsafePath(
                f"{shown} is a symlink or not a directory; refusing to use it"
            ) from None
        raise


def _lstat_at(parent_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _mkdir_at(parent_fd: int, name: str, mode: int) -> bool:
    """Create a directory; False when something already has that name."""
    try:
        os.mkdir(name, mode, dir_fd=parent_fd)
    except FileExistsError:
        return False
    return True


def _copy_tree(source: Path, destination: Path) -> None:
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
                _copy_tree(origin, target)
                continue
            elif stat.S_ISREG(entry_info.st_mode):
                source_fd = os.open(origin, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
                with os.fdopen(source_fd, "rb") as reader:
                    # Data, not a binary: nothing to verify, so no digest is computed.
                    copy_hashing(reader, target, mode=0o600, algorithms=())
            else:
                continue  # sockets, FIFOs and devices are not data
            _copy_metadata(target, entry_info)
    _copy_metadata(destination, info)


def _copy_metadata(path: Path, info: os.stat_result) -> None:
    os.chown(path, info.st_uid, info.st_gid, follow_symlinks=False)
    if not stat.S_ISLNK(info.st_mode):
        os.chmod(path, stat.S_IMODE(info.st_mode))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns), follow_symlinks=False)


class ServiceDirs:
    """Creates, observes, archives and backs up service directories under ``base_dir``."""

    def __init__(self, config: AgentConfig, store: ReleaseStore) -> None:
        self.config = config
        self.store = store
        self.base_dir = config.base_dir.resolve()
        self.archive_dir = config.archive_path.resolve()
        self.backups_dir = self.base_dir / BACKUPS_DIR
        self._hash_memo: dict[tuple[int, int, int, int, int], str] = {}

    # Paths -------------------------------------------------------------------------------

    def path_for(self, name: str) -> Path:
        """``<base_dir>/<name>`` after checking the name and that it resolves to itself."""
        try:
            check_project_name(name)
        except GrammarError as exc:
            raise UnsafePath(f"{name[:60]!r} is not a service name: {exc.message}") from None
        path = self.base_dir / name
        resolved = path.resolve()
        if resolved != path or resolved.parent != self.base_dir:
            raise UnsafePath(f"{path} resolves to {resolved}, not a folder of {self.base_dir}")
        return path

    def owner(self) -> InstanceOwner:
        return resolve_instance_owner(self.config.instance_user, self.config.instance_group)

    def _open_base(self, create: bool) -> _Fd | None:
        if create:
            self.base_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        try:
            return _Fd(os.open(self.base_dir, _DIR_FLAGS))
        except FileNotFoundError:
            return None

    @contextlib.contextmanager
    def _service_fd(self, name: str, *, create: bool = False) -> Iterator[tuple[int, bool] | None]:
        """The service folder's descriptor and whether it was just created (None: absent)."""
        path = self.path_for(name)
        base = self._open_base(create)
        if base is None:
            yield None
            return
        with base as base_fd:
            created = create and _mkdir_at(base_fd, name, DIR_MODE)
            if not create and _lstat_at(base_fd, name) is None:
                yield None
                return
            with _open_dir_at(base_fd, name, path) as service_fd:
                yield service_fd, created

    # Observe -----------------------------------------------------------------------------

    async def observe(self, spec: ServiceSpec) -> ServiceDirState:
        """Compare the folder of ``spec`` with what it should be; changes nothing."""
        return await asyncio.to_thread(self._observe, spec)

    def _observe(self, spec: ServiceSpec) -> ServiceDirState:
        path = self.path_for(spec.project_name)
        owner = self.owner()
        with self._service_fd(spec.project_name) as opened:
            if opened is None:
                return ServiceDirState(path, exists=False)
            service_fd, _ = opened
            info = os.fstat(service_fd)
            missing, drifted = [], []
            for child in (DATA_DIR, *spec.extra_dirs):
                child_info = _lstat_at(service_fd, child)
                if child_info is None:
                    missing.append(child)
                elif not stat.S_ISDIR(child_info.st_mode):
                    raise UnsafePath(f"{path / child} is a symlink or not a directory")
                elif not self._owned_right(child_info, owner):
                    drifted.append(child)
            binary_info = _lstat_at(service_fd, BINARY_NAME)
            record = self.store.record(spec.pocketbase_version)
            matches = (
                binary_info is not None
                and record is not None
                and self._binary_matches(service_fd, binary_info, record)
            )
            done = None
            if spec.superuser_email is not None:
                done = spec.superuser_email in self._superusers_done(service_fd)
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
        with self._service_fd(spec.project_name, create=True) as opened:
            assert opened is not None
            service_fd, created = opened
            if created:
                changes.append(f"created {path}")
            changes += self._fix_ownership(service_fd, path, owner, quiet=created)
            for child in (DATA_DIR, *spec.extra_dirs):
                child_created = _mkdir_at(service_fd, child, DIR_MODE)
                if child_created:
                    changes.append(f"created {path / child}")
                with _open_dir_at(service_fd, child, path / child) as child_fd:
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
        current = _lstat_at(service_fd, BINARY_NAME)
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

    # Delete ------------------------------------------------------------------------------

    async def delete(self, name: str, *, purge: bool = False) -> DeleteResult:
        """Archive the folder as ``<archive>/<name>-<UTC stamp>``; remove it only on purge."""
        return await asyncio.to_thread(self._delete, name, purge)

    def _delete(self, name: str, purge: bool) -> DeleteResult:
        path = self.path_for(name)
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
            fsync_directory(self.base_dir)
            log.info("service directory purged", service=name, path=str(path))
            return DeleteResult(path, existed=True, purged=True)
        destination = self._archive_target(name)
        try:
            os.rename(path, destination)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            _copy_tree(path, destination)
            shutil.rmtree(path)
        fsync_directory(self.base_dir)
        fsync_directory(self.archive_dir)
        log.info("service directory archived", service=name, archived_to=str(destination))
        return DeleteResult(path, existed=True, archived_to=destination)

    def _archive_target(self, name: str) -> Path:
        self.archive_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return unique_stamped_path(self.archive_dir, name)

    # Backups for upgrades ----------------------------------------------------------------

    async def backup_data(self, name: str) -> Path:
        """Copy ``pb_data`` (the service must be stopped) to a timestamped, root-only backup."""
        return await asyncio.to_thread(self._backup_data, name)

    def _backups_for(self, name: str) -> Path:
        self.path_for(name)
        folder = self.backups_dir / name
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.backups_dir, 0o700)
        return folder

    def _backup_data(self, name: str) -> Path:
        path = self.path_for(name)
        folder = self._backups_for(name)
        with self._service_fd(name) as opened:
            if opened is None:
                raise ServiceDirError(f"{path} does not exist; nothing to back up")
            service_fd, _ = opened
            data_info = _lstat_at(service_fd, DATA_DIR)
            if data_info is None or not stat.S_ISDIR(data_info.st_mode):
                raise UnsafePath(f"{path / DATA_DIR} is missing, a symlink or not a directory")
        target = unique_stamped_path(folder, DATA_DIR)
        partial = folder / f".{target.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        try:
            _copy_tree(path / DATA_DIR, partial)
            os.rename(partial, target)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        fsync_directory(folder)
        log.info("service data backed up", service=name, backup=str(target))
        return target

    async def restore_data(self, name: str, backup: Path) -> Path:
        """Put a backup of ``pb_data`` back; the data it replaces is kept beside the backups.

        Returns where the replaced ``pb_data`` went. The service must be stopped.
        """
        return await asyncio.to_thread(self._restore_data, name, backup)

    def _restore_data(self, name: str, backup: Path) -> Path:
        path = self.path_for(name)
        folder = self._backups_for(name)
        resolved = backup.resolve()
        if resolved.parent != folder or not resolved.name.startswith(f"{DATA_DIR}-"):
            raise UnsafePath(f"{backup} is not a backup of {name} in {folder}")
        if not stat.S_ISDIR(os.lstat(resolved).st_mode):
            raise UnsafePath(f"{backup} is not a directory")
        incoming = f".{DATA_DIR}.restore-{secrets.token_hex(4)}"
        displaced = unique_stamped_path(folder, f"{DATA_DIR}-replaced")
        with self._service_fd(name) as opened:
            if opened is None:
                raise ServiceDirError(f"{path} does not exist; nothing to restore into")
            service_fd, _ = opened
            _copy_tree(resolved, path / incoming)
            try:
                current = _lstat_at(service_fd, DATA_DIR)
                if current is not None:
                    if not stat.S_ISDIR(current.st_mode):
                        raise UnsafePath(f"{path / DATA_DIR} is a symlink or not a directory")
                    os.rename(DATA_DIR, displaced, src_dir_fd=service_fd)
                os.rename(incoming, DATA_DIR, src_dir_fd=service_fd, dst_dir_fd=service_fd)
            except BaseException:
                shutil.rmtree(path / incoming, ignore_errors=True)
                raise
            os.fsync(service_fd)
        log.info("service data restored", service=name, backup=str(resolved))
        return displaced

    # The first superuser -----------------------------------------------------------------

    def _superusers_done(self, service_fd: int) -> list[str]:
        try:
            fd = os.open(
                SUPERUSER_MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=service_fd
            )
        except OSError:
            return []
        try:
            data = json.loads(os.read(fd, 64 * 1024))
        except ValueError:
            return []
        finally:
            os.close(fd)
        emails = data.get("emails") if isinstance(data, dict) else None
        return (
            [email for email in emails if isinstance(email, str)]
            if isinstance(emails, list)
            else []
        )

    async def ensure_superuser(
        self, spec: ServiceSpec, password: str | None = None
    ) -> SuperuserCreated | None:
        """Create the spec's first superuser once; None when there is none or it exists.

        The password is ``password`` when the caller has one (the API generates it so it
        can show it at creation), else read from ``superuser_password_file``, else
        generated; a generated one is in the result, the only place it ever appears.
        """
        email = spec.superuser_email
        if email is None:
            return None
        name = spec.project_name
        path = self.path_for(name)
        with self._service_fd(name) as opened:
            if opened is None:
                raise ServiceDirError(f"{path} does not exist; apply the service directory first")
            service_fd, _ = opened
            done = self._superusers_done(service_fd)
            if email in done:
                return None
            for needed in (BINARY_NAME, DATA_DIR):
                if _lstat_at(service_fd, needed) is None:
                    raise ServiceDirError(f"{path / needed} is missing; apply the directory first")
        if password is not None:
            generated = False
        elif spec.superuser_password_file is not None:
            password = read_password_file(Path(spec.superuser_password_file))
            generated = False
        else:
            password = secrets.token_urlsafe(24)
            generated = True
        await self._run_upsert(path, email, password)
        write_atomic(
            path / SUPERUSER_MARKER,
            json.dumps({"emails": [*done, email], "at": utc_stamp()}) + "\n",
            mode=0o644,
        )
        log.info("first superuser created", service=name, email=email, generated=generated)
        return SuperuserCreated(email, password if generated else None)

    async def _run_upsert(self, path: Path, email: str, password: str) -> None:
        owner = self.owner()
        as_owner = None if os.geteuid() == owner.uid else owner
        command = superuser_command(path / BINARY_NAME, path / DATA_DIR, email, password, as_owner)
        environment = {"PATH": "/usr/bin:/bin", "HOME": str(path), "LANG": "C.UTF-8"}
        try:
            result = await run_bounded(
                command,
                timeout=SUPERUSER_TIMEOUT,
                output_limit=SUPERUSER_OUTPUT_MAX_BYTES,
                cwd=path,
                env=environment,
                merge_stderr=True,
            )
        except ProcessTimedOut:
            raise SuperuserError(
                f"pocketbase superuser upsert for {email} timed out after {SUPERUSER_TIMEOUT:g} s"
            ) from None
        except OSError as exc:
            raise SuperuserError(
                f"cannot run {Path(command[0]).name} for {email}: {exc.strerror}"
            ) from None
        if result.truncated:
            raise SuperuserError(
                f"pocketbase superuser upsert for {email} printed more than "
                f"{SUPERUSER_OUTPUT_MAX_BYTES} bytes; stopped it"
            )
        if result.returncode != 0:
            text = redact(result.stdout_text, password).strip()
            raise SuperuserError(
                f"pocketbase superuser upsert for {email} failed "
                f"(exit status {result.returncode}): {text[-500:]}"
            )


def read_password_file(path: Path) -> str:
    """The first line of a password file; errors name the file, never its content.

    The agent runs as root and the path comes from a spec, so the file must be one a
    careful operator made for the purpose: a regular file (no FIFO can block us, no
    symlink can redirect us), owned by root, readable by nobody else. That also refuses
    system files such as /etc/shadow (mode 0640).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise SuperuserError(f"cannot read password file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SuperuserError(f"password file {path} is not a regular file")
        if info.st_uid != 0 or info.st_mode & 0o077:
            raise SuperuserError(
                f"password file {path} must be owned by root with mode 0600 or 0400"
            )
        raw = os.read(fd, PASSWORD_FILE_MAX_BYTES + 1)
    except OSError as exc:
        raise SuperuserError(f"cannot read password file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(raw) > PASSWORD_FILE_MAX_BYTES:
        raise SuperuserError(f"password file {path} is larger than {PASSWORD_FILE_MAX_BYTES} bytes")
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise SuperuserError(f"password file {path} is not UTF-8 text") from None
    password = lines[0] if lines else ""
    if not password or any(ord(char) < 32 or ord(char) == 127 for char in password):
        raise SuperuserError(
            f"password file {path} must hold the password on its first line, "
            "without control characters"
        )
    return password
