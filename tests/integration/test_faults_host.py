"""Faults of the host under a running agent: the systemd manager and the bus, Caddy.

- ``daemon-reexec`` of the manager: the agent's subscription survives it (a hand-stopped
  instance is repaired from systemd's signal, not from a resync) and a spec written
  afterwards converges.
- The bus daemon killed (the agent's D-Bus connection drops for real): the agent connects
  again and subscribes again by itself, the same agent object, no restart of its own.
- Caddy killed with SIGKILL: systemd starts it again and every site is served again; on a
  real host that is the package's drop-in (``packaging/caddy-restart.conf``), since Caddy's
  own unit has no ``Restart=``: the last test applies it over a unit that does not restart.

The module's agent resyncs and probes health only every 10 minutes, so that what repairs
a hand-stopped instance here can only be systemd's signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import CADDY_UNIT, Sandbox, free_port
from pockestrator.config import AgentConfig
from pockestrator.controllers.caddy import CATCH_ALL
from pockestrator.controllers.systemd.bus import SystemdBus, SystemdError
from tests.testbed.api_client import api_for, create, wait_running
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.waiting import pocketbase_health, wait_until

SLOW = 600.0  # no resync, no health probe within a test
CADDY_DROP_IN = Path(__file__).resolve().parents[2] / "packaging" / "caddy-restart.conf"


@pytest.fixture(scope="module")
async def agent_config(sandbox: Sandbox, release_mirror: ReleaseMirror) -> AgentConfig:
    return release_mirror.agent_config(
        sandbox,
        resync_interval=SLOW,
        health_interval=SLOW,
    )


def _bus(sandbox: Sandbox) -> SystemdBus:
    assert sandbox.bus is not None
    return sandbox.bus


async def _manager_answers(bus: SystemdBus) -> bool:
    try:
        await bus.call("GetUnit", "s", [CADDY_UNIT], timeout=1.0)
    except SystemdError:
        return False
    return True


async def _stopped_by_hand_is_started_again(sandbox: Sandbox, name: str) -> None:
    bus = _bus(sandbox)
    unit = f"{name}-pocketbase.service"
    before = (await bus.unit_status(unit)).main_pid
    await bus.stop_unit(unit)

    async def running_again() -> bool:
        status = await bus.unit_status(unit)
        return status.sub_state == "running" and status.main_pid not in (None, before)

    assert await wait_until(running_again, 20, interval=0.05), "no signal reached the agent"
    assert await wait_until(lambda: pocketbase_health(sandbox.caddy_url, f"{name}.localhost"), 15)


async def _spec_file_converges(agent: Agent, sandbox: Sandbox, name: str, version: str) -> None:
    (agent.config.spec_dir / f"{name}.yaml").write_text(
        f'project_name: {name}\nport: {free_port()}\npocketbase_version: "{version}"\n'
    )
    assert await wait_until(
        lambda: pocketbase_health(sandbox.caddy_url, f"{name}.localhost"), 30, interval=0.1
    )


async def test_a_daemon_reexec_keeps_the_agents_subscription_and_specs_converge(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    version = pocketbase_versions[1]
    async with api_for(agent) as api:
        await create(api, version, "steady")
        await wait_running(api, "steady")
    bus_before = agent.bus
    with contextlib.suppress(SystemdError):  # the manager re-executes before it answers
        await _bus(sandbox).call("Reexecute", timeout=5.0)
    assert await wait_until(lambda: _manager_answers(_bus(sandbox)), 30, interval=0.05)

    await _stopped_by_hand_is_started_again(sandbox, "steady")
    await _spec_file_converges(agent, sandbox, "afterreexec", version)
    assert agent.bus is bus_before and agent.bus.connected


async def test_when_the_bus_drops_the_agent_connects_again_and_specs_converge(
    agent: Agent, sandbox: Sandbox, pocketbase_versions: tuple[str, str]
) -> None:
    bus = _bus(sandbox)
    daemon = (await bus.unit_status("dbus.service")).main_pid
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)  # every client's connection drops with it

    async def reconnected() -> bool:
        return agent.bus.connected and await _manager_answers(agent.bus)

    assert await wait_until(reconnected, 30, interval=0.05), "the agent did not connect again"
    assert await wait_until(lambda: _manager_answers(bus), 30, interval=0.05)
    assert (await bus.unit_status("dbus.service")).main_pid != daemon

    await _stopped_by_hand_is_started_again(sandbox, "steady")
    await _spec_file_converges(agent, sandbox, "afterdrop", pocketbase_versions[1])


async def _kill_caddy(bus: SystemdBus) -> int:
    caddy = (await bus.unit_status(CADDY_UNIT)).main_pid
    assert caddy is not None
    os.kill(caddy, signal.SIGKILL)
    return caddy


async def _caddy_serves_every_site_again(agent: Agent, sandbox: Sandbox, killed: int) -> None:
    snippets = agent.config.caddy_sites_dir.glob("*.caddy")
    sites = sorted(p.stem for p in snippets if p.stem != CATCH_ALL)  # the catch-all is no site
    assert {"steady", "afterreexec", "afterdrop"} <= set(sites)

    async def every_site_served() -> bool:
        answers = await asyncio.gather(
            *(pocketbase_health(sandbox.caddy_url, f"{name}.localhost") for name in sites)
        )
        return all(answers)

    assert await wait_until(every_site_served, 30, interval=0.1)
    status = await _bus(sandbox).unit_status(CADDY_UNIT)
    assert status.main_pid != killed and status.sub_state == "running"


async def test_caddy_killed_is_started_again_and_serves_every_site(
    agent: Agent, sandbox: Sandbox
) -> None:
    killed = await _kill_caddy(_bus(sandbox))
    await _caddy_serves_every_site_again(agent, sandbox, killed)


async def test_the_packaged_drop_in_starts_a_killed_caddy_whose_own_unit_would_not(
    agent: Agent, sandbox: Sandbox
) -> None:
    bus = _bus(sandbox)
    drop_ins = sandbox.systemd.paths.unit_dir / f"{CADDY_UNIT}.d"
    drop_ins.mkdir()
    try:
        # Caddy's own unit, as upstream ships it: no Restart=, so a killed Caddy stays down.
        (drop_ins / "00-as-caddys-own-unit.conf").write_text("[Service]\nRestart=no\n")
        await bus.daemon_reload()
        await _kill_caddy(bus)

        async def caddy_down() -> bool:
            return (await bus.unit_status(CADDY_UNIT)).active_state == "failed"

        assert await wait_until(caddy_down, 15, interval=0.05)
        await bus.start_unit(CADDY_UNIT)

        (drop_ins / "pockestrator.conf").write_bytes(CADDY_DROP_IN.read_bytes())
        await bus.daemon_reload()
        killed = await _kill_caddy(bus)
        await _caddy_serves_every_site_again(agent, sandbox, killed)
    finally:
        for drop_in in drop_ins.iterdir():
            drop_in.unlink()
        drop_ins.rmdir()
        await bus.daemon_reload()
        if (await bus.unit_status(CADDY_UNIT)).active_state != "active":
            await bus.start_unit(CADDY_UNIT)
