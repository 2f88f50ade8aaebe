"""A service's backup work, decided: snapshots, pruning, verification, restores (pure).

After a reconcile has converged a service, the reconciler asks ``plan_backups`` what backup
work is due, with what it observed (the service's snapshots, its pending operations) and
the time. Operations someone asked for come first, oldest first, one per reconcile (the
next reconcile takes the next); then a scheduled snapshot when a fire time of the policy's
``schedule`` has passed since the last scheduled one, with the pruning the retention asks
for; then a verification of the newest snapshot when the ``verify`` schedule says so. The
policy's off-site ``targets`` get the newest snapshot each of them lacks, one a reconcile
(a snapshot just taken, manual or scheduled, goes in the same turn; a target that was down
catches up one snapshot per resync), and after a scheduled snapshot each target is pruned
by the same retention. A policy with ``replication`` keeps Litestream running for a
running service that has data (``Replicate``, every reconcile: it is idempotent), and a
service that no longer should replicate is stopped (``StopReplicating``). A snapshot asked
for with a point in time (the operation's argument) is a ``replica`` snapshot. The
plan also says when to look again: the next fire time of either schedule, so the agent
sleeps until then instead of polling.

Neighbours: ``agent.backups`` does the steps; ``controllers.snapshots`` holds the rules
(retention, schedules) and the snapshots themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from pockestrator.agent.steps import Step
from pockestrator.controllers.snapshots.manifest import Kind
from pockestrator.controllers.snapshots.schedule import is_due, next_due
from pockestrator.specs.backups import BackupPolicy, KeepPolicy, ReplicationPolicy
from pockestrator.specs.grammar import LOCAL_TARGET
from pockestrator.specs.store import Operation


@dataclass(frozen=True)
class SnapshotSummary:
    """What the plan needs to know of one snapshot."""

    snapshot_id: str
    kind: Kind
    created_at: datetime
    verified_at: datetime | None = None
    uploaded: frozenset[str] = frozenset()


class TakeSnapshot(Step, said="{kind} snapshot taken"):
    kind: Kind
    operation: int | None = None
    at: datetime | None = None  # kind "replica": data.db as the replica had it then


class PruneSnapshots(Step, said="old snapshots pruned"):
    keep: KeepPolicy


class VerifySnapshot(Step):
    snapshot_id: str | None  # None: the newest
    operation: int | None = None

    def describe(self) -> str:
        return f"snapshot {self.snapshot_id or '(newest)'} verified"


class UploadSnapshot(Step):
    snapshot_id: str | None  # None: the newest (the one just taken)
    target: str

    def describe(self) -> str:
        return f"snapshot {self.snapshot_id or '(newest)'} uploaded to {self.target}"


class PruneRemote(Step, said="old snapshots pruned on {target}"):
    target: str
    keep: KeepPolicy


class Replicate(Step, said="data.db replicated to {policy.target}"):
    policy: ReplicationPolicy


class StopReplicating(Step, said="replication stopped"):
    """Stop the service's Litestream unit: its policy no longer replicates."""


class RestoreSnapshot(Step, said="snapshot {snapshot_id} restored"):
    snapshot_id: str
    operation: int


class DeleteSnapshot(Step, said="snapshot {snapshot_id} deleted"):
    snapshot_id: str
    operation: int


BackupStep = (
    TakeSnapshot
    | PruneSnapshots
    | VerifySnapshot
    | RestoreSnapshot
    | DeleteSnapshot
    | UploadSnapshot
    | PruneRemote
    | Replicate
    | StopReplicating
)


@dataclass(frozen=True)
class BackupPlan:
    steps: tuple[BackupStep, ...] = ()
    look_again_at: datetime | None = None


def plan_backups(
    policy: BackupPolicy,
    snapshots: Sequence[SnapshotSummary],
    pending: Sequence[Operation],
    *,
    has_data: bool,
    since: datetime,
    now: datetime,
    running: bool = True,
    replicating: bool = False,
) -> BackupPlan:
    """The backup steps due now for one service, and when to look again (see the module)."""
    replication: list[BackupStep] = []
    if policy.replication is not None and running and has_data:
        replication = [Replicate(policy.replication)]
    elif replicating:
        replication = [StopReplicating()]
    if pending:
        look_again_at = now if len(pending) > 1 else _next(policy, now)
        return BackupPlan((*replication, *_asked(policy, pending[0])), look_again_at)
    due = _due(policy, snapshots, has_data=has_data, since=since, now=now)
    return BackupPlan((*replication, *due), _next(policy, now))


def _asked(policy: BackupPolicy, first: Operation) -> list[BackupStep]:
    """The steps of the oldest operation someone asked for (one a reconcile)."""
    match first.kind:
        case "snapshot" if first.argument:
            at = datetime.fromisoformat(first.argument)
            return [TakeSnapshot("replica", first.id, at), *_uploads_of_newest(policy)]
        case "snapshot":
            return [TakeSnapshot("manual", first.id), *_uploads_of_newest(policy)]
        case "verify":
            return [VerifySnapshot(first.argument, first.id)]
        case "restore":
            return [RestoreSnapshot(first.argument or "", first.id)]
        case "delete":
            return [DeleteSnapshot(first.argument or "", first.id)]
    raise AssertionError(f"no backup operation {first.kind!r}")


def _due(
    policy: BackupPolicy,
    snapshots: Sequence[SnapshotSummary],
    *,
    has_data: bool,
    since: datetime,
    now: datetime,
) -> list[BackupStep]:
    """With nothing asked for: a scheduled snapshot and its pruning, or the uploads the
    targets lack and a verification, when each is due."""
    steps: list[BackupStep] = []
    scheduled = [s for s in snapshots if s.kind == "scheduled"]
    last_scheduled = max((s.created_at for s in scheduled), default=None)
    if has_data and policy.schedule and is_due(policy.schedule, last_scheduled, since, now):
        steps += [TakeSnapshot("scheduled"), PruneSnapshots(policy.keep)]
        steps += _uploads_of_newest(policy)
        steps += [PruneRemote(target, policy.keep) for target in remote_targets(policy)]
        return steps
    for target in remote_targets(policy):
        lacking = [s for s in snapshots if target not in s.uploaded]
        if lacking:
            latest = max(lacking, key=lambda s: (s.created_at, s.snapshot_id))
            steps.append(UploadSnapshot(latest.snapshot_id, target))
    if snapshots and policy.verify:
        last_verified = max((s.verified_at for s in snapshots if s.verified_at), default=None)
        newest = max(s.created_at for s in snapshots)
        if is_due(policy.verify, last_verified, newest, now):
            steps.append(VerifySnapshot(None))
    return steps


def remote_targets(policy: BackupPolicy) -> tuple[str, ...]:
    """The policy's off-site targets, each once, in its order ("local" is always there)."""
    return tuple(dict.fromkeys(t for t in policy.targets if t != LOCAL_TARGET))


def _uploads_of_newest(policy: BackupPolicy) -> list[BackupStep]:
    return [UploadSnapshot(None, target) for target in remote_targets(policy)]


def _next(policy: BackupPolicy, now: datetime) -> datetime | None:
    times = [
        next_due(expression, now) for expression in (policy.schedule, policy.verify) if expression
    ]
    return min(times, default=None)
