"""A burst larger than the worker pool is still one wave: no daemon-reload, one Caddy load.

The agent here has 2 workers and gets 8 spec files at once. Reconciles parked at a wave's
barrier lend their worker to the next queued key (``Agent._lend_a_worker``), and no
worker waits for an instance to boot (``health.BootWatch``), so all 8 reach the same
unit wave (new units need no daemon-reload: systemd loads them at their start), the same
Caddy load and start together; each becomes ``active`` once
PocketBase answers through Caddy.
"""

from __future__ import annotations

import asyncio

import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox
from pockestrator.config import AgentConfig
from tests.testbed.bursts import drop_at_once, start_up_done
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.waiting import pocketbase_health, wait_until


@pytest.fixture(scope="module")
async def agent_config(sandbox: Sandbox, release_mirror: ReleaseMirror) -> AgentConfig:
    return release_mirror.agent_config(
        sandbox,
        workers=2,
    )


async def test_a_burst_four_times_the_worker_pool_is_one_unit_wave_and_one_caddy_load(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    await start_up_done(agent)
    reloads = agent.coordinator.fired("daemon-reload")
    reload_calls = agent.reconciler.steps.reloads
    caddy_loads = agent.sites.reload_count
    names = [f"wide{index}" for index in range(8)]
    drop_at_once(agent, names, pocketbase_versions[1])

    async def all_active() -> bool:
        statuses = [agent.store.get_status(name) for name in names]
        return all(status is not None and status.state == "active" for status in statuses)

    assert await wait_until(all_active, 90, interval=0.1), [
        agent.store.get_status(name) for name in names
    ]
    assert agent.coordinator.fired("daemon-reload") - reloads == 1
    # New units are loaded by systemd at their start: no Reload() at all.
    assert agent.reconciler.steps.reloads == reload_calls
    assert agent.sites.reload_count - caddy_loads == 1
    answers = await asyncio.gather(
        *(pocketbase_health(sandbox.caddy_url, f"{name}.localhost") for name in names)
    )
    assert all(answers)

    # Each instance's own settings, left while others of the burst booted, come after.
    async def all_configured() -> bool:
        statuses = [agent.store.get_status(name) for name in names]
        return all(status is not None and status.settings_checked_at for status in statuses)

    assert await wait_until(all_configured, 90, interval=0.1), [
        agent.store.get_status(name) for name in names
    ]
