"""The decisions about PocketBase's own settings, as table rows (``agent.plan``).

``settings_due``: when the agent reads an instance's settings at all. ``plan_settings``:
what it does then, from the desired settings, their fingerprint, what PocketBase showed and
what the status recorded: make its superuser, apply, repair drift, or nothing. ``conclude``
with a settings error. No instance, no HTTP: the test bed proves the steps.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pockestrator.agent.plan.conclude import Settled, conclude, requeue_after
from pockestrator.agent.plan.model import Desired, Plan, Policy
from pockestrator.agent.plan.settings import plan_settings, settings_due
from pockestrator.agent.steps import ApplySettings, CreateAgentSuperuser, Drift
from pockestrator.controllers.pbsettings import SettingsObservation, desired_settings
from pockestrator.specs.model import parse_spec
from pockestrator.specs.pocketbase_settings import PocketBaseSettings
from pockestrator.specs.store import ServiceStatus
from tests.testbed.builders import running_unit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FINGERPRINT, OTHER = "f" * 64, "0" * 64
URL = "https://app.example.com"
INTERVAL = 300.0


def wanted(**settings: Any) -> Any:
    return desired_settings(PocketBaseSettings.model_validate(settings), URL)


def pocketbase(**sections: Any) -> dict[str, Any]:
    """What GET /api/settings answers, converged on ``wanted(app_name="Shop")``."""
    answer: dict[str, Any] = {
        "meta": {"appName": "Shop", "appURL": URL, "senderName": "Support"},
        "trustedProxy": {"headers": ["X-Forwarded-For"], "useLeftmostIP": False},
        "logs": {"maxDays": 5, "minLevel": 0, "logIP": True},
        "smtp": {"enabled": False, "host": "smtp.example.com", "port": 587},
    }
    for section, values in sections.items():
        answer[section] = {**answer.get(section, {}), **values}
    return answer


def status(**changes: Any) -> ServiceStatus:
    base = ServiceStatus(
        "app",
        state="active",
        health_ok=True,
        settings_hash=FINGERPRINT,
        settings_checked_at=NOW - timedelta(seconds=10),
        settings_pid=4242,
    )
    return replace(base, **changes)


# -- settings_due ------------------------------------------------------------------------

DUE = [
    ("just checked, same process, same desired settings", {}, {}, False),
    ("never applied", {"status": None}, {}, True),
    ("the desired settings changed", {"fingerprint": OTHER}, {}, True),
    ("a previous attempt failed", {}, {"settings_hash": None}, True),
    ("a new process (restart, rollback)", {"pid": 5151}, {}, True),
    ("no process known", {"pid": None}, {}, True),
    ("never read", {}, {"settings_checked_at": None}, True),
    (
        "the interval has passed",
        {},
        {"settings_checked_at": NOW - timedelta(seconds=INTERVAL)},
        True,
    ),
    (
        "one second before the interval",
        {},
        {"settings_checked_at": NOW - timedelta(seconds=INTERVAL - 1)},
        False,
    ),
    ("an interval of 0 looks every time", {"interval": 0.0}, {}, True),
]


@pytest.mark.parametrize(("case", "inputs", "status_changes", "due"), DUE, ids=[r[0] for r in DUE])
def test_when_the_settings_are_read(
    case: str, inputs: dict[str, Any], status_changes: dict[str, Any], due: bool
) -> None:
    arguments: dict[str, Any] = {
        "fingerprint": FINGERPRINT,
        "status": status(**status_changes),
        "pid": 4242,
        "now": NOW,
        "interval": INTERVAL,
        **inputs,
    }
    assert settings_due(**arguments) is due


# -- plan_settings -----------------------------------------------------------------------


def plan(
    observed: SettingsObservation,
    recorded: ServiceStatus | None = None,
    desired: Any = None,
    fingerprint: str = FINGERPRINT,
) -> Plan:
    return plan_settings(
        "app",
        desired if desired is not None else wanted(app_name="Shop"),
        fingerprint,
        observed,
        recorded if recorded is not None else status(),
    )


def signed_in(values: dict[str, Any]) -> SettingsObservation:
    return SettingsObservation(signed_in=True, values=values)


def test_without_a_login_the_agent_makes_its_superuser_first() -> None:
    result = plan(SettingsObservation(signed_in=False))
    assert result == Plan("app", prepare=(CreateAgentSuperuser(),))
    assert "settings_hash" not in result.status


def test_converged_settings_need_nothing_and_keep_the_fingerprint() -> None:
    result = plan(signed_in(pocketbase()))
    assert result == Plan("app", status={"settings_hash": FINGERPRINT})
    assert not result


def test_new_desired_settings_are_all_sent_and_are_no_drift() -> None:
    result = plan(
        signed_in(pocketbase(meta={"appName": "Acme"})), recorded=status(settings_hash=OTHER)
    )
    sent = (
        "settings.app_name",
        "settings.app_url",
        "settings.trusted_proxy.headers",
        "settings.trusted_proxy.use_leftmost_ip",
    )
    assert result == Plan(
        "app", prepare=(ApplySettings(sent),), status={"settings_hash": FINGERPRINT}
    )


def test_new_desired_settings_that_pocketbase_already_has_send_nothing() -> None:
    result = plan(signed_in(pocketbase()), recorded=status(settings_hash=None))
    assert result == Plan("app", status={"settings_hash": FINGERPRINT})


def test_new_desired_secrets_are_sent_even_when_every_visible_value_matches() -> None:
    desired = wanted(
        app_name="Shop",
        smtp={"enabled": False, "host": "smtp.example.com", "password": {"file": "/run/pw"}},
    )
    observed = pocketbase(smtp={"enabled": False, "host": "smtp.example.com"})
    result = plan(signed_in(observed), recorded=status(settings_hash=OTHER), desired=desired)
    assert result.prepare == (ApplySettings(desired.fields),)
    assert "settings.smtp.password" in desired.fields


def test_a_declared_value_changed_by_hand_is_drift_and_only_it_is_sent_again() -> None:
    result = plan(signed_in(pocketbase(meta={"appName": "Renamed"})))
    drift = Drift(
        "pocketbase settings",
        "settings.app_name changed outside the agent",
        "restored through PocketBase's API",
        None,
        None,
    )
    assert result == Plan(
        "app",
        prepare=(ApplySettings(("settings.app_name",), repair=True),),
        drift=(drift,),
        status={"settings_hash": FINGERPRINT},
    )


def test_several_fields_changed_by_hand_are_named_in_one_drift() -> None:
    observed = pocketbase(
        meta={"appURL": "http://localhost:8090"},
        trustedProxy={"headers": [], "useLeftmostIP": True},
    )
    (drift,) = plan(signed_in(observed)).drift
    assert drift.found == (
        "settings.app_url, settings.trusted_proxy.headers, "
        "settings.trusted_proxy.use_leftmost_ip changed outside the agent"
    )


def test_an_undeclared_setting_changed_by_hand_is_left_alone() -> None:
    result = plan(signed_in(pocketbase(logs={"maxDays": 9}, smtp={"enabled": True})))
    assert not result and result.drift == ()


# -- the status once the settings were tried ---------------------------------------------


def settled(**changes: Any) -> Settled:
    unit = running_unit()
    return Settled(
        unit=unit,
        unit_file_hash="u",
        site_hash="s",
        environment_file_hash=None,
        healthy=True,
        **changes,
    )


def desired_service() -> Desired:
    spec = parse_spec(
        {"project_name": "app", "port": 8080, "pocketbase_version": "0.40.6"}, "example.com"
    )
    return Desired(
        spec=spec,
        requested_version="0.40.6",
        desired_state="running",
        generation=1,
        unit_text="",
        unit_hash="u",
        site_text="",
        site_hash="s",
        settings=desired_settings(spec.settings, URL),
    )


def test_settings_that_could_not_be_applied_make_a_healthy_service_an_error() -> None:
    changes = conclude(
        desired_service(), Plan("app"), settled(settings_error="PocketBase refused ..."), None
    )
    assert changes["state"] == "error"
    assert changes["last_error"] == "PocketBase settings not applied: PocketBase refused ..."


def test_a_settings_error_is_looked_at_again_at_the_next_resync() -> None:
    policy = Policy(resync_interval=60.0)
    assert requeue_after("error", "PocketBase refused ...", policy) == 60.0
    assert requeue_after("active", None, policy) is None
