"""A new service's first data put in place before its first start: clones, imports, undeletes.

The reconciler calls ``Seeder.seed`` when the service has a pending seed (``specs.store
.seeds``) and no folder yet, before it plans anything: so the unit never starts on an empty
folder and the first superuser, if any, is made in the seeded data. By source:

- ``snapshot``: a snapshot of another service (which may be gone since), copied in;
- ``live``: the snapshot the API asked of the running source service; until that
  operation has finished the seed waits (the source's reconcile wakes this service when it
  does: ``BackupRunner`` asks ``Store.seeds_waiting_for``), then it is a ``snapshot`` seed;
- ``import``: the archive the API checked and staged, unpacked here (``archives``: bounded,
  no escapes, no links or special files) into a root-only folder and copied in; the staged
  archive and the unpacked copy are removed either way;
- ``archive``: a deleted service's archived folder, moved back.

A seed's outcome is recorded once (``finish_seed``) with an event; a failed seed leaves no
folder behind, and the service stays unstarted with the reason in its status.

Neighbours: ``controllers.snapshots`` (``seed``, ``seed_from``), ``controllers.servicedirs``
(``restore_archive``), ``archives`` (the hostile-archive checks).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from pockestrator.agent.parts import Part
from pockestrator.archives import Limits, unpack_zip
from pockestrator.clock import utc_now
from pockestrator.controllers.service_layout import DATA_DIR
from pockestrator.specs.store import Seed, ServiceRecord

log = structlog.get_logger("pockestrator.seeding")


class SeedFailed(Exception):
    """The seed cannot be put in place; the message says why (recorded, not retried)."""


@dataclass(frozen=True)
class Waiting:
    """The seed waits for something else (a live snapshot of the source being taken)."""

    reason: str


class Seeder(Part):
    async def seed(self, record: ServiceRecord, seed: Seed) -> Waiting | None:
        """Put the seed in place (None), or say what it waits for; ``SeedFailed`` (after
        recording it) when it cannot be."""
        name = record.name
        try:
            outcome = await self._place(record, seed)
        except Exception as exc:  # any failure: recorded, the service is not started empty
            reason = str(exc)[:2000] or type(exc).__name__
            message = f"seeding from {seed.source.describe()} failed: {reason}"
            log.warning("seed failed", service=name, error=reason)
            self.store.finish_seed(name, "failed", {"error": reason})
            self.store.add_event(name, "seed_failed", message, {"error": reason})
            self._cleanup(seed)
            raise SeedFailed(message) from exc
        if isinstance(outcome, Waiting):
            return outcome
        self.store.finish_seed(name, "done", outcome)
        self.store.add_event(name, "seeded", f"first data from {seed.source.describe()}", outcome)
        self._cleanup(seed)
        return None

    async def _place(self, record: ServiceRecord, seed: Seed) -> dict[str, Any] | Waiting:
        source = seed.source
        name = record.name
        snapshots = self.controllers.snapshots
        match source.kind:
            case "snapshot" | "live" | "replica":
                assert source.service is not None
                snapshot_id = source.snapshot
                if source.kind == "live":
                    operation = self.store.get_operation(source.operation or 0)
                    if operation is None:
                        raise SeedFailed(f"the snapshot of {source.service} was never asked for")
                    if operation.pending:
                        return Waiting(f"waiting for a snapshot of {source.service}")
                    if operation.outcome != "done":
                        error = operation.result.get("error", "no reason given")
                        raise SeedFailed(f"the snapshot of {source.service} failed: {error}")
                    snapshot_id = str(operation.result.get("snapshot"))
                if snapshot_id is None:
                    raise SeedFailed(f"no snapshot of {source.service} was named")
                # Here, or brought from an off-site target (a move to this node).
                snapshot = await snapshots.fetch(source.service, snapshot_id)
                running = record.spec.pocketbase_version
                if wanted := snapshot.newer_than(running):
                    raise SeedFailed(
                        f"snapshot {snapshot.snapshot_id} was taken with PocketBase {wanted}, "
                        f"newer than {running}; give the new service {wanted} or later"
                    )
                placed = {
                    "source_service": source.service,
                    "snapshot": snapshot.snapshot_id,
                    "bytes": snapshot.manifest.size,
                }
                if source.kind != "replica":
                    await snapshots.seed(name, snapshot)
                    return placed
                # A move from a lost node: data.db as the replica has it now, newer than
                # the snapshot (which gives the rest: the app folders, the storage).
                policy = (record.spec.backups or self.config.backups).replication
                if policy is None:
                    raise SeedFailed(f"{name} does not replicate: there is no replica to seed")
                at = utc_now()
                await snapshots.seed_with_replica(name, snapshot, policy, at)
                return {**placed, "replica": policy.target, "replica_at": at.isoformat()}
            case "import":
                assert source.path is not None
                staged = Path(source.path)
                if staged.parent != self.config.imports_path or staged.is_symlink():
                    raise SeedFailed(f"{staged} is not an upload staged by the API")
                unpacked = self._unpack_dir()
                limits = Limits(max_bytes=self.config.import_max_bytes)
                try:
                    members = await asyncio.to_thread(
                        unpack_zip, staged, unpacked / DATA_DIR, limits
                    )
                    await snapshots.seed_from(name, unpacked, "the imported archive")
                finally:
                    await asyncio.to_thread(shutil.rmtree, unpacked, True)
                return {
                    "files": sum(1 for m in members if not m.is_dir),
                    "bytes": sum(m.size for m in members),
                }
            case "archive":
                assert source.archive is not None
                await self.controllers.dirs.restore_archive(source.archive, name)
                return {"archive": source.archive}

    def _unpack_dir(self) -> Path:
        folder = self.config.imports_path / f".unpacked-{secrets.token_hex(6)}"
        folder.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
        return folder

    def _cleanup(self, seed: Seed) -> None:
        """The staged archive of an import goes once its seed has ended, either way."""
        if seed.source.kind == "import" and seed.source.path:
            staged = Path(seed.source.path)
            if staged.parent == self.config.imports_path:
                staged.unlink(missing_ok=True)
