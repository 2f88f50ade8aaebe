"""``kill -9`` of the agent in the middle of a snapshot: no partial snapshot is ever listed.

The agent runs as its own process, a unit of the sandbox's systemd (as in production). A
snapshot of a service with a large ``pb_data/storage`` is asked for through the API; once
its ``.partial`` folder exists the agent is killed with SIGKILL. systemd starts it again:
the list never shows an incomplete snapshot, the leftover is cleaned up, and the operation
that was pending is done by the new agent, whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from pockestrator.accounts.store import AccountStore
from pockestrator.agent.sandbox import Sandbox, free_port
from pockestrator.config import AgentConfig
from pockestrator.controllers.servicedirs import ServiceFolders
from tests.testbed.agent_unit import AgentUnit
from tests.testbed.waiting import pocketbase_health, wait_until

STORAGE_BYTES = 400 * 1024 * 1024


@pytest.fixture(scope="module")
async def agent_unit(agent_config: AgentConfig, sandbox: Sandbox) -> AsyncIterator[AgentUnit]:
    handle = AgentUnit(sandbox, agent_config)
    await handle.start()
    yield handle
    await handle.stop()


async def listed(session: aiohttp.ClientSession, url: str, token: str) -> list[dict[str, object]]:
    async with session.get(
        f"{url}/services/hoard/backups", headers={"Authorization": f"Bearer {token}"}
    ) as response:
        assert response.status == 200
        return list((await response.json())["backups"])


def whole(snapshot: Path) -> bool:
    """Every file the manifest names is there, with its size and SHA-256."""
    manifest = json.loads((snapshot / "manifest.json").read_text())
    for entry in manifest["files"]:
        path = snapshot / entry["path"]
        if path.stat().st_size != entry["size"]:
            return False
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != entry["sha256"]:
            return False
    return True


async def test_kill_9_during_a_snapshot_leaves_no_listed_partial_one(
    agent_unit: AgentUnit, pocketbase_versions: tuple[str, str]
) -> None:
    unit = agent_unit
    config = unit.config
    version = pocketbase_versions[1]
    (config.spec_dir / "hoard.yaml").write_text(
        f'project_name: hoard\nport: {free_port()}\npocketbase_version: "{version}"\n'
    )
    assert await wait_until(
        lambda: pocketbase_health(unit.sandbox.caddy_url, "hoard.localhost"), 60, interval=0.1
    )
    data = ServiceFolders(config).private_path("hoard") / "pb_data"
    (data / "storage").mkdir(exist_ok=True)
    with (data / "storage" / "big.bin").open("wb") as handle:
        for _ in range(STORAGE_BYTES // (1 << 20)):
            handle.write(os.urandom(1 << 20))
    accounts = AccountStore(config.database)
    token, _record = accounts.create_token("kill test")
    accounts.close()
    url = f"http://{config.listen_host}:{config.listen_port}/api/pockestrator"
    snapshots = config.snapshots_path / "hoard"
    victim = await unit.main_pid()

    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{url}/services/hoard/backups?wait=false",
            headers={"Authorization": f"Bearer {token}"},
        ) as response:
            assert response.status == 202, await response.text()

        async def partial_begun() -> bool:
            return snapshots.is_dir() and any(
                p.name.endswith(".partial") for p in snapshots.iterdir()
            )

        assert await wait_until(partial_begun, 30, interval=0.005)
        os.kill(victim, signal.SIGKILL)
        assert not [p for p in snapshots.iterdir() if not p.name.startswith(".")]

        async def restarted() -> bool:
            try:
                return await unit.main_pid() != victim and bool(await listed(session, url, token))
            except (AssertionError, aiohttp.ClientError):
                return False

        assert await wait_until(restarted, 120, interval=0.2)
        backups = await listed(session, url, token)
    assert len(backups) == 1
    leftovers = sorted(p.name for p in snapshots.iterdir())
    assert leftovers == [backups[0]["id"]], "a partial snapshot was left behind"
    assert whole(snapshots / str(backups[0]["id"]))
