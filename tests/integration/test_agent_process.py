"""The agent as systemd runs it: a ``Type=notify`` unit with a watchdog, signals, crashes.

The agent runs as a unit of the sandbox's own systemd manager (``python -m pockestrator
agent --config FILE``), managing its sibling units over the same bus; the tests act on it
only as systemd and an operator would (jobs, signals, spec files) and read the results from
systemd, the host and the store.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig
from tests.testbed.agent_unit import AGENT_UNIT, AgentUnit
from tests.testbed.unit_signals import SERVICE_INTERFACE, UNIT_INTERFACE, UnitSignals
from tests.testbed.waiting import pocketbase_health, wait_until


@pytest.fixture(scope="module")
async def agent_unit_running(
    agent_config: AgentConfig, sandbox: Sandbox
) -> AsyncIterator[AgentUnit]:
    handle = AgentUnit(sandbox, agent_config)
    await handle.start()  # returns once the agent sent READY=1
    yield handle
    await handle.stop()


async def test_the_agent_reports_ready_and_a_status_line(agent_unit_running: AgentUnit) -> None:
    unit = agent_unit_running
    status = await unit.bus.unit_status(AGENT_UNIT)
    assert (status.active_state, status.sub_state) == ("active", "running")
    properties = await unit.bus.unit_properties(AGENT_UNIT)
    assert "services" in str(properties.get("StatusText", "")) or await wait_until(
        lambda: _status_text_mentions(unit, "services"), 10
    )
    assert properties["WatchdogUSec"] == 3_000_000


async def _status_text_mentions(unit: AgentUnit, word: str) -> bool:
    return word in str((await unit.bus.unit_properties(AGENT_UNIT)).get("StatusText", ""))


async def test_a_hung_agent_is_killed_by_the_watchdog_and_restarted(
    agent_unit_running: AgentUnit,
) -> None:
    unit = agent_unit_running
    hung = await unit.main_pid()
    restarts = (await unit.bus.unit_status(AGENT_UNIT)).n_restarts
    assert restarts is not None
    # Result=watchdog lasts only until the restart (RestartSec=200ms) resets it: seen in
    # systemd's own signals, which cannot be missed, rather than by polling.
    async with UnitSignals.watching(unit.sandbox, AGENT_UNIT) as signals:
        os.kill(hung, signal.SIGSTOP)  # the process is alive but makes no progress

        def restarted() -> bool:
            return (
                signals.latest(SERVICE_INTERFACE, "NRestarts") == restarts + 1
                and signals.latest(UNIT_INTERFACE, "SubState") == "running"
            )

        assert await signals.wait_for(restarted, 30), signals.changes
    assert await unit.main_pid() != hung
    # Between the kill and the restart systemd recorded why the unit failed (its last
    # result before was a success, announced if its status line changed meanwhile); the
    # restart reset it. One restart, announced after the failure.
    results = signals.values(SERVICE_INTERFACE, "Result")
    assert results in (["watchdog", "success"], ["success", "watchdog", "success"]), results
    assert signals.values(SERVICE_INTERFACE, "NRestarts") == [restarts, restarts + 1]


async def test_sighup_rereads_the_configuration(agent_unit_running: AgentUnit) -> None:
    unit = agent_unit_running
    pid = await unit.main_pid()
    unit.write_config(health_interval=7.5)
    await unit.bus.reload_unit(AGENT_UNIT)

    async def reloaded() -> bool:
        return "configuration reloaded" in unit.journal()

    assert await wait_until(reloaded, 10, interval=0.1)
    assert await unit.main_pid() == pid, "a reload must not restart the agent"
    assert "health_interval" in unit.journal()


async def test_a_broken_configuration_on_sighup_keeps_the_running_one(
    agent_unit_running: AgentUnit,
) -> None:
    unit = agent_unit_running
    pid = await unit.main_pid()
    unit.config_file.write_text("workers: many\n")
    await unit.bus.reload_unit(AGENT_UNIT)

    async def refused() -> bool:
        return "configuration reload refused" in unit.journal()

    assert await wait_until(refused, 10, interval=0.1)
    assert await unit.main_pid() == pid
    assert (await unit.bus.unit_status(AGENT_UNIT)).active_state == "active"
    unit.write_config()


def journal_at_priority(unit: AgentUnit, priority: str) -> list[dict[str, str]]:
    """The agent's entries that ``journalctl -p PRIORITY`` shows, as journald stored them."""
    done = subprocess.run(
        [
            "journalctl",
            "-D",
            str(unit.sandbox.systemd.paths.journal_dir),
            "--no-pager",
            "-o",
            "json",
            "-p",
            priority,
            "SYSLOG_IDENTIFIER=pockestrator-agent",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


async def test_the_agents_errors_reach_journald_at_priority_err_with_their_json_fields(
    agent_unit_running: AgentUnit,
) -> None:
    unit = agent_unit_running
    unit.config_file.write_text("workers: [caused by the test]\n")
    await unit.bus.reload_unit(AGENT_UNIT)

    def refusals() -> list[dict[str, str]]:
        return [
            entry
            for entry in journal_at_priority(unit, "err")
            if "configuration reload refused" in entry.get("MESSAGE", "")
        ]

    async def refused() -> bool:
        return bool(refusals())

    assert await wait_until(refused, 10, interval=0.1)
    unit.write_config()
    entry = refusals()[-1]
    assert entry["PRIORITY"] == "3"
    fields = json.loads(entry["MESSAGE"])  # the prefix is gone; the JSON is whole
    assert fields["level"] == "error" and "workers" in fields["error"]
    # Info lines stay at 6: -p err does not show them, -p info does.
    assert not [e for e in journal_at_priority(unit, "err") if '"level": "info"' in e["MESSAGE"]]
    infos = [e for e in journal_at_priority(unit, "info") if '"level": "info"' in e["MESSAGE"]]
    assert infos and {e["PRIORITY"] for e in infos} == {"6"}


async def test_killed_mid_deployment_the_agent_converges_with_no_duplicate_or_orphan(
    agent_unit_running: AgentUnit, pocketbase_versions: tuple[str, str]
) -> None:
    unit = agent_unit_running
    names = [f"herd{index:02d}" for index in range(20)]
    spec_dir = unit.config.spec_dir
    for name in names:
        (spec_dir / f"{name}.yaml").write_text(
            f"project_name: {name}\nport: {free_port()}\n"
            f'pocketbase_version: "{pocketbase_versions[1]}"\n'
        )

    async def some_units_written() -> bool:
        return len(list(unit.config.systemd_dir.glob("herd*-pocketbase.service"))) >= 3

    assert await wait_until(some_units_written, 20, interval=0.005)
    victim = await unit.main_pid()
    os.kill(victim, signal.SIGKILL)

    async def all_healthy() -> bool:
        checks = await asyncio.gather(
            *(pocketbase_health(unit.sandbox.caddy_url, f"{name}.localhost") for name in names)
        )
        return all(checks)

    assert await wait_until(all_healthy, 90, interval=0.2)
    assert await unit.main_pid() != victim

    unit_files = sorted(p.name for p in unit.config.systemd_dir.glob("herd*-pocketbase.service"))
    assert unit_files == [f"{name}-pocketbase.service" for name in names]
    sites = sorted(p.name for p in unit.config.caddy_sites_dir.glob("herd*.caddy"))
    assert sites == [f"{name}.caddy" for name in names]
    loaded = await unit.bus.list_unit_names(["herd*-pocketbase.service"])
    assert loaded == unit_files, "an orphan or duplicate unit is loaded"
    store = unit.store()
    try:

        async def statuses_settled() -> bool:
            found = [store.get_status(name) for name in names]
            return all(s is not None and s.state == "active" and s.pid for s in found)

        assert await wait_until(statuses_settled, 30, interval=0.2)
        pids = {name: status.pid for name in names if (status := store.get_status(name))}
        ports = [
            record.spec.port
            for record in store.list_services()[0]
            if record.name.startswith("herd")
        ]
    finally:
        store.close()
    assert len(ports) == len(set(ports)) == 20
    assert len(set(pids.values())) == 20
    for name, pid in pids.items():
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        assert f"/{name}-pocketbase.service" in cgroup, "status names another unit's process"


async def test_sigterm_stops_the_agent_cleanly(agent_unit_running: AgentUnit) -> None:
    unit = agent_unit_running
    await unit.bus.stop_unit(AGENT_UNIT)
    status = await unit.bus.unit_status(AGENT_UNIT)
    assert status.active_state == "inactive"
    assert status.result == "success" and status.exec_main_status == 0
    assert "agent stopped" in unit.journal()
    # The instances it manages keep running without it.
    assert await pocketbase_health(unit.sandbox.caddy_url, "herd00.localhost")
    await unit.bus.start_unit(AGENT_UNIT)
