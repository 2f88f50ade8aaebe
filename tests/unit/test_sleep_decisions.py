"""Sleeping instances, the pure parts: the grammar of sleep_after, when a service is idle,
when a scheduled wake comes, what the plan does with a drowsy or sleeping service, what its
site writes and what state the API shows."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pockestrator.agent.plan.conclude import Settled, conclude
from pockestrator.agent.plan.model import Plan
from pockestrator.agent.plan.service import plan_service
from pockestrator.agent.sleep import idle_wait, scheduled_wake
from pockestrator.agent.steps import StopUnit
from pockestrator.api.views import service_state
from pockestrator.controllers.caddy import SiteSettings, access_log_path, render_site
from pockestrator.specs import grammar
from pockestrator.specs.errors import ErrorCode, SpecInvalid
from pockestrator.specs.grammar import GrammarError
from pockestrator.specs.model import parse_spec
from pockestrator.specs.store import ServiceStatus
from tests.unit.golden_files import GOLDEN, check_golden
from tests.unit.test_plan import POLICY, converged, desired_of, observed_of, on_unit

BASE = {"project_name": "app", "port": 8100, "pocketbase_version": "0.40.6"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5s", 5), ("90s", 90), ("15m", 900), ("2h", 7200), ("30d", 2_592_000),
        ("43200m", 2_592_000), ("2592000s", 2_592_000), ("1m", 60), ("1h", 3600),
        ("720h", 2_592_000), ("1d", 86400),
    ],
)  # fmt: skip
def test_sleep_after_reads_whole_units_into_seconds(text: str, seconds: int) -> None:
    assert grammar.sleep_seconds(text) == seconds
    assert grammar.sleep_after_stated().fullmatch(text)


@pytest.mark.parametrize(
    "text",
    ["4s", "0m", "31d", "721h", "15", "15 m", "1.5h", "-5m", "15M", "1w", "05m", "",
     "2592001s", "43201m", "0h", "0d", "0s"],
)  # fmt: skip
def test_sleep_after_outside_its_grammar_or_bounds_is_refused_and_not_stated(text: str) -> None:
    with pytest.raises(GrammarError) as refused:
        grammar.sleep_seconds(text)
    assert refused.value.code is ErrorCode.INVALID_SLEEP_AFTER
    assert not grammar.sleep_after_stated().fullmatch(text)


def test_a_spec_that_sleeps_needs_caddy_to_hold_requests() -> None:
    with pytest.raises(SpecInvalid) as refused:
        parse_spec({**BASE, "sleep_after": "15m", "proxy": {"hold_requests": 0}}, "test")
    assert [(i.field, i.code) for i in refused.value.issues] == [
        ("sleep_after", ErrorCode.INVALID_SLEEP_AFTER)
    ]
    spec = parse_spec({**BASE, "sleep_after": "15m", "wake_schedule": "0 3 * * *"}, "test")
    assert spec.sleep_seconds == 900
    assert parse_spec(BASE, "test").sleep_seconds is None


@pytest.mark.parametrize(
    ("now", "last_request", "awake_since", "after", "wait"),
    [
        (100.0, None, 100.0, 10, 10.0),  # just woken, no request yet: the whole time
        (105.0, None, 100.0, 10, 5.0),
        (110.0, None, 100.0, 10, 0.0),  # idle now
        (130.0, 125.0, 100.0, 10, 5.0),  # a request later than the wake counts
        (130.0, 90.0, 100.0, 10, -20.0),  # a request before the wake does not
        (130.0, 125.0, 160.0, 10, 40.0),  # a scheduled wake keeps it up past its cron time
    ],
)
def test_idle_counts_from_the_later_of_the_last_request_and_the_wake(
    now: float, last_request: float | None, awake_since: float, after: int, wait: float
) -> None:
    assert idle_wait(now, last_request, awake_since, after) == wait


def test_a_scheduled_wake_comes_a_minute_before_the_cron_time_and_lasts_a_minute_past() -> None:
    now = datetime(2026, 12, 2, 2, 30, tzinfo=UTC)
    assert scheduled_wake("0 3 * * *", now) == (
        datetime(2026, 12, 2, 2, 59, tzinfo=UTC),
        datetime(2026, 12, 2, 3, 1, tzinfo=UTC),
    )
    # Within the minute before a time, that time is too close: the next one.
    late = datetime(2026, 12, 2, 2, 59, 30, tzinfo=UTC)
    assert scheduled_wake("0 3 * * *", late)[0] == datetime(2026, 12, 3, 2, 59, tzinfo=UTC)


def sleeping_plan(sleep: str, **unit: object) -> Plan:
    scenario = converged()
    scenario.spec = {"sleep_after": "5m"}
    if unit:
        on_unit(**unit)(scenario)
    desired = replace(desired_of(scenario), sleep=sleep)  # type: ignore[arg-type]
    return plan_service(desired, scenario.status, observed_of(scenario), POLICY)


def test_a_drowsy_running_service_is_stopped_for_sleep_and_not_probed() -> None:
    plan = sleeping_plan("drowsy")
    assert plan.run == (StopUnit("sleep"),)
    assert plan.probe_deadline is None
    assert plan.drift == ()


@pytest.mark.parametrize("sleep", ["drowsy", "asleep"])
def test_a_stopped_sleeping_service_is_never_started_again_by_the_reconciler(sleep: str) -> None:
    plan = sleeping_plan(sleep, active_state="inactive", sub_state="dead", main_pid=None)
    assert plan.run == ()
    assert plan.drift == ()
    assert plan.probe_deadline is None


def test_the_same_stopped_unit_awake_is_started_and_reported_as_drift() -> None:
    plan = sleeping_plan("awake", active_state="inactive", sub_state="dead", main_pid=None)
    assert [type(step).__name__ for step in plan.run] == ["StartUnit"]
    assert [drift.what for drift in plan.drift] == ["run state"]


def test_a_sleeping_service_concludes_active_and_keeps_its_health() -> None:
    scenario = converged()
    scenario.spec = {"sleep_after": "5m"}
    desired = replace(desired_of(scenario), sleep="asleep")
    assert scenario.unit is not None
    unit = replace(scenario.unit, active_state="inactive", sub_state="dead", main_pid=None)
    settled = Settled(unit, "u" * 64, "s" * 64, None, healthy=None)
    changes = conclude(desired, Plan("app"), settled, scenario.status)
    assert changes["state"] == "active"
    assert changes["last_error"] is None
    assert changes["active_state"] == "inactive"
    assert "health_ok" not in changes


def test_a_sleeping_service_is_active_whatever_its_last_probe_said() -> None:
    scenario = converged()
    scenario.spec = {"sleep_after": "5m"}
    desired = replace(desired_of(scenario), sleep="asleep")
    assert scenario.unit is not None and scenario.status is not None
    unit = replace(scenario.unit, active_state="inactive", sub_state="dead", main_pid=None)
    settled = Settled(unit, "u" * 64, "s" * 64, None, healthy=None)
    unhealthy = replace(scenario.status, health_ok=False)
    changes = conclude(desired, Plan("app"), settled, unhealthy)
    assert (changes["state"], changes["last_error"]) == ("active", None)


def test_a_drowsy_service_still_running_is_judged_by_its_health() -> None:
    scenario = converged()
    scenario.spec = {"sleep_after": "5m"}
    desired = replace(desired_of(scenario), sleep="drowsy")
    assert scenario.unit is not None
    settled = Settled(scenario.unit, "u" * 64, "s" * 64, None, healthy=False)
    changes = conclude(desired, Plan("app"), settled, scenario.status)
    assert changes["state"] == "error"
    assert changes["last_error"] == "PocketBase (pid 4242) stopped answering its health check"


def test_the_api_shows_sleeping_only_for_an_active_service_that_sleeps() -> None:
    active = ServiceStatus("app", state="active")
    assert service_state(active, asleep=True) == "sleeping"
    assert service_state(active, asleep=False) == "active"
    assert service_state(replace(active, state="error"), asleep=True) == "error"
    assert service_state(None, asleep=True) == "deploying"


def test_only_a_service_that_sleeps_has_caddy_write_its_access_log_without_details() -> None:
    settings = SiteSettings(tls="off", access_log_dir=Path("/var/log/caddy/pockestrator"))
    sleeper = parse_spec({**BASE, "sleep_after": "15m"}, "test")
    text = render_site(sleeper, settings)
    log_path = access_log_path(Path("/var/log/caddy/pockestrator"), "app")
    assert f"output file {log_path} {{" in text
    for deleted in ("request", "resp_headers", "user_id"):
        assert f"\t\t{deleted} delete\n" in text
    assert "log {" not in render_site(parse_spec(BASE, "test"), settings)
    assert "log {" not in render_site(sleeper, SiteSettings(tls="off"))
    assert "log {" not in render_site(sleeper, settings, running=False)


def test_a_sleeping_services_site_matches_its_golden_file() -> None:
    settings = SiteSettings(tls="off", access_log_dir=Path("/var/log/caddy/pockestrator"))
    sleeper = parse_spec({**BASE, "sleep_after": "15m"}, "test")
    check_golden(GOLDEN / "caddy" / "http-sleeping-app.caddy", render_site(sleeper, settings))


@pytest.mark.parametrize("folder", ["/var/log/a b{", "/var/log/../etc"])
def test_an_access_log_directory_that_could_change_the_site_is_refused(folder: str) -> None:
    sleeper = parse_spec({**BASE, "sleep_after": "15m"}, "test")
    with pytest.raises(GrammarError) as refused:
        render_site(sleeper, SiteSettings(tls="off", access_log_dir=Path(folder)))
    assert (refused.value.code, refused.value.message) == (
        ErrorCode.INVALID_PATH,
        "the access log path cannot be written here",
    )
