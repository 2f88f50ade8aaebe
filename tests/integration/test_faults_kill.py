"""SIGKILL of the agent at a few random points of a mixed workload: the host converges.

The small version of ``python -m tests.faults`` (``make faults``, 100 points): the same
workload and checks (tests/faults/killpoints.py), on the module's test bed, with a seed
that changes each run and is printed, so a failure can be replayed with ``--seed``.
"""

from __future__ import annotations

import os
import random

from pockestrator.agent.sandbox import Sandbox
from pockestrator.config import AgentConfig
from tests.faults.killpoints import run_kill_points

POINTS = 4


async def test_the_host_converges_with_nothing_lost_after_kills_at_random_points(
    sandbox: Sandbox, agent_config: AgentConfig, pocketbase_versions: tuple[str, str]
) -> None:
    seed = int(os.environ.get("FAULTS_SEED") or random.SystemRandom().randrange(2**31))
    print(f"seed {seed} (FAULTS_SEED={seed} replays it)")
    figures = await run_kill_points(
        sandbox, agent_config, pocketbase_versions, points=POINTS, seed=seed
    )
    summary = figures.summary()
    assert summary["kill_points"] == POINTS
    assert summary["not_converged"] == [], summary
    assert figures.lost == [], f"seed {seed}: {figures.lost}"
    assert figures.final_problems == [], f"seed {seed}: {figures.final_problems}"
