"""The plan's vocabulary: every step a frozen value, with the event line it leaves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pockestrator.agent import steps
from pockestrator.agent.backup_plan import (
    DeleteSnapshot,
    PruneRemote,
    Replicate,
    RestoreSnapshot,
    StopReplicating,
    TakeSnapshot,
    UploadSnapshot,
    VerifySnapshot,
)
from pockestrator.specs.backups import KeepPolicy, ReplicationPolicy

REPLICATION = ReplicationPolicy(target="s3")


@pytest.mark.parametrize(
    ("step", "line"),
    [
        (steps.EnableUnit(), "enabled"),  # said= on the class line
        (steps.WriteUnit("[Unit]\n"), "unit file written"),
        (steps.DaemonReload(), "daemon-reload"),
        (steps.StopUnit("sleep"), "put to sleep (idle)"),  # a describe of its own
        (steps.RestartUnit("health", 3), "restarted (health)"),
        (steps.RestoreData(Path("/b/1")), "pb_data restored from /b/1"),
        (steps.ApplySettings(("smtp",), repair=True), "PocketBase settings restored: smtp"),
        # The backup steps (agent.backup_plan): said= is formatted with the step's fields.
        (TakeSnapshot("manual", 3), "manual snapshot taken"),
        (PruneRemote("s3", KeepPolicy()), "old snapshots pruned on s3"),
        (Replicate(REPLICATION), "data.db replicated to s3"),
        (RestoreSnapshot("20260101T000000Z", 4), "snapshot 20260101T000000Z restored"),
        (DeleteSnapshot("20260101T000000Z", 5), "snapshot 20260101T000000Z deleted"),
        (VerifySnapshot(None), "snapshot (newest) verified"),
        (UploadSnapshot("s1", "s3"), "snapshot s1 uploaded to s3"),
        (StopReplicating(), "replication stopped"),
    ],
)
def test_each_step_leaves_its_line_in_the_event_log(step: steps.Step, line: str) -> None:
    assert step.describe() == line


def test_a_step_is_a_frozen_value_that_compares_by_its_fields_and_its_kind() -> None:
    unit = steps.WriteUnit("a")
    assert unit == steps.WriteUnit("a")
    assert unit != steps.WriteUnit("b")
    assert steps.EnableUnit() != steps.DisableUnit()
    assert hash(unit) == hash(steps.WriteUnit("a"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        unit.text = "b"  # type: ignore[misc]


def test_a_step_that_says_nothing_is_refused_where_it_is_declared() -> None:
    with pytest.raises(TypeError, match="Mute needs said= or a describe"):

        class Mute(steps.Step):
            pass
