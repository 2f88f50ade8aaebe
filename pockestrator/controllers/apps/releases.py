"""App releases of a service: content-addressed folders in its folder, and a root-only record.

A release is the checked content of an app archive (``apparchive``): ``pb_hooks/``,
``pb_migrations/``, ``pb_public/``, unpacked into ``<service>/.releases/<id>/``, where
``<id>`` is the hash of its file list, so one app is one release however often it is sent.
It is unpacked into a ``.partial-<token>`` folder first and renamed into place whole. Root
writes there only through directory descriptors (the instance owns the folder around it);
the files are root's, 0644, so the instance can read its code and not change a release.

Which release is live, and who sent each one when, is kept outside the instance's reach, in
a root-only record per service (``<apps_dir>/<name>.json``, written atomically): that file
is the pointer. The unit renders ``--hooksDir`` and friends at the live release's folder
(``systemd.render``), so switching is one atomic write of the record and a restart; a
release's files are never overwritten in place. The last ``keep`` releases stay, the live
one always among them.

Neighbours: ``apparchive`` (the checks), ``servicedirs`` (the descriptors), ``agent.deploys``
(the deploy and its way back).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pockestrator.apparchive import AppContent, is_release_id, read_app_archive
from pockestrator.config import AgentConfig
from pockestrator.controllers.service_layout import RELEASES_DIR
from pockestrator.controllers.servicedirs.fds import DirFd, lstat_at, mkdir_at, open_dir_at
from pockestrator.controllers.servicedirs.folders import ServiceFolders
from pockestrator.database import parse_iso
from pockestrator.files import HashedFile, write_atomic
from pockestrator.specs.grammar import check_project_name

PARTIAL_PREFIX = ".partial-"
RECORD_MAX_BYTES = 4 * 1024 * 1024


class ReleaseError(Exception):
    """A release could not be staged, found or switched to; the message says why."""


@dataclass(frozen=True)
class Release:
    """One release as the record keeps it."""

    release_id: str
    created_at: datetime
    created_by: str
    source: str
    files: tuple[HashedFile, ...]

    @property
    def size(self) -> int:
        return sum(file.size for file in self.files)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.release_id,
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "source": self.source,
            "files": [[f.path, f.size, f.sha256] for f in self.files],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Release:
        created = parse_iso(str(data["created_at"]))
        assert created is not None
        return cls(
            release_id=str(data["id"]),
            created_at=created,
            created_by=str(data["created_by"]),
            source=str(data.get("source", "api")),
            files=tuple(HashedFile(str(p), int(s), str(h)) for p, s, h in data["files"]),
        )


@dataclass(frozen=True)
class AppRecord:
    """A service's releases, newest first, and which is live (None: none deployed)."""

    live: str | None = None
    releases: tuple[Release, ...] = field(default_factory=tuple)

    def get(self, release_id: str) -> Release | None:
        return next((r for r in self.releases if r.release_id == release_id), None)

    def previous(self) -> Release | None:
        """The release deployed before the live one (a rollback's default)."""
        ids = [r.release_id for r in self.releases]
        if self.live not in ids:
            return self.releases[0] if self.releases else None
        index = ids.index(self.live)
        return self.releases[index + 1] if index + 1 < len(ids) else None


def file_diff(new: Release, old: Release | None) -> dict[str, list[str]]:
    """File names added, removed and changed from ``old`` to ``new``."""
    before = {f.path: f.sha256 for f in old.files} if old is not None else {}
    after = {f.path: f.sha256 for f in new.files}
    return {
        "added": sorted(set(after) - set(before)),
        "removed": sorted(set(before) - set(after)),
        "changed": sorted(p for p in set(after) & set(before) if after[p] != before[p]),
    }


