"""The alert rules as a pure function: each rule fires at its threshold, not before,
resolves when its condition clears, and says when the next look is worth making."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pockestrator.agent.alert_rules import (
    BACKUP_STALE,
    CERTIFICATE_EXPIRING,
    DAY,
    DISK_LOW,
    HOST,
    RESTART_LOOP,
    SERVICE_DOWN,
    AlertState,
    Evaluation,
    ServiceInput,
    evaluate,
)
from pockestrator.config import AgentConfig, AlertRules

RULES = AlertRules()
T0 = 1_800_000_000.0


def svc(**changes: object) -> ServiceInput:
    values: dict[str, object] = {"name": "shop", "desired_running": True, "running": True}
    values.update(changes)
    return ServiceInput(**values)  # type: ignore[arg-type]


def run(
    steps: Sequence[tuple[float, Sequence[ServiceInput], float | None]],
    rules: AlertRules = RULES,
) -> list[Evaluation]:
    """Evaluate each (time offset, services, disk free fraction) in turn, state carried."""
    state = AlertState()
    out = []
    for offset, services, free in steps:
        evaluation = evaluate(rules, state, services, free, T0 + offset)
        state = evaluation.state
        out.append(evaluation)
    return out


def keys(evaluation: Evaluation) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    return [a.key for a in evaluation.fired], [a.key for a in evaluation.resolved]


def test_the_defaults_are_the_issues() -> None:
    rules = AgentConfig().alerts
    assert rules.service_down_seconds == 60
    assert rules.backup_age_factor == 2 and rules.certificate_days == 14
    assert rules.disk_free_percent == 10
    assert rules.restart_loop_count == 3 and rules.restart_loop_minutes == 10


@pytest.mark.parametrize(
    ("down", "fires_at"),
    [
        (svc(running=False), 60),
        (svc(running=True, healthy=False), 60),
    ],
)
def test_a_service_down_fires_after_60_s_without_a_break(
    down: ServiceInput, fires_at: float
) -> None:
    first, early, due = run([(0, [down], None), (59, [down], None), (fires_at, [down], None)])
    assert keys(first) == ([], []) and first.next_due == T0 + 60
    assert keys(early) == ([], [])
    assert keys(due) == ([(SERVICE_DOWN, "shop")], [])
    assert "down" in due.fired[0].message


def test_a_service_up_again_resolves_and_a_new_outage_counts_from_its_own_start() -> None:
    down, up = svc(running=False), svc(running=True, healthy=True)
    evaluations = run(
        [
            (0, [down], None),
            (60, [down], None),
            (61, [up], None),
            (100, [down], None),
            (159, [down], None),
        ]
    )
    assert keys(evaluations[1]) == ([(SERVICE_DOWN, "shop")], [])
    assert keys(evaluations[2]) == ([], [(SERVICE_DOWN, "shop")])
    assert keys(evaluations[4]) == ([], [])  # 59 s into the second outage
    assert evaluations[4].next_due == T0 + 160


@pytest.mark.parametrize(
    "quiet",
    [
        svc(running=False, desired_running=False),  # stopped on purpose
        svc(running=True, healthy=None),  # not probed yet
    ],
)
def test_a_stopped_or_unprobed_service_is_not_down(quiet: ServiceInput) -> None:
    assert all(keys(e) == ([], []) for e in run([(0, [quiet], None), (600, [quiet], None)]))


def test_an_unknown_unit_keeps_the_down_clock_and_the_firing_alert() -> None:
    down, unknown = svc(running=False), svc(running=None)
    evaluations = run(
        [(0, [down], None), (30, [unknown], None), (60, [down], None), (90, [unknown], None)]
    )
    assert keys(evaluations[2]) == ([(SERVICE_DOWN, "shop")], [])
    assert keys(evaluations[3]) == ([], [])  # still firing, not resolved by not knowing


def test_three_restarts_in_ten_minutes_fire_a_restart_loop_that_resolves_as_they_age() -> None:
    evaluations = run(
        [
            (0, [svc(restarts=4)], None),
            (60, [svc(restarts=5)], None),
            (120, [svc(restarts=6)], None),
            (180, [svc(restarts=7)], None),
            (600 + 59, [svc(restarts=7)], None),
            (600 + 61, [svc(restarts=7)], None),
        ]
    )
    assert keys(evaluations[2]) == ([], [])  # 2 in the window
    assert keys(evaluations[3]) == ([(RESTART_LOOP, "shop")], [])
    assert evaluations[3].fired[0].details["restarts"] == 3
    # Until the first of them is 10 min old the window holds three; then two: resolved,
    # and the moment it would be was the one asked for.
    assert keys(evaluations[4]) == ([], []) and evaluations[4].next_due == T0 + 660
    assert keys(evaluations[5]) == ([], [(RESTART_LOOP, "shop")])


def test_a_restart_counter_that_starts_again_is_not_a_loop() -> None:
    evaluations = run(
        [
            (0, [svc(restarts=9)], None),
            (60, [svc(restarts=0)], None),
            (120, [svc(restarts=1)], None),
        ]
    )
    assert all(keys(e) == ([], []) for e in evaluations)


def test_a_backup_older_than_twice_its_schedule_is_stale() -> None:
    daily = 1 * DAY
    fresh = svc(backup_interval=daily, last_backup_at=T0 - 1.5 * daily)
    stale = svc(backup_interval=daily, last_backup_at=T0 - 2.5 * daily)
    assert keys(run([(0, [fresh], None)])[0]) == ([], [])
    assert run([(0, [fresh], None)])[0].next_due == T0 + 0.5 * daily + 1
    assert keys(run([(0, [stale], None)])[0]) == ([(BACKUP_STALE, "shop")], [])
    after = svc(backup_interval=daily, last_backup_at=T0 + 10)
    evaluations = run([(0, [stale], None), (20, [after], None)])
    assert keys(evaluations[1]) == ([], [(BACKUP_STALE, "shop")])


def test_a_service_never_backed_up_counts_from_when_it_was_first_seen() -> None:
    never = svc(backup_interval=3600.0)
    evaluations = run([(0, [never], None), (7200, [never], None), (7201, [never], None)])
    assert keys(evaluations[1]) == ([], [])
    assert keys(evaluations[2]) == ([(BACKUP_STALE, "shop")], [])


def test_without_a_schedule_no_backup_is_stale() -> None:
    assert keys(run([(0, [svc(last_backup_at=T0 - 100 * DAY)], None)])[0]) == ([], [])


@pytest.mark.parametrize(
    ("days_left", "fires"), [(30, False), (14.01, False), (13.9, True), (-1, True)]
)
def test_a_certificate_ending_within_14_days_fires(days_left: float, fires: bool) -> None:
    evaluation = run([(0, [svc(certificate_not_after=T0 + days_left * DAY)], None)])[0]
    assert keys(evaluation)[0] == ([(CERTIFICATE_EXPIRING, "shop")] if fires else [])


@pytest.mark.parametrize(("free", "fires"), [(0.5, False), (0.1, False), (0.099, True)])
def test_disk_under_10_percent_free_is_a_host_alert(free: float, fires: bool) -> None:
    evaluation = run([(0, [], free)])[0]
    assert keys(evaluation)[0] == ([(DISK_LOW, HOST)] if fires else [])


def test_a_disk_that_cannot_be_read_keeps_its_alert() -> None:
    evaluations = run([(0, [], 0.05), (60, [], None), (120, [], 0.5)])
    assert keys(evaluations[1]) == ([], [])
    assert keys(evaluations[2]) == ([], [(DISK_LOW, HOST)])


def test_a_rule_set_to_null_never_fires() -> None:
    off = AlertRules(service_down_seconds=None, disk_free_percent=None, restart_loop_count=None)
    down = svc(running=False, restarts=0)
    looping = svc(running=False, restarts=50)
    evaluations = run([(0, [down], 0.01), (3600, [looping], 0.01)], rules=off)
    assert all(keys(e) == ([], []) for e in evaluations)


def test_a_removed_service_resolves_its_alerts() -> None:
    down = svc(running=False)
    evaluations = run([(0, [down], None), (60, [down], None), (61, [], None)])
    assert keys(evaluations[2]) == ([], [(SERVICE_DOWN, "shop")])
    assert evaluations[2].state.down_since == {}


def test_a_firing_alert_fires_once_while_it_holds() -> None:
    down = svc(running=False)
    evaluations = run([(0, [down], None), (60, [down], None), (120, [down], None)])
    assert [len(e.fired) for e in evaluations] == [0, 1, 0]
    assert set(evaluations[2].state.firing) == {(SERVICE_DOWN, "shop")}


def test_the_thresholds_are_bounded_by_name() -> None:
    with pytest.raises(ValueError, match="disk_free_percent"):
        AlertRules(disk_free_percent=100)
    with pytest.raises(ValueError, match="service_down_seconds"):
        AlertRules(service_down_seconds=0)
    with pytest.raises(ValueError, match="restart_loop_count"):
        AgentConfig.model_validate({"alerts": {"restart_loop_count": 0}})
