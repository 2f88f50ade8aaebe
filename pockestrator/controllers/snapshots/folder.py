"""The local snapshot folder: ``<snapshots_dir>/<service>/<snapshot id>/``, root-only.

A snapshot is made in ``.<id>.partial`` and renamed to ``<id>`` once its manifest is
written and everything is on disk (``commit``), so a folder that is listed is whole: an
agent killed half-way leaves a ``.partial``, which is never listed and which the next
``clean_partials`` removes. ``list`` reads each manifest and the verification beside it
(``verification.json``: when it was last restored, checked and booted, and whether that
worked). Everything here is root's own (0700 folders, 0600 files): nothing an instance
can reach, so paths are followed as paths.

Neighbours: ``manifest`` (what is written), ``take`` (filling a partial one), ``verify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pockestrator.controllers.snapshots.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    check_snapshot_id,
)
from pockestrator.controllers.stamped_paths import utc_stamp
from pockestrator.files import fsync_directory, write_atomic
from pockestrator.specs.grammar import check_project_name, version_key

VERIFICATION_NAME = "verification.json"
UPLOADS_NAME = "uploads.json"
PARTIAL_SUFFIX = ".partial"


class SnapshotError(Exception):
    """A snapshot could not be made, read, verified or restored; the message says why."""


@dataclass(frozen=True)
class Verification:
    at: datetime
    ok: bool
    detail: str


@dataclass(frozen=True)
class Snapshot:
    """A complete snapshot on disk."""

    path: Path
    manifest: Manifest
    verification: Verification | None = None
    # The off-site targets holding a verified copy (``uploads.json``), by name.
    uploaded: frozenset[str] = frozenset()

    @property
    def snapshot_id(self) -> str:
        return self.manifest.snapshot_id

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.verification.ok

    def newer_than(self, version: str) -> str | None:
        """The PocketBase version the snapshot was taken with when it is newer than
        ``version``: its data may carry migrations ``version`` does not know."""
        taken = self.manifest.pocketbase_version
        return taken if taken and version_key(taken) > version_key(version) else None


@dataclass(frozen=True)
class PartialSnapshot:
    """A snapshot being made: its id and the folder it is made in."""

    service: str
    snapshot_id: str
    path: Path


class SnapshotFolder:
    """Snapshots of every service under one root-only folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def service_dir(self, name: str) -> Path:
        return self.root / check_project_name(name)

    def _ensure(self, name: str) -> Path:
        folder = self.service_dir(name)
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in (self.root, folder):
            path.chmod(0o700)
        return folder

    def begin(self, name: str, now: datetime) -> PartialSnapshot:
        """A new, empty ``.<id>.partial`` folder; the id is ``now``'s UTC second."""
        folder = self._ensure(name)
        stamp = utc_stamp(now)
        snapshot_id, counter = stamp, 1
        while any(
            os.path.lexists(folder / candidate)
            for candidate in (snapshot_id, f".{snapshot_id}{PARTIAL_SUFFIX}")
        ):
            snapshot_id = f"{stamp}-{counter}"
            counter += 1
        partial = folder / f".{snapshot_id}{PARTIAL_SUFFIX}"
        partial.mkdir(mode=0o700)
        return PartialSnapshot(name, snapshot_id, partial)

    def begin_as(self, name: str, snapshot_id: str) -> PartialSnapshot:
        """A partial folder for a snapshot brought back from a target, under its own id."""
        folder = self._ensure(name)
        check_snapshot_id(snapshot_id)
        if os.path.lexists(folder / snapshot_id):
            raise SnapshotError(f"{name} already has snapshot {snapshot_id} here")
        partial = folder / f".{snapshot_id}{PARTIAL_SUFFIX}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(mode=0o700)
        return PartialSnapshot(name, snapshot_id, partial)

    def commit(self, partial: PartialSnapshot, manifest: Manifest) -> Snapshot:
        """Write the manifest, flush everything, and make the snapshot visible."""
        if manifest.snapshot_id != partial.snapshot_id or manifest.service != partial.service:
            raise SnapshotError("the manifest is not the partial snapshot's")
        _fsync_tree(partial.path)
        write_atomic(partial.path / MANIFEST_NAME, manifest.to_json() + "\n", mode=0o600)
        final = partial.path.parent / partial.snapshot_id
        os.rename(partial.path, final)
        fsync_directory(final.parent)
        return Snapshot(final, manifest)

    def abandon(self, partial: PartialSnapshot) -> None:
        shutil.rmtree(partial.path, ignore_errors=True)

    def clean_partials(self, name: str) -> list[str]:
        """Remove what an interrupted snapshot left; the names removed."""
        folder = self.service_dir(name)
        removed = []
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                if entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX):
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry.name)
        return removed

    def list(self, name: str) -> list[Snapshot]:
        """The complete snapshots of ``name``, newest first (unreadable ones left out)."""
        folder = self.service_dir(name)
        if not folder.is_dir():
            return []
        found = []
        for entry in folder.iterdir():
            try:
                check_snapshot_id(entry.name)
            except ManifestError:
                continue
            snapshot = self._read(entry)
            if snapshot is not None and snapshot.manifest.service == name:
                found.append(snapshot)
        found.sort(key=lambda s: (s.manifest.created_at, s.snapshot_id), reverse=True)
        return found

    def get(self, name: str, snapshot_id: str) -> Snapshot:
        check_snapshot_id(snapshot_id)
        snapshot = self._read(self.service_dir(name) / snapshot_id)
        if snapshot is None or snapshot.manifest.service != name:
            raise SnapshotError(f"{name} has no snapshot {snapshot_id}")
        return snapshot

    def delete(self, name: str, snapshot_id: str) -> None:
        path = self.get(name, snapshot_id).path
        hidden = path.parent / f".{snapshot_id}.deleting{PARTIAL_SUFFIX}"
        os.rename(path, hidden)  # gone from the list at once, removed after
        shutil.rmtree(hidden, ignore_errors=True)

    def record_verification(self, snapshot: Snapshot, verification: Verification) -> Snapshot:
        body: dict[str, object] = {
            "at": verification.at.isoformat(),
            "ok": verification.ok,
            "detail": verification.detail[:2000],
        }
        write_atomic(snapshot.path / VERIFICATION_NAME, json.dumps(body) + "\n", mode=0o600)
        return Snapshot(snapshot.path, snapshot.manifest, verification, snapshot.uploaded)

    def record_upload(self, snapshot: Snapshot, target: str, at: datetime) -> Snapshot:
        """Remember that ``target`` holds a verified copy (so it is not uploaded again)."""
        uploads = _read_uploads(snapshot.path / UPLOADS_NAME)
        uploads[target] = at.isoformat()
        write_atomic(snapshot.path / UPLOADS_NAME, json.dumps(uploads) + "\n", mode=0o600)
        return Snapshot(snapshot.path, snapshot.manifest, snapshot.verification, frozenset(uploads))

    def _read(self, path: Path) -> Snapshot | None:
        try:
            manifest = Manifest.from_json((path / MANIFEST_NAME).read_bytes())
        except (OSError, ManifestError):
            return None
        if manifest.snapshot_id != path.name:
            return None
        return Snapshot(
            path,
            manifest,
            _read_verification(path / VERIFICATION_NAME),
            frozenset(_read_uploads(path / UPLOADS_NAME)),
        )


