"""The agent run as systemd runs it: a ``Type=notify`` unit of the test bed's manager.

Shared by the process tests and the benchmarks, so both measure the agent as deployed: its
own process (CPU and memory are its own), started by systemd, reporting READY=1.
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from pockestrator.agent.sandbox import Sandbox
from pockestrator.config import AgentConfig
from pockestrator.controllers.systemd.bus import SystemdBus
from pockestrator.specs.store import Store
from tests.testbed.journal import journal_text

AGENT_UNIT = "pockestrator-agent.service"


def agent_unit(config_file: Path, watchdog_seconds: int = 3) -> str:
    return (
        "[Unit]\n"
        "Description=Pockestrator agent (test bed)\n"
        "[Service]\n"
        "Type=notify\n"
        "NotifyAccess=main\n"
        f"WatchdogSec={watchdog_seconds}\n"
        f"ExecStart={sys.executable} -m pockestrator agent --config {config_file}\n"
        "ExecReload=/bin/kill -HUP $MAINPID\n"
        "Restart=on-failure\n"
        "RestartSec=200ms\n"
        "SyslogIdentifier=pockestrator-agent\n"
        "Environment=PYTHONUNBUFFERED=1\n"
    )


class AgentUnit:
    def __init__(self, sandbox: Sandbox, config: AgentConfig, watchdog_seconds: int = 3) -> None:
        self.sandbox = sandbox
        self.config = config
        self.config_file = sandbox.layout.root / "agent.yaml"
        self.watchdog_seconds = watchdog_seconds
        bus = sandbox.bus
        assert bus is not None
        self.bus: SystemdBus = bus

    def write_config(self, **changes: object) -> None:
        data = self.config.model_copy(update=changes).model_dump(mode="json", exclude_none=True)
        self.config_file.write_text(yaml.safe_dump(data))

    async def main_pid(self) -> int:
        status = await self.bus.unit_status(AGENT_UNIT)
        assert status.main_pid is not None, status
        return status.main_pid

    def journal(self) -> str:
        return journal_text(self.sandbox, "pockestrator-agent")

    def store(self) -> Store:
        return Store(self.config.database)

    async def start(self) -> None:
        """Write the config and the unit, then start it (the job ends on READY=1)."""
        self.write_config()
        unit_file = self.sandbox.systemd.paths.unit_dir / AGENT_UNIT
        unit_file.write_text(agent_unit(self.config_file, self.watchdog_seconds))
        await self.bus.daemon_reload()
        await self.bus.start_unit(AGENT_UNIT)

    async def stop(self) -> None:
        await self.bus.stop_unit(AGENT_UNIT)
