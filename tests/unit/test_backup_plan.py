"""The backup work a converged service is due: asked-for operations, schedules, verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pockestrator.agent.backup_plan import (
    BackupPlan,
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
    remote_targets,
)
from pockestrator.specs.backups import BackupPolicy, KeepPolicy, ReplicationPolicy
from pockestrator.specs.store import Operation

NOW = datetime(2026, 12, 2, 3, 15, tzinfo=UTC)
CREATED = datetime(2026, 11, 1, tzinfo=UTC)
DAILY = BackupPolicy(schedule="0 3 * * *", verify="30 4 * * 0", keep=KeepPolicy(last=2))


def snap(
    at: datetime, kind: str = "scheduled", verified: datetime | None = None
) -> SnapshotSummary:
    return SnapshotSummary(at.strftime("%Y%m%dT%H%M%SZ"), kind, at, verified)  # type: ignore[arg-type]


def operation(number: int, kind: str, argument: str | None = None) -> Operation:
    return Operation(number, "app", kind, argument, NOW, "ops")  # type: ignore[arg-type]


def plan(
    snapshots: list[SnapshotSummary],
    pending: list[Operation] | None = None,
    policy: BackupPolicy = DAILY,
    has_data: bool = True,
    now: datetime = NOW,
) -> BackupPlan:
    return plan_backups(policy, snapshots, pending or [], has_data=has_data, since=CREATED, now=now)


TODAY_3AM = datetime(2026, 12, 2, 3, 0, 2, tzinfo=UTC)
YESTERDAY_3AM = TODAY_3AM - timedelta(days=1)


def test_a_scheduled_snapshot_is_due_once_its_fire_time_has_passed_and_old_ones_pruned() -> None:
    due = plan([snap(YESTERDAY_3AM)])
    assert due.steps == (TakeSnapshot("scheduled"), PruneSnapshots(KeepPolicy(last=2)))
    assert due.look_again_at == datetime(2026, 12, 3, 3, tzinfo=UTC)


def test_nothing_is_due_right_after_todays_snapshot_and_it_sleeps_until_the_next() -> None:
    rested = plan([snap(TODAY_3AM)])
    assert rested.steps == ()
    assert rested.look_again_at == datetime(2026, 12, 3, 3, tzinfo=UTC)


def test_a_service_without_data_yet_is_not_snapshotted() -> None:
    assert plan([], has_data=False).steps == ()


def test_manual_snapshots_do_not_move_the_schedule() -> None:
    assert plan([snap(NOW - timedelta(minutes=5), "manual")]).steps[0] == TakeSnapshot("scheduled")


@pytest.mark.parametrize(
    ("kind", "argument", "step"),
    [
        ("snapshot", None, TakeSnapshot("manual", 7)),
        ("verify", "20261201T030000Z", VerifySnapshot("20261201T030000Z", 7)),
        ("verify", None, VerifySnapshot(None, 7)),
        ("restore", "20261201T030000Z", RestoreSnapshot("20261201T030000Z", 7)),
        ("delete", "20261201T030000Z", DeleteSnapshot("20261201T030000Z", 7)),
    ],
)
def test_an_asked_for_operation_comes_before_any_schedule(
    kind: str, argument: str | None, step: object
) -> None:
    asked = plan([snap(YESTERDAY_3AM)], [operation(7, kind, argument)])
    assert asked.steps == (step,)


def test_operations_are_done_one_per_reconcile_oldest_first_and_the_next_at_once() -> None:
    asked = plan([], [operation(3, "snapshot"), operation(4, "verify")])
    assert asked.steps == (TakeSnapshot("manual", 3),)
    assert asked.look_again_at == NOW


def test_the_newest_snapshot_is_verified_when_a_verify_fire_time_passed_since() -> None:
    sunday = datetime(2026, 12, 6, 5, tzinfo=UTC)  # after Sunday's 04:30
    made = snap(datetime(2026, 12, 6, 3, 0, 1, tzinfo=UTC))
    due = plan([made], now=sunday)
    assert due.steps == (VerifySnapshot(None),)
    verified = snap(made.created_at, verified=datetime(2026, 12, 6, 4, 31, tzinfo=UTC))
    assert plan([verified], now=sunday).steps == ()


def test_a_policy_without_schedules_does_nothing_and_never_asks_to_look_again() -> None:
    idle = plan([snap(YESTERDAY_3AM)], policy=BackupPolicy())
    assert idle == BackupPlan((), None)


def test_the_next_look_is_the_sooner_of_the_two_schedules() -> None:
    policy = BackupPolicy(schedule="0 3 * * *", verify="0 * * * *")
    assert plan([snap(TODAY_3AM, verified=TODAY_3AM)], policy=policy).look_again_at == (
        datetime(2026, 12, 2, 4, tzinfo=UTC)
    )


OFFSITE = BackupPolicy(
    schedule="0 3 * * *", keep=KeepPolicy(last=2), targets=("offsite", "local", "cold")
)


def uploaded(summary: SnapshotSummary, *targets: str) -> SnapshotSummary:
    return SnapshotSummary(
        summary.snapshot_id, summary.kind, summary.created_at, None, frozenset(targets)
    )


def test_a_scheduled_snapshot_goes_to_every_remote_target_and_each_is_pruned() -> None:
    due = plan([uploaded(snap(YESTERDAY_3AM), "offsite", "cold")], policy=OFFSITE)
    assert due.steps == (
        TakeSnapshot("scheduled"),
        PruneSnapshots(KeepPolicy(last=2)),
        UploadSnapshot(None, "offsite"),
        UploadSnapshot(None, "cold"),
        PruneRemote("offsite", KeepPolicy(last=2)),
        PruneRemote("cold", KeepPolicy(last=2)),
    )


def test_a_manual_snapshot_is_uploaded_in_the_same_turn() -> None:
    due = plan([], [operation(7, "snapshot")], policy=OFFSITE)
    assert due.steps == (
        TakeSnapshot("manual", 7),
        UploadSnapshot(None, "offsite"),
        UploadSnapshot(None, "cold"),
    )


def test_a_target_that_missed_snapshots_gets_the_newest_it_lacks_one_per_turn() -> None:
    older, newer = snap(TODAY_3AM - timedelta(hours=5)), snap(TODAY_3AM)
    due = plan([uploaded(older, "cold"), uploaded(newer, "offsite")], policy=OFFSITE)
    assert due.steps == (  # in the policy's order of targets
        UploadSnapshot(older.snapshot_id, "offsite"),
        UploadSnapshot(newer.snapshot_id, "cold"),
    )


def test_nothing_is_uploaded_when_every_target_holds_every_snapshot() -> None:
    held = [uploaded(snap(TODAY_3AM), "offsite", "cold")]
    assert plan(held, policy=OFFSITE).steps == ()


def test_local_is_no_remote_target_and_each_target_counts_once() -> None:
    policy = BackupPolicy(targets=("local", "offsite", "offsite"))
    assert remote_targets(policy) == ("offsite",)
    assert plan([snap(TODAY_3AM)], policy=policy).steps == (
        UploadSnapshot(snap(TODAY_3AM).snapshot_id, "offsite"),
    )


REPLICATED = BackupPolicy(replication=ReplicationPolicy(target="offsite"))


@pytest.mark.parametrize(
    ("policy", "running", "has_data", "replicating", "first"),
    [
        (REPLICATED, True, True, False, Replicate(ReplicationPolicy(target="offsite"))),
        (REPLICATED, True, True, True, Replicate(ReplicationPolicy(target="offsite"))),
        (REPLICATED, False, True, True, StopReplicating()),
        (REPLICATED, True, False, False, None),
        (BackupPolicy(), True, True, True, StopReplicating()),
        (BackupPolicy(), True, True, False, None),
    ],
)
def test_replication_runs_exactly_while_a_replicating_service_runs_with_data(
    policy: BackupPolicy,
    running: bool,
    has_data: bool,
    replicating: bool,
    first: BackupStep | None,
) -> None:
    steps = plan_backups(
        policy,
        [],
        [],
        has_data=has_data,
        since=CREATED,
        now=NOW,
        running=running,
        replicating=replicating,
    ).steps
    assert (steps[0] if steps else None) == first


def test_a_snapshot_asked_for_at_a_second_is_a_replica_snapshot_of_that_second() -> None:
    asked = operation(9, "snapshot", "2026-12-02T03:10:14+00:00")
    steps = plan([], [asked], policy=BackupPolicy()).steps
    assert steps == (TakeSnapshot("replica", 9, datetime(2026, 12, 2, 3, 10, 14, tzinfo=UTC)),)
