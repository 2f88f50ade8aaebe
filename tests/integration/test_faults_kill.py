"""SIGKILL of the agent at a few random points of a mixed workload: the host converges.

The small version of ``python -m tests.faults`` (``make faults``, 100 points): the same
workload and checks (tests/faults/killpoints.py), on the module's test bed, with a seed
that changes each run and is printed, so a failure can be replayed with ``--seed``.
"""

from __future__ import annotations

import os
import random

from dbus_fast import Variant

from pockestrator.agent.daemon import Agent, api_factory
from pockestrator.agent.sandbox import CADDY_UNIT, Sandbox
from pockestrator.config import AgentConfig
from pockestrator.controllers.pbsettings.controller import LOGINS_FOLDER
from pockestrator.controllers.servicedirs.superuser import bootstrap_unit
from tests.faults.killpoints import run_kill_points
from tests.testbed.api_client import api_for, create, wait_running
from tests.testbed.waiting import pocketbase_health, wait_until

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


async def test_a_site_written_but_never_loaded_by_a_killed_agent_is_served_after_restart(
    sandbox: Sandbox, agent_config: AgentConfig, pocketbase_versions: tuple[str, str]
) -> None:
    """The state a kill between writing a snippet and reloading Caddy leaves: the file
    matches the spec (so no plan changes it) and Caddy runs without it."""
    async with Agent(agent_config, api_factory=api_factory()) as agent, api_for(agent) as api:
        await create(api, pocketbase_versions[1], "halfway")
        await wait_running(api, "halfway")
    snippet = agent_config.caddy_sites_dir / "halfway.caddy"
    text = snippet.read_text()
    snippet.unlink()
    assert sandbox.bus is not None
    await sandbox.bus.reload_unit(CADDY_UNIT)
    assert not await pocketbase_health(sandbox.caddy_url, "halfway.localhost")
    snippet.write_text(text)  # as the killed agent left it: written, never loaded

    async with Agent(agent_config, api_factory=api_factory()):
        assert await wait_until(
            lambda: pocketbase_health(sandbox.caddy_url, "halfway.localhost"), 15, interval=0.1
        ), "the restarted agent left Caddy without a site whose file is on disk"


async def test_a_killed_agents_superuser_run_is_stopped_and_its_files_removed_at_start(
    sandbox: Sandbox, agent_config: AgentConfig
) -> None:
    """What a kill during a superuser bootstrap leaves: its transient unit still running,
    its migration folder, and its environment file, which holds the password."""
    assert sandbox.bus is not None
    unit = bootstrap_unit("orphan")
    sleeper = ["/bin/sleep", "300"]
    await sandbox.bus.start_transient_unit(
        unit, [("ExecStart", Variant("a(sasb)", [(sleeper[0], sleeper, False)]))], 10.0
    )
    secrets = agent_config.environment_path / ".orphan-0123456789ab.bootstrap.env"
    secrets.parent.mkdir(parents=True, exist_ok=True)
    secrets.write_text("PB_BOOTSTRAP_EMAIL=a@orphan.test\nPB_BOOTSTRAP_PASSWORD=hunter22\n")
    run_dir = agent_config.base_dir / ".bootstrap" / "orphan-0123456789ab"
    (run_dir / "migrations").mkdir(parents=True)
    (run_dir / "migrations" / "1_pockestrator_superuser_0123456789ab.js").write_text("//")

    async with Agent(agent_config, api_factory=api_factory()):
        assert (await sandbox.bus.unit_status(unit)).active_state in ("inactive", "failed")
        assert not secrets.exists()
        assert not run_dir.exists()


async def test_a_backup_cut_short_by_a_kill_is_removed_at_start_and_finished_ones_kept(
    agent_config: AgentConfig,
) -> None:
    """An upgrade killed while it copied ``pb_data`` leaves the ``.partial`` copy."""
    backups = agent_config.base_dir / ".backups" / "halfcopied"
    partial = backups / ".pb_data-20261202T040631Z.partial"
    finished = backups / "pb_data-20261201T120000Z"
    for folder in (partial, finished):
        folder.mkdir(parents=True)
        (folder / "data.db").write_bytes(b"SQLite format 3\0")

    async with Agent(agent_config, api_factory=api_factory()):
        assert not partial.exists()
        assert (finished / "data.db").read_bytes() == b"SQLite format 3\0"


async def test_temporary_files_of_killed_atomic_writes_are_removed_at_start_others_kept(
    agent_config: AgentConfig,
) -> None:
    """A kill between write_atomic's write and its rename, in each folder the agent writes;
    the unit folder is shared on a real host, so another program's file stays."""
    ours = [
        agent_config.systemd_dir / ".gone-pocketbase.service.a1b2c3d4.tmp",
        agent_config.environment_path / ".gone.env.a1b2c3d4.tmp",
        agent_config.caddy_sites_dir / ".gone.caddy.a1b2c3d4.tmp",
        agent_config.caddy_config.parent / f".{agent_config.caddy_config.name}.a1b2c3d4.tmp",
        agent_config.database.parent / LOGINS_FOLDER / ".kp004.json.a1b2c3d4.tmp",
    ]
    foreign = agent_config.systemd_dir / ".nginx.service.a1b2c3d4.tmp"
    for path in [*ours, foreign]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")

    async with Agent(agent_config, api_factory=api_factory()):
        assert [path for path in ours if path.exists()] == []
        assert foreign.read_text() == "half"
    foreign.unlink()
