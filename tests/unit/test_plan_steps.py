"""The plan's vocabulary: every step a frozen value, with the event line it leaves."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pockestrator.agent import steps


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
