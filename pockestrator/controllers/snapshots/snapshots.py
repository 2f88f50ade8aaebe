"""``Snapshots``: the one object the agent holds for snapshots of every service.

It wires the parts of this package to the host (the snapshot folder, the service folders,
the box settings, the bus, the Python for the boxes) and offers what the reconciler's
backup work needs: ``observe`` (the snapshots a service has), ``take``, ``prune``,
``verify``, ``restore`` and ``seed``, and ``clean`` for what an interrupted run left.

Neighbours: ``agent.backups`` (when each is called), the modules of this package (how).
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from datetime import datetime
from pathlib import Path

from pockestrator.config import AgentConfig
from pockestrator.controllers.servicedirs.fds import lstat_at
from pockestrator.controllers.servicedirs.folders import ServiceFolders
from pockestrator.controllers.snapshots.folder import (
    Snapshot,
    SnapshotError,
    SnapshotFolder,
    Verification,
)
from pockestrator.controllers.snapshots.manifest import Kind
from pockestrator.controllers.snapshots.restore import place_snapshot, seed, seed_from
from pockestrator.controllers.snapshots.retention import Candidate, to_prune
from pockestrator.controllers.snapshots.take import STAGE_PREFIX, take_snapshot
from pockestrator.controllers.snapshots.verify import Healthy, verify_snapshot
from pockestrator.controllers.systemd import SystemdBus, UnitSettings
from pockestrator.specs.backups import KeepPolicy
from pockestrator.specs.model import ServiceSpec


class Snapshots:
    def __init__(self, config: AgentConfig, bus: SystemdBus) -> None:
        self.folder = SnapshotFolder(config.snapshots_path)
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
        removed = self.folder.clean_partials(name)
        with self.folders.open_service(name) as service_fd:
            if service_fd is not None:
                for entry in os.listdir(service_fd):
                    if entry.startswith(STAGE_PREFIX) and lstat_at(service_fd, entry):
                        shutil.rmtree(entry, dir_fd=service_fd, ignore_errors=True)
                        removed.append(entry)
        return removed

    async def take(self, spec: ServiceSpec, kind: Kind, now: datetime) -> Snapshot:
        try:
            return await take_snapshot(
                self.bus,
                self.settings,
                self.folders,
                self.folder,
                spec,
                kind=kind,
                now=now,
                python=self.python,
            )
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
