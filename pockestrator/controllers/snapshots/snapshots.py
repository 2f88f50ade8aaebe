"""``Snapshots``: the one object the agent holds for snapshots of every service.

It wires the parts of this package to the host (the snapshot folder, the service folders,
the box settings, the bus, the Python for the boxes) and offers what the reconciler's
backup work needs: ``observe`` (the snapshots a service has), ``take``, ``prune``,
``verify``, ``restore`` and ``seed``, and ``clean`` for what an interrupted run left; and
for the off-site targets (``s3``): ``upload``, ``remote`` (what each target holds),
``fetch`` (a snapshot brought back into the local folder, checked file by file) and
``prune_remote``.

Neighbours: ``agent.backups`` (when each is called), the modules of this package (how).
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from pockestrator.clock import utc_now
from pockestrator.config import AgentConfig, S3Target
from pockestrator.controllers.servicedirs.fds import lstat_at
from pockestrator.controllers.servicedirs.folders import ServiceFolders
from pockestrator.controllers.snapshots.folder import (
    Snapshot,
    SnapshotError,
    SnapshotFolder,
    Verification,
    commit_in_thread,
)
from pockestrator.controllers.snapshots.litestream import Replication
from pockestrator.controllers.snapshots.manifest import Kind, Manifest
from pockestrator.controllers.snapshots.restore import place_snapshot, seed, seed_from
from pockestrator.controllers.snapshots.retention import Candidate, to_prune
from pockestrator.controllers.snapshots.s3 import S3Store, TargetError, Uploaded
from pockestrator.controllers.snapshots.take import STAGE_PREFIX, TAKING, take_snapshot
from pockestrator.controllers.snapshots.verify import verify_snapshot
from pockestrator.controllers.systemd import SystemdBus, UnitSettings
from pockestrator.controllers.systemd.scratch import Healthy
from pockestrator.specs.backups import KeepPolicy, ReplicationPolicy
from pockestrator.specs.model import ServiceSpec, unit_name
from pockestrator.subprocesses import find_tool

log = structlog.get_logger("pockestrator.snapshots")
# A listing (an API answer) does not wait longer than this for a target that is down.
REMOTE_LIST_TIMEOUT = 10.0


@dataclass(frozen=True)
class RemoteSnapshot:
    """A whole snapshot one target holds."""

    target: str
    manifest: Manifest


class Snapshots:
    def __init__(self, config: AgentConfig, bus: SystemdBus) -> None:
        self.folder = SnapshotFolder(config.snapshots_path)
        self.targets = {
            name: S3Store(name, target) for name, target in config.backup_targets.items()
        }
        self.target_settings = dict(config.backup_targets)
        self.replication = Replication(
            bus,
            config.database.parent / "replication",
            config.litestream_binary or find_tool("litestream"),
            frozenset(config.hardening_disabled),
        )
        self.folders = ServiceFolders(config)
        self.settings = UnitSettings.from_config(config)
        self.bus = bus
        self.python = config.instance_python

    async def observe(self, name: str) -> list[Snapshot]:
        """The complete snapshots of ``name``, newest first."""
        return await asyncio.to_thread(self.folder.list, name)

    async def clean(self, name: str) -> list[str]:
        """Remove what an interrupted snapshot left (a partial snapshot, a staging folder)."""
        return await asyncio.to_thread(self._clean, name)

    def _clean(self, name: str) -> list[str]:
        if name in TAKING:  # not interrupted: under way in this process
            return []
        removed = self.folder.clean_partials(name)
        with self.folders.open_service(name) as service_fd:
            if service_fd is not None:
                for entry in os.listdir(service_fd):
                    if entry.startswith(STAGE_PREFIX) and lstat_at(service_fd, entry):
                        shutil.rmtree(entry, dir_fd=service_fd, ignore_errors=True)
                        removed.append(entry)
        return removed

    async def _take(
        self,
        spec: ServiceSpec,
        kind: Kind,
        now: datetime,
        data_from: Callable[[Path], Awaitable[None]] | None = None,
    ) -> Snapshot:
        return await take_snapshot(
            self.bus,
            self.settings,
            self.folders,
            self.folder,
            spec,
            kind=kind,
            now=now,
            python=self.python,
            data_from=data_from,
        )

    async def take(self, spec: ServiceSpec, kind: Kind, now: datetime) -> Snapshot:
        try:
            return await self._take(spec, kind, now)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise SnapshotError(
                f"the snapshot folder {self.folder.root} is full (no space left on the device);"
                " nothing was kept: free some space or prune old snapshots"
            ) from exc

    async def prune(self, name: str, keep: KeepPolicy) -> list[str]:
        """Delete what the retention does not keep; the ids deleted."""
        snapshots = await self.observe(name)
        doomed = to_prune(
            [
                Candidate(s.snapshot_id, s.manifest.kind, s.manifest.created_at, s.verified)
                for s in snapshots
            ],
            keep,
        )
        for snapshot_id in doomed:
            await asyncio.to_thread(self.folder.delete, name, snapshot_id)
        return doomed

    def get(self, name: str, snapshot_id: str | None) -> Snapshot:
        """One snapshot of ``name``; None: the newest."""
        if snapshot_id is None:
            found = self.folder.list(name)
            if not found:
                raise SnapshotError(f"{name} has no snapshot yet")
            return found[0]
        return self.folder.get(name, snapshot_id)

    async def verify(
        self, name: str, snapshot_id: str | None, now: datetime, healthy: Healthy
    ) -> tuple[Snapshot, Verification]:
        snapshot = await asyncio.to_thread(self.get, name, snapshot_id)
        verification = await verify_snapshot(
            self.bus, self.settings, snapshot, now=now, python=self.python, healthy=healthy
        )
        recorded = await asyncio.to_thread(self.folder.record_verification, snapshot, verification)
        return recorded, verification

    async def delete(self, name: str, snapshot_id: str) -> None:
        await asyncio.to_thread(self.folder.delete, name, snapshot_id)

    async def restore(self, name: str, snapshot: Snapshot) -> Path:
        """Put ``snapshot`` into ``name``'s stopped folder; where the replaced data went."""
        return await asyncio.to_thread(place_snapshot, self.folders, snapshot, name)

    async def seed(self, name: str, snapshot: Snapshot) -> Path:
        return await asyncio.to_thread(seed, self.folders, snapshot, name)

    async def seed_from(self, name: str, source: Path, label: str) -> Path:
        """Seed ``name`` from a folder holding ``pb_data`` (an unpacked import)."""
        return await asyncio.to_thread(seed_from, self.folders, source, name, label)

    def target(self, name: str) -> S3Store:
        store = self.targets.get(name)
        if store is None:
            known = ", ".join(sorted(self.targets)) or "none"
            raise TargetError(f"no backup target {name!r} in the agent's backup_targets ({known})")
        return store

    async def upload(self, name: str, snapshot_id: str | None, target: str) -> Uploaded:
        """Copy a snapshot (None: the newest) to ``target``, verified; recorded beside it."""
        store = self.target(target)
        snapshot = await asyncio.to_thread(self.get, name, snapshot_id)
        uploaded = await asyncio.to_thread(
            store.upload, snapshot.path, snapshot.manifest, utc_now()
        )
        await asyncio.to_thread(self.folder.record_upload, snapshot, target, uploaded.at)
        return uploaded

    async def remote(self, name: str) -> list[RemoteSnapshot]:
        """What every target holds of ``name``; a target that does not answer is logged."""
        found = []
        for target, store in self.targets.items():
            try:
                manifests = await asyncio.wait_for(
                    asyncio.to_thread(store.list, name), REMOTE_LIST_TIMEOUT
                )
            except (SnapshotError, TimeoutError) as exc:
                reason = str(exc) or f"no answer in {REMOTE_LIST_TIMEOUT:g} s"
                log.warning("target not listed", target=target, service=name, error=reason)
                continue
            found += [RemoteSnapshot(target, manifest) for manifest in manifests]
        return found

    async def fetch(self, name: str, snapshot_id: str) -> Snapshot:
        """The local snapshot ``snapshot_id``, brought back from a target when it is not here."""
        try:
            return await asyncio.to_thread(self.folder.get, name, snapshot_id)
        except SnapshotError:
            pass
        problems = []
        for target, store in self.targets.items():
            try:
                manifest = await asyncio.to_thread(store.get, name, snapshot_id)
            except SnapshotError as exc:
                problems.append(str(exc))
                continue
            partial = await asyncio.to_thread(self.folder.begin_as, name, snapshot_id)
            try:
                await asyncio.to_thread(store.fetch, manifest, partial)
                snapshot = await commit_in_thread(self.folder, partial, manifest)
            except BaseException:
                await asyncio.to_thread(self.folder.abandon, partial)
                raise
            log.info("snapshot fetched", service=name, snapshot=snapshot_id, target=target)
            return await asyncio.to_thread(self.folder.record_upload, snapshot, target, utc_now())
        raise SnapshotError(
            f"{name} has no snapshot {snapshot_id} here or on any target"
            + (f" ({'; '.join(problems)})" if problems else "")
        )

    async def prune_remote(self, name: str, target: str, keep: KeepPolicy) -> list[str]:
        """Delete from ``target`` what the retention does not keep; the ids deleted."""
        store = self.target(target)
        manifests = await asyncio.to_thread(store.list, name)
        doomed = to_prune(
            [Candidate(m.snapshot_id, m.kind, m.created_at, False) for m in manifests], keep
        )
        for snapshot_id in doomed:
            await asyncio.to_thread(store.delete, name, snapshot_id)
        return doomed

    async def delete_remote(self, name: str, snapshot_id: str) -> list[str]:
        """Delete ``snapshot_id`` from every target that holds it; their names."""
        deleted = []
        for target, store in self.targets.items():
            try:
                await asyncio.to_thread(store.get, name, snapshot_id)
            except SnapshotError:
                continue
            await asyncio.to_thread(store.delete, name, snapshot_id)
            deleted.append(target)
        return deleted

    def _replica_target(self, policy: ReplicationPolicy) -> S3Target:
        target = self.target_settings.get(policy.target)
        if target is None:
            raise TargetError(f"no backup target {policy.target!r} to replicate to")
        return target

    async def replicate(self, spec: ServiceSpec, policy: ReplicationPolicy) -> bool:
        """Litestream running for ``spec`` (see ``litestream``); True when (re)started."""
        name = spec.project_name
        return await self.replication.ensure(
            name,
            self.folders.private_path(name),
            unit_name(name),
            self._replica_target(policy),
            policy,
        )

    async def stop_replicating(self, name: str) -> bool:
        """Litestream stopped and its configuration gone; True when there was one."""
        return await self.replication.stop(name)

    async def take_at(
        self, spec: ServiceSpec, policy: ReplicationPolicy, at: datetime, now: datetime
    ) -> Snapshot:
        """A snapshot whose data.db is the replica's as of ``at`` (kind ``replica``)."""
        target = self._replica_target(policy)
        name = spec.project_name

        async def from_replica(data_dir: Path) -> None:
            out = data_dir.parent / ".replica"
            out.mkdir(mode=0o700)
            try:
                await self.replication.restore_to(name, target, policy, at, out)
                await asyncio.to_thread(os.replace, out / "data.db", data_dir / "data.db")
            finally:
                await asyncio.to_thread(shutil.rmtree, out, True)

        return await self._take(spec, "replica", now, from_replica)
