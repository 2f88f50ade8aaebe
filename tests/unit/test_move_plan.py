"""Whose turn each step of a move is, and what it is (agent.move_plan): a table over the
recorded state, the node asking, the nodes lost and the target's view after the switch."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from pockestrator.agent.move_plan import (
    Act,
    Fail,
    MoveStep,
    RollBack,
    Verify,
    next_move_step,
    serving_verdict,
    step_name,
)
from pockestrator.specs.store import Move, ServiceStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)
MOVE = Move(1, "app", "a", "b", False, "requested", None, None, T0, "t", T0, None, None)
NONE: frozenset[str] = frozenset()


def at(state: str, **changes: object) -> Move:
    return replace(MOVE, state=state, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("move", "here", "lost", "serving", "step"),
    [
        # The source's turn, then the target's, then the source's, then the target's.
        (at("requested"), "a", NONE, None, Act.STAGE),
        (at("requested"), "b", NONE, None, None),
        (at("staged", snapshot="s1"), "b", NONE, None, Verify("s1")),
        (at("staged", snapshot="s1"), "a", NONE, None, None),
        (at("verified", snapshot="s1"), "a", NONE, None, Act.CUTOVER),
        (at("verified", snapshot="s1"), "b", NONE, None, None),
        # After the switch the target waits for its boot, then confirms or rolls back.
        (at("switched", final_snapshot="s2"), "b", NONE, None, None),
        (at("switched", final_snapshot="s2"), "b", NONE, True, Act.CONFIRM),
        (
            at("switched", final_snapshot="s2"),
            "b",
            NONE,
            False,
            RollBack("the service did not come up on b"),
        ),
        (at("switched", final_snapshot="s2"), "a", NONE, True, None),
        # A node that is neither source nor target has no part in it.
        (at("requested"), "c", NONE, None, None),
        (at("verified"), "c", frozenset({"a"}), None, None),
        # The other node lost before the switch: the one left fails the move.
        (at("requested"), "b", frozenset({"a"}), None, Fail("node a was lost before the switch")),
        (at("verified"), "a", frozenset({"b"}), None, Fail("node b was lost before the switch")),
        # ... and after it, a failure cannot go back to a lost source.
        (
            at("switched", final_snapshot="s2"),
            "b",
            frozenset({"a"}),
            False,
            Fail("the service did not come up on b", "failed_on_target"),
        ),
        # From a backup: the target restores; the lost source is what the move is for.
        (at("requested", from_backup=True), "b", frozenset({"a"}), None, Act.RESTORE),
        (at("requested", from_backup=True), "a", NONE, None, None),
        (
            at("switched", from_backup=True, final_snapshot="s0"),
            "b",
            frozenset({"a"}),
            False,
            Fail("the service did not come up on b", "failed_on_target"),
        ),
        # Finished moves, and none at all, ask nothing of anyone.
        (at("done", finished_at=T0), "b", NONE, True, None),
        (at("failed", finished_at=T0), "a", NONE, None, None),
        (None, "a", NONE, None, None),
        # A staged record without its snapshot is a broken record, not a step to guess.
        (at("staged"), "b", NONE, None, Fail("the move was staged without a snapshot")),
    ],
)
def test_each_state_is_one_nodes_step(
    move: Move | None, here: str, lost: frozenset[str], serving: bool | None, step: MoveStep | None
) -> None:
    assert next_move_step(move, here, lost, serving) == step


DEPLOYING = ServiceStatus(name="app", state="deploying")


@pytest.mark.parametrize(
    ("status", "seed_failed", "wants_running", "verdict"),
    [
        (None, False, True, None),  # the target has not reported yet
        (DEPLOYING, False, True, None),
        (replace(DEPLOYING, state="active"), False, True, True),
        (replace(DEPLOYING, state="inactive"), False, False, True),  # a stopped service
        (replace(DEPLOYING, state="inactive"), False, True, None),
        (replace(DEPLOYING, state="error"), False, True, False),  # it never served
        # It answered its probe, then a setting failed (a locked database under writes):
        # it has served and may hold new writes, so it stays.
        (replace(DEPLOYING, state="error", health_ok=True), False, True, True),
        (None, True, True, False),  # its seed failed
        (replace(DEPLOYING, state="active"), True, True, False),
    ],
)
def test_the_target_has_served_once_it_answered_and_failed_only_if_it_never_did(
    status: ServiceStatus | None, seed_failed: bool, wants_running: bool, verdict: bool | None
) -> None:
    assert serving_verdict(status, seed_failed=seed_failed, wants_running=wants_running) is verdict


@pytest.mark.parametrize(
    "status",
    [
        # It answered, then its probe failed and the status reads an error (health_ok
        # False) before the mover looked: the move's record says it served.
        replace(DEPLOYING, state="error", health_ok=False),
        replace(DEPLOYING, state="deploying", health_ok=None),
        None,
    ],
)
def test_a_target_that_served_once_is_never_rolled_back_whatever_its_status_says_now(
    status: ServiceStatus | None,
) -> None:
    assert serving_verdict(status, seed_failed=False, wants_running=True, served=True) is True
    assert serving_verdict(status, seed_failed=False, wants_running=True) is not True


@pytest.mark.parametrize(
    ("step", "name"),
    [
        (Act.STAGE, "Stage"),
        (Act.CUTOVER, "Cutover"),
        (Act.RESTORE, "Restore"),
        (Act.CONFIRM, "Confirm"),
        (Verify("s1"), "Verify"),
        (RollBack("down"), "RollBack"),
        (Fail("lost"), "Fail"),
    ],
)
def test_a_step_is_named_in_events_by_what_it_does(step: MoveStep, name: str) -> None:
    assert step_name(step) == name
