"""Bursts of spec files, for the tests that count what one burst costs (waves, reloads).

What the agent does at its start (the catch-all site, one load of the sites on disk) must
not be counted as the burst's: ``start_up_done`` waits it out first. ``drop_at_once``
writes every spec file aside, then renames them all into the spec folder together, so the
agent sees them in one batch of directory events.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import free_port
from pockestrator.controllers.caddy import CATCH_ALL


async def start_up_done(agent: Agent) -> None:
    start_up = [task for task in agent._tasks if task.get_name() == "caddy-sites"]
    await asyncio.wait(start_up, timeout=30)
    assert await agent.wait_reconciled(CATCH_ALL, timeout=30), (
        "the catch-all site was not reconciled within 30 s of the agent's start"
    )


def drop_at_once(agent: Agent, names: Sequence[str], version: str) -> None:
    folder = agent.config.spec_dir
    for name in names:
        (folder / f".{name}.tmp").write_text(
            f'project_name: {name}\nport: {free_port()}\npocketbase_version: "{version}"\n'
        )
    for name in names:
        os.replace(folder / f".{name}.tmp", folder / f"{name}.yaml")
