"""A burst larger than the worker pool is still one wave: one daemon-reload, one Caddy load.

The agent here has 2 workers and gets 8 spec files at once. Reconciles parked at a wave's
barrier lend their worker to the next queued key (``Agent._lend_a_worker``), and no
worker waits for an instance to boot (``health.BootWatch``), so all 8 reach the same
daemon-reload, the same Caddy load and start together; each becomes ``active`` once
PocketBase answers through Caddy.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig
from pockestrator.controllers.caddy import CATCH_ALL
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.waiting import pocketbase_health, wait_until


@pytest.fixture(scope="module")
async def agent_config(sandbox: Sandbox, release_mirror: ReleaseMirror) -> AgentConfig:
    return release_mirror.agent_config(
        sandbox,
        workers=2,
    )


async def test_a_burst_four_times_the_worker_pool_is_one_daemon_reload_and_one_caddy_load(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    start_up = [task for task in agent._tasks if task.get_name() == "caddy-sites"]
    await asyncio.wait(start_up, timeout=30)
    assert await agent.wait_reconciled(CATCH_ALL, timeout=30)
    reloads = agent.coordinator.fired("daemon-reload")
    caddy_loads = agent.sites.reload_count
    names = [f"wide{index}" for index in range(8)]
    for name in names:
        (agent.config.spec_dir / f".{name}.tmp").write_text(
            f"project_name: {name}\nport: {free_port()}\n"
            f'pocketbase_version: "{pocketbase_versions[1]}"\n'
        )
    for name in names:  # all appear in one directory event batch
        os.replace(agent.config.spec_dir / f".{name}.tmp", agent.config.spec_dir / f"{name}.yaml")

    async def all_active() -> bool:
        statuses = [agent.store.get_status(name) for name in names]
        return all(status is not None and status.state == "active" for status in statuses)

    assert await wait_until(all_active, 90, interval=0.1), [
        agent.store.get_status(name) for name in names
    ]
    assert agent.coordinator.fired("daemon-reload") - reloads == 1
    assert agent.sites.reload_count - caddy_loads == 1
    answers = await asyncio.gather(
        *(pocketbase_health(sandbox.caddy_url, f"{name}.localhost") for name in names)
    )
    assert all(answers)
