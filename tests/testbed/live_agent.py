"""A whole host for commands that run outside pytest: a sandbox, the release mirror, and the
agent as deployed (its own process, a ``Type=notify`` unit of the sandbox's manager).

The load benchmarks and the conformance run use it, so they measure and fuzz the agent as
it runs in production (its event loop shares nothing with the load generator's) on the same
real systemd, journald, Caddy and PocketBase as the integration tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from pockestrator.accounts.store import AccountStore
from pockestrator.agent.sandbox import Sandbox
from pockestrator.config import AgentConfig
from tests.testbed.agent_unit import AgentUnit
from tests.testbed.mirror import OLDER_VERSION, ReleaseMirror, installed_version, pocketbase_binary

LIVE_BASE = Path(os.environ.get("POCKESTRATOR_TESTBED_DIR", "/var/lib/pockestrator-testbed"))
# The lock every pytest session holds shared on LIVE_BASE (tests/conftest.py): a session
# that can take it exclusively ends every test bed there as a leftover of a crashed run.
SESSIONS_LOCK = ".sessions.lock"


@dataclass(frozen=True)
class LiveAgent:
    """A running agent: where its API is, a token for it, and its sandbox."""

    sandbox: Sandbox
    config: AgentConfig
    unit: AgentUnit
    token: str
    token_id: str
    versions: tuple[str, str]

    @property
    def base_url(self) -> str:
        return f"http://{self.config.listen_host}:{self.config.listen_port}"

    @property
    def api(self) -> str:
        return self.base_url + "/api/pockestrator"


@contextlib.asynccontextmanager
async def live_agent(prefix: str, **config: object) -> AsyncIterator[LiveAgent]:
    """Boot a sandbox with the agent as a unit (``config`` overrides its settings); tear it
    all down afterwards, proving no process is left behind."""
    LIVE_BASE.mkdir(parents=True, exist_ok=True)
    with (LIVE_BASE / SESSIONS_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)  # a test session starting now leaves this bed alone
        async with _live_agent(prefix, **config) as live:
            yield live


@contextlib.asynccontextmanager
async def _live_agent(prefix: str, **config: object) -> AsyncIterator[LiveAgent]:
    root = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=LIVE_BASE))
    sandbox = Sandbox(root)
    mirror = ReleaseMirror()
    versions = (OLDER_VERSION, installed_version())
    for version in versions:
        mirror.add_release(version, pocketbase_binary(version))
    await mirror.start()
    try:
        await sandbox.start()
        try:
            agent_config = mirror.agent_config(sandbox, **config)
            accounts = AccountStore(agent_config.database)
            try:
                token, record = accounts.create_token(prefix)
            finally:
                accounts.close()
            unit = AgentUnit(sandbox, agent_config, watchdog_seconds=30)
            await unit.start()
            try:
                yield LiveAgent(sandbox, agent_config, unit, token, record.id, versions)
            finally:
                await unit.stop()
        finally:
            await sandbox.stop()
            left = sandbox.leftover_pids()
            shutil.rmtree(root, ignore_errors=True)
            if left:
                raise RuntimeError(f"the sandbox left processes behind: {left}")
    finally:
        await mirror.stop()
