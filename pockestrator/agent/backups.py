"""A converged service's backup work, done: the steps ``agent.backup_plan`` decides.

The reconciler calls ``BackupRunner.run`` at the end of a reconcile that converged the
service (never during an upgrade or a removal), in the same per-service turn, so nothing
else changes the service's folder or unit meanwhile. Each step's outcome is an event, and
an operation someone asked for is finished with its result (``done``) or its reason
(``failed``); a failed scheduled snapshot is an event and waits for the next fire time. The
answer is when to look again, which the reconciler turns into the service's requeue.

A restore is the one step that touches the running instance: a safety snapshot first, then
stop, the snapshot swapped in, start, and a health gate; when the instance does not come up
healthy, the safety snapshot goes back the same way and the operation fails saying why.

Neighbours: ``agent.backup_plan`` (what), ``controllers.snapshots`` (how), the reconciler.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import structlog

from pockestrator.agent.backup_plan import (
    BackupStep,
    DeleteSnapshot,
    PruneRemote,
    PruneSnapshots,
    Replicate,
    RestoreSnapshot,
    SnapshotSummary,
    StopReplicating,
    TakeSnapshot,
    UploadSnapshot,
    VerifySnapshot,
    plan_backups,
)
from pockestrator.agent.health import wait_healthy
from pockestrator.agent.parts import Part, Parts
from pockestrator.agent.replica_errors import CHECK_SECONDS, ReplicaErrors, error_report
from pockestrator.controllers.snapshots import Snapshot, SnapshotError
from pockestrator.controllers.snapshots.encryption import read_root_only
from pockestrator.controllers.snapshots.litestream import unit_name as replica_unit
from pockestrator.controllers.systemd.unit_state import SystemdError
from pockestrator.specs.grammar import LOCAL_TARGET
from pockestrator.specs.model import unit_name
from pockestrator.specs.store import BACKUP_KINDS, ServiceRecord

log = structlog.get_logger("pockestrator.backups")


class RestoreFailed(Exception):
    pass


class BackupRunner(Part):
    def __init__(self, parts: Parts) -> None:
        super().__init__(parts)
        self.snapshots = parts.controllers.snapshots
        self.wake: Callable[[str], None] | None = None
        # Told before a restore starts a service's unit: a sleeping one's port is given back.
        self.starting: Callable[[str], object] = lambda _name: None
        # Litestream's errors from its journal (the agent sets it; None: not watched).
        self.replica_errors: ReplicaErrors | None = None

    async def run(self, record: ServiceRecord, *, has_data: bool) -> float | None:
        """Do what is due for ``record``; seconds until something else will be."""
        name = record.name
        left = await self.snapshots.clean(name)
        if left:
            log.info("interrupted snapshot removed", service=name, removed=left)
        found = await self.snapshots.observe(name)
        now = self.clock.now()
        policy = record.spec.backups or self.config.backups
        running = record.desired_state == "running"
        plan = plan_backups(
            policy,
            [summary(snapshot) for snapshot in found],
            [op for op in self.store.pending_operations(name) if op.kind in BACKUP_KINDS],
            has_data=has_data,
            since=record.created_at,
            now=now,
            running=running,
            # Only a leftover matters (the plan stops it), and only one with a
            # configuration can run: no D-Bus call for each service that does not replicate.
            replicating=(policy.replication is None or not running or not has_data)
            and await self.snapshots.replication.leftover(name),
        )
        for step in plan.steps:
            await self._do(record, step)
        later = (
            None
            if plan.look_again_at is None
            else max(0.0, (plan.look_again_at - self.clock.now()).total_seconds())
        )
        replicating = [step for step in plan.steps if isinstance(step, Replicate)]
        if not replicating or self.replica_errors is None:
            if self.replica_errors is not None:
                self.replica_errors.forget(name)
            return later
        await self._report_replica_errors(name, replicating[0].policy.target)
        return CHECK_SECONDS if later is None else min(later, CHECK_SECONDS)

    async def _report_replica_errors(self, name: str, target: str) -> None:
        """Litestream's errors since the last look, as one ``replication_failed`` event."""
        assert self.replica_errors is not None
        errors = await self.replica_errors.new_errors(name, replica_unit(name), self.clock.now())
        if not errors:
            return
        secret = None
        settings = self.config.backup_targets.get(target)
        if settings is not None:
            try:
                key = read_root_only(settings.secret_access_key_file, "secret access key")
                secret = key.decode("utf-8", "replace").strip()
            except Exception:  # unreadable now: Litestream's text goes out cut short only
                secret = None
        message, details = error_report(errors, secret)
        log.warning("replication failing", service=name, errors=len(errors))
        self.store.add_event(name, "replication_failed", message, {**details, "target": target})

    async def _do(self, record: ServiceRecord, step: BackupStep) -> None:
        name = record.name
        match step:
            case Replicate(policy=policy):
                try:
                    started = await self.snapshots.replicate(record.spec, policy)
                except Exception as exc:  # recorded; the next reconcile tries again
                    self._failed(name, None, "replication_failed", "replication failed", exc)
                    return
                if started:
                    self.store.add_event(
                        name,
                        "replication_started",
                        f"data.db replicated to {policy.target}",
                        {"target": policy.target, "sync_seconds": policy.sync_seconds},
                    )
            case StopReplicating():
                await self.snapshots.stop_replicating(name)
                self.store.add_event(name, "replication_stopped", "replication stopped", {})
            case TakeSnapshot(kind=kind, operation=operation, at=at):
                try:
                    replication = (record.spec.backups or self.config.backups).replication
                    if at is not None and replication is not None:
                        snapshot = await self.snapshots.take_at(
                            record.spec, replication, at, self.clock.now()
                        )
                    elif at is not None:
                        raise SnapshotError(f"{name} does not replicate: no point in time")
                    else:
                        snapshot = await self.snapshots.take(record.spec, kind, self.clock.now())
                except Exception as exc:  # any failure: recorded, the service goes on
                    self.metrics.backup_attempted(name, self.clock.now().timestamp(), ok=False)
                    self._failed(name, operation, "snapshot_failed", f"{kind} snapshot failed", exc)
                    return
                self.metrics.backup_attempted(name, self.clock.now().timestamp(), ok=True)
                details = snapshot_details(snapshot)
                self.store.add_event(
                    name, "snapshot_taken", f"{kind} snapshot {snapshot.snapshot_id}", details
                )
                self._finish(operation, "done", details)
            case PruneSnapshots(keep=keep):
                pruned = await self.snapshots.prune(name, keep)
                if pruned:
                    self.store.add_event(
                        name,
                        "snapshots_pruned",
                        f"{len(pruned)} snapshot(s) past the retention deleted",
                        {"snapshots": pruned},
                    )
            case VerifySnapshot(snapshot_id=snapshot_id, operation=operation):
                await self._verify(record, snapshot_id, operation)
            case RestoreSnapshot(snapshot_id=snapshot_id, operation=operation):
                await self._restore(record, snapshot_id, operation)
            case DeleteSnapshot(snapshot_id=snapshot_id, operation=operation):
                try:
                    where = await self._delete_everywhere(name, snapshot_id)
                except Exception as exc:  # recorded; nothing else changes
                    self._failed(name, operation, "snapshot_delete_failed", "delete failed", exc)
                    return
                deleted = {"snapshot": snapshot_id, "locations": where}
                self.store.add_event(
                    name, "snapshot_deleted", f"snapshot {snapshot_id} deleted", deleted
                )
                self._finish(operation, "done", deleted)
            case UploadSnapshot(snapshot_id=snapshot_id, target=target):
                await self._upload(name, snapshot_id, target)
            case PruneRemote(target=target, keep=keep):
                try:
                    pruned = await self.snapshots.prune_remote(name, target, keep)
                except Exception as exc:  # recorded; the next scheduled snapshot tries again
                    self._failed(name, None, "snapshots_prune_failed", f"pruning {target}", exc)
                    return
                if pruned:
                    self.store.add_event(
                        name,
                        "snapshots_pruned",
                        f"{len(pruned)} snapshot(s) past the retention deleted from {target}",
                        {"snapshots": pruned, "target": target},
                    )

    async def _upload(self, name: str, snapshot_id: str | None, target: str) -> None:
        try:
            uploaded = await self.snapshots.upload(name, snapshot_id, target)
        except Exception as exc:  # recorded; the next reconcile tries again
            what = f"upload of snapshot {snapshot_id or '(newest)'} to {target} failed"
            self._failed(name, None, "snapshot_upload_failed", what, exc)
            return
        self.store.add_event(
            name,
            "snapshot_uploaded",
            f"snapshot {uploaded.snapshot_id} uploaded to {target} and verified",
            {
                "snapshot": uploaded.snapshot_id,
                "target": target,
                "files": uploaded.files,
                "bytes_sent": uploaded.bytes_sent,
                "resumed_files": uploaded.resumed_files,
            },
        )

    async def _delete_everywhere(self, name: str, snapshot_id: str) -> list[str]:
        """The local copy and every target's; where it was. None anywhere is an error."""
        where = await self.snapshots.delete_remote(name, snapshot_id)
        try:
            await self.snapshots.delete(name, snapshot_id)
        except SnapshotError:
            if not where:
                raise
        else:
            where.insert(0, LOCAL_TARGET)
        return where

    async def _verify(
        self, record: ServiceRecord, snapshot_id: str | None, operation: int | None
    ) -> None:
        name = record.name
        try:
            if snapshot_id is None:
                snapshot = await asyncio.to_thread(self.snapshots.get, name, None)
            else:  # brought back from a target when it is only there
                snapshot = await self.snapshots.fetch(name, snapshot_id)
            if snapshot.manifest.pocketbase_version:
                await self.controllers.releases.ensure(snapshot.manifest.pocketbase_version)
            checked, verification = await self.snapshots.verify(
                name, snapshot.snapshot_id, self.clock.now(), self._healthy
            )
        except Exception as exc:  # recorded, the service goes on
            self._failed(name, operation, "snapshot_verify_failed", "verification failed", exc)
            return
        details = {
            "snapshot": checked.snapshot_id,
            "ok": verification.ok,
            "detail": verification.detail,
        }
        if verification.ok:
            self.store.add_event(
                name, "snapshot_verified", f"snapshot {checked.snapshot_id} verified", details
            )
            self._finish(operation, "done", details)
        else:
            self.store.add_event(
                name,
                "snapshot_verify_failed",
                f"snapshot {checked.snapshot_id} failed verification: {verification.detail}",
                details,
            )
            self._finish(operation, "failed", {**details, "error": verification.detail})

    async def _healthy(self, port: int, deadline: float) -> bool:
        loop = asyncio.get_running_loop()
        return await wait_healthy(self.session, port, loop.time() + deadline)

    async def _restore(self, record: ServiceRecord, snapshot_id: str, operation: int) -> None:
        name = record.name
        try:
            snapshot = await self.snapshots.fetch(name, snapshot_id)  # from a target if need be
            running = record.spec.pocketbase_version
            if wanted := snapshot.newer_than(running):
                raise RestoreFailed(
                    f"snapshot {snapshot_id} was taken with PocketBase {wanted}, newer than "
                    f"{running}: its data may carry migrations {running} does not know; "
                    "change the service's version first"
                )
            details = await self._swap_in(record, snapshot)
        except Exception as exc:  # recorded in the operation and the events
            self._failed(name, operation, "restore_failed", f"restore of {snapshot_id} failed", exc)
            return
        self.store.add_event(name, "snapshot_restored", f"snapshot {snapshot_id} restored", details)
        self._finish(operation, "done", details)

    async def _swap_in(self, record: ServiceRecord, snapshot: Snapshot) -> dict[str, Any]:
        name = record.name
        safety = await self.snapshots.take(record.spec, "safety", self.clock.now())
        unit = unit_name(name)
        self.starting(name)
        await self.controllers.bus.stop_unit(unit)
        replaced = await self.snapshots.restore(name, snapshot)
        details: dict[str, Any] = {
            "snapshot": snapshot.snapshot_id,
            "safety_snapshot": safety.snapshot_id,
            "replaced_data": str(replaced),
        }
        if record.desired_state != "running":
            return details
        if await self._started_healthy(unit, record.spec.port):
            return details
        await self.controllers.bus.stop_unit(unit)
        await self.snapshots.restore(name, safety)
        back = await self._started_healthy(unit, record.spec.port)
        raise RestoreFailed(
            f"PocketBase did not come up healthy on snapshot {snapshot.snapshot_id}; the data "
            f"from before (safety snapshot {safety.snapshot_id}) is back"
            + ("" if back else ", but it did not come up healthy either")
        )

    async def _started_healthy(self, unit: str, port: int) -> bool:
        try:
            await self.controllers.bus.reset_failed_unit(unit)
            await self.controllers.bus.start_unit(unit)
        except SystemdError:
            return False
        return await self._healthy(port, self.config.upgrade_health_deadline)

    def _failed(
        self, name: str, operation: int | None, kind: str, what: str, exc: Exception
    ) -> None:
        reason = str(exc)[:2000] or type(exc).__name__
        log.warning(what, service=name, error=reason)
        self.store.add_event(name, kind, f"{what}: {reason}", {"error": reason})
        self._finish(operation, "failed", {"error": reason})

    def _finish(self, operation: int | None, outcome: str, result: dict[str, Any]) -> None:
        if operation is not None:
            self.store.finish_operation(operation, outcome, result)  # type: ignore[arg-type]
            if self.wake is not None:
                for waiting in self.store.seeds_waiting_for(operation):
                    self.wake(waiting)  # a live clone of this service


def summary(snapshot: Snapshot) -> SnapshotSummary:
    verification = snapshot.verification
    return SnapshotSummary(
        snapshot.snapshot_id,
        snapshot.manifest.kind,
        snapshot.manifest.created_at,
        verification.at if verification is not None and verification.ok else None,
        snapshot.uploaded,
    )


def snapshot_details(snapshot: Snapshot) -> dict[str, Any]:
    return {
        "snapshot": snapshot.snapshot_id,
        "kind": snapshot.manifest.kind,
        "bytes": snapshot.manifest.size,
        "files": len(snapshot.manifest.files),
        "pocketbase_version": snapshot.manifest.pocketbase_version,
    }
