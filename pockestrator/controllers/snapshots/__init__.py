"""Snapshots of services: online, whole, hashed, kept by a retention, verified by a boot.

- ``manifest``: what a snapshot holds (every file, its size and SHA-256), pure;
- ``retention``: which snapshots to keep (``keep: {last, daily, weekly, monthly}``), pure;
- ``schedule``: when one is due (cron, via croniter), pure;
- ``folder``: the local snapshot folder, made atomically (``.partial`` until whole);
- ``take``: the online copy of a running instance's databases, in its own box;
- ``verify``: a restore into a throwaway box, ``integrity_check`` and a boot;
- ``restore``: a snapshot put back into a stopped service, or seeding a new one;
- ``snapshots``: ``Snapshots``, the object the agent holds.
"""

from pockestrator.controllers.snapshots.folder import (
    Snapshot,
    SnapshotError,
    SnapshotFolder,
    Verification,
)
from pockestrator.controllers.snapshots.manifest import Kind, Manifest
from pockestrator.controllers.snapshots.snapshots import Snapshots

__all__ = [
    "Kind",
    "Manifest",
    "Snapshot",
    "SnapshotError",
    "SnapshotFolder",
    "Snapshots",
    "Verification",
]
