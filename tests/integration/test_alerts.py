"""Alert rules on a real agent: a PocketBase instance killed by the test and held down (its
port taken, so each restart systemd makes fails) fires ``service_down`` and
``restart_loop`` as events in the store and in ``/metrics``, long before the agent's
one-minute cadence (the unit's signals and the rule's own deadline wake the pass); let go,
it comes back and ``service_down`` resolves."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pockestrator.agent.daemon import Agent
from pockestrator.config import AgentConfig, AlertRules
from pockestrator.specs.store import Event
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.held_port import killed_and_held
from tests.testbed.waiting import wait_until

SERVICE = "alerted"


@pytest.fixture(scope="module")
async def agent_config(agent_config: AgentConfig) -> AgentConfig:
    """Short thresholds; the cadence stays a minute, so a quick alert proves the wake."""
    rules = AlertRules(service_down_seconds=2.0, restart_loop_count=2, restart_loop_minutes=1)
    return agent_config.model_copy(update={"alerts": rules, "history_interval": 60.0})


def alert_events(agent: Agent, kind: str) -> list[Event]:
    return [event for event in agent.store.list_events(SERVICE, limit=200) if event.kind == kind]


def rules_of(events: list[Event]) -> set[str]:
    return {str(event.details["rule"]) for event in events}


async def firing_in_metrics(api: Api) -> dict[str, float]:
    async with api.session.get(
        api.root + "/metrics", headers={"Authorization": f"Bearer {api.token}"}
    ) as response:
        text = await response.text()
    return {
        sample.labels["rule"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "pockestrator_alerts_firing" and sample.labels["service"] == SERVICE
    }


async def test_a_killed_service_held_down_fires_then_resolves(
    api: Api, agent: Agent, pocketbase_versions: tuple[str, str]
) -> None:
    created: dict[str, Any] = await create(api, pocketbase_versions[1], SERVICE)
    port = created["service"]["port"]
    await wait_running(api, SERVICE)
    assert await wait_until(lambda: _no_alerts(agent), 3, 0.2)
    unit = await agent.bus.unit_status(f"{SERVICE}-pocketbase.service")
    assert unit.main_pid is not None
    # Each restart now fails to listen.
    async with killed_and_held(unit.main_pid, port):

        async def both_fired() -> bool:
            return {"service_down", "restart_loop"} <= rules_of(alert_events(agent, "alert_firing"))

        assert await wait_until(both_fired, 20, 0.2), agent.store.list_events(SERVICE, limit=20)
        firing = alert_events(agent, "alert_firing")
        down = next(event for event in firing if event.details["rule"] == "service_down")
        assert down.details["service"] == SERVICE and down.details["threshold_seconds"] == 2.0
        assert len([e for e in firing if e.details["rule"] == "service_down"]) == 1
        metrics = await firing_in_metrics(api)
        assert metrics.get("service_down") == 1 and metrics.get("restart_loop") == 1

    async def back_and_resolved() -> bool:
        return "service_down" in rules_of(alert_events(agent, "alert_resolved"))

    assert await wait_until(back_and_resolved, 30, 0.2), agent.store.list_events(SERVICE, limit=20)
    assert "service_down" not in await firing_in_metrics(api)


async def _no_alerts(agent: Agent) -> bool:
    return not alert_events(agent, "alert_firing")