def _read_verification(path: Path) -> Verification | None:
    try:
        data = json.loads(path.read_text())
        return Verification(
            datetime.fromisoformat(data["at"]), bool(data["ok"]), str(data["detail"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_uploads(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder of a snapshot before its manifest says it is whole."""
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if os.path.islink(os.path.join(folder, name)):
                continue
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_directory(Path(folder))


async def commit_in_thread(
    folder: SnapshotFolder, partial: PartialSnapshot, manifest: Manifest
) -> Snapshot:
    """``folder.commit`` in a worker thread, which a cancel cannot stop half-way: a
    cancelled caller waits for the thread, takes back a snapshot it made visible (the
    caller is told it was not taken, so none may be listed) and is cancelled then. Without
    the wait, the caller's ``abandon`` would remove files under a commit still renaming
    the folder into place, and a listed snapshot could miss files."""
    committing = asyncio.ensure_future(asyncio.to_thread(folder.commit, partial, manifest))
    try:
        return await asyncio.shield(committing)
    except asyncio.CancelledError:
        # However many cancels come meanwhile, the thread is waited for and its snapshot
        # taken back before the caller's clean-up may run.
        taking_back = asyncio.ensure_future(_take_back(folder, partial, committing))
        while not taking_back.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(taking_back)
        raise


async def _take_back(
    folder: SnapshotFolder, partial: PartialSnapshot, committing: asyncio.Future[Snapshot]
) -> None:
    with contextlib.suppress(Exception):
        made = await committing
        await asyncio.to_thread(folder.delete, partial.service, made.snapshot_id)