class AppReleases:
    """The releases of every service: the record, the folders, staging and pruning."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.folders = ServiceFolders(config)
        self.records = config.apps_path

    def release_dir(self, name: str, release_id: str) -> Path:
        """Where the instance sees a release (``<base_dir>/<name>/.releases/<id>``)."""
        if not is_release_id(release_id):
            raise ReleaseError(f"{release_id[:40]!r} is not a release id")
        return self.folders.path_for(name) / RELEASES_DIR / release_id

    # The record -------------------------------------------------------------------

    def _record_path(self, name: str) -> Path:
        return self.records / f"{check_project_name(name)}.json"

    def load(self, name: str) -> AppRecord:
        try:
            with self._record_path(name).open("rb") as file:
                data = json.loads(file.read(RECORD_MAX_BYTES))
        except FileNotFoundError:
            return AppRecord()
        live = data.get("live")
        return AppRecord(
            live=live if isinstance(live, str) and is_release_id(live) else None,
            releases=tuple(Release.from_json(item) for item in data.get("releases", [])),
        )

    def live(self, name: str) -> str | None:
        """The id of the live release of ``name`` (None: the app folders of its spec)."""
        return self.load(name).live

    def _save(self, name: str, record: AppRecord) -> None:
        self.records.mkdir(mode=0o700, parents=True, exist_ok=True)
        data = {"live": record.live, "releases": [r.as_json() for r in record.releases]}
        write_atomic(self._record_path(name), json.dumps(data, indent=1) + "\n", mode=0o600)

    def point(self, name: str, release_id: str | None) -> AppRecord:
        """Make ``release_id`` live (the pointer's one atomic write); None: no release."""
        record = self.load(name)
        if release_id is not None and record.get(release_id) is None:
            raise ReleaseError(f"{name} has no release {release_id}")
        updated = AppRecord(live=release_id, releases=record.releases)
        self._save(name, updated)
        return updated

    def discard(self, name: str, release_id: str) -> None:
        """Drop a release that never went live: its entry and its folder."""
        record = self.load(name)
        if record.live == release_id:
            raise ReleaseError(f"release {release_id} of {name} is live")
        kept = tuple(r for r in record.releases if r.release_id != release_id)
        self._save(name, AppRecord(live=record.live, releases=kept))
        self._remove_folders(name, [release_id])

    def forget(self, name: str) -> None:
        """The service is gone: its record goes too (its folder went to the archive)."""
        with contextlib.suppress(FileNotFoundError):
            self._record_path(name).unlink()

    # The folders ------------------------------------------------------------------

    def stage(self, name: str, archive: Path, *, by: str, source: str, now: datetime) -> Release:
        """Unpack ``archive`` into ``name``'s folder as a release and record it (not live).

        The archive is checked while it is unpacked; a refusal (``UnsafeAppArchive``) leaves
        nothing behind. A release with the same content is kept as it is, newly dated.
        """
        with self.folders.open_service(name) as service_fd:
            if service_fd is None:
                raise ReleaseError(f"{name} has no folder yet: start it once before deploying")
            with self._open_releases(service_fd) as releases_fd:
                content = self._unpack(releases_fd, archive)
        release = Release(content.release_id, now, by, source, content.files)
        record = self.load(name)
        others = tuple(r for r in record.releases if r.release_id != release.release_id)
        self._save(name, AppRecord(live=record.live, releases=(release, *others)))
        return release

    def _open_releases(self, service_fd: int) -> DirFd:
        """``.releases``, root's: what the instance put at that name (a symlink, a file) is
        moved aside, never followed; a folder systemd gave to the instance (a recursive
        chown of its state directory when its dynamic user changed) is taken back."""
        entry = lstat_at(service_fd, RELEASES_DIR)
        if entry is not None and not stat.S_ISDIR(entry.st_mode):
            aside = f".releases-moved-{secrets.token_hex(4)}"
            os.rename(RELEASES_DIR, aside, src_dir_fd=service_fd, dst_dir_fd=service_fd)
        mkdir_at(service_fd, RELEASES_DIR, 0o755)
        folder = open_dir_at(service_fd, RELEASES_DIR, Path(RELEASES_DIR))
        if os.fstat(folder.fd).st_uid != 0:
            os.fchown(folder.fd, 0, 0)
        os.fchmod(folder.fd, 0o755)
        return folder

    def _unpack(self, releases_fd: int, archive: Path) -> AppContent:
        partial = f"{PARTIAL_PREFIX}{secrets.token_hex(6)}"
        os.mkdir(partial, 0o700, dir_fd=releases_fd)
        try:
            with DirFd(
                os.open(partial, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=releases_fd)
            ) as partial_fd:
                with archive.open("rb") as source:
                    content = unpack_into(partial_fd, source, self.config)
                os.fchmod(partial_fd, 0o755)
                os.fsync(partial_fd)
            if lstat_at(releases_fd, content.release_id) is not None:
                shutil.rmtree(partial, dir_fd=releases_fd)
            else:
                os.rename(
                    partial, content.release_id, src_dir_fd=releases_fd, dst_dir_fd=releases_fd
                )
            os.fsync(releases_fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(partial, dir_fd=releases_fd)
            raise
        return content

    def prune(self, name: str, keep: int) -> list[str]:
        """Drop all but the newest ``keep`` releases (the live one always kept)."""
        record = self.load(name)
        ids = [r.release_id for r in record.releases]
        room = keep - (1 if record.live in ids else 0)
        kept: list[Release] = []
        dropped: list[str] = []
        for release in record.releases:
            if release.release_id == record.live:
                kept.append(release)
            elif room > 0:
                kept.append(release)
                room -= 1
            else:
                dropped.append(release.release_id)
        if not dropped:
            return []
        self._save(name, AppRecord(live=record.live, releases=tuple(kept)))
        self._remove_folders(name, dropped)
        return dropped

    def _remove_folders(self, name: str, release_ids: list[str]) -> None:
        with self.folders.open_service(name) as service_fd:
            if service_fd is None or lstat_at(service_fd, RELEASES_DIR) is None:
                return
            with open_dir_at(service_fd, RELEASES_DIR, Path(RELEASES_DIR)) as releases_fd:
                for release_id in release_ids:
                    entry = lstat_at(releases_fd, release_id)
                    if entry is not None and stat.S_ISDIR(entry.st_mode):
                        shutil.rmtree(release_id, dir_fd=releases_fd)

    def check_present(self, name: str, release_id: str) -> None:
        """Raise unless the release's folder is in place (a real folder, root's)."""
        with self.folders.open_service(name) as service_fd:
            entry = None
            if service_fd is not None and lstat_at(service_fd, RELEASES_DIR) is not None:
                with open_dir_at(service_fd, RELEASES_DIR, Path(RELEASES_DIR)) as releases_fd:
                    entry = lstat_at(releases_fd, release_id)
        if entry is None or not stat.S_ISDIR(entry.st_mode) or entry.st_uid != 0:
            raise ReleaseError(f"release {release_id} of {name} is not in its folder any more")


def unpack_into(target_fd: int, source: Any, config: AgentConfig) -> AppContent:
    """``apparchive.read_app_archive`` into ``target_fd`` with the agent's limits, the
    three app folders always made (PocketBase is then given all three)."""
    content = read_app_archive(
        source,
        target=target_fd,
        max_files=config.app_max_files,
        max_bytes=config.app_unpacked_max_bytes,
    )
    for folder in ("pb_hooks", "pb_migrations", "pb_public"):
        with contextlib.suppress(FileExistsError):
            os.mkdir(folder, 0o755, dir_fd=target_fd)
    return content


__all__ = [
    "AppRecord",
    "AppReleases",
    "Release",
    "ReleaseError",
    "file_diff",
    "unpack_into",
]
