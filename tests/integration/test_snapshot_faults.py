"""Snapshots when the host fails under them: a full disk.

A small tmpfs is mounted over the snapshot folder of the test bed; a snapshot bigger than
it fails with a clear error, leaves no listed or partial snapshot, and the instance goes
on serving reads and writes throughout.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.controllers.servicedirs import ServiceFolders
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.pocketbase_client import PocketBaseClient

TMPFS_BYTES = 4 * 1024 * 1024


@pytest.fixture
def small_snapshot_disk(agent: Agent) -> Iterator[Path]:
    folder = agent.config.snapshots_path
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(folder)],
        check=True,
    )
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


async def test_a_full_disk_fails_the_snapshot_clearly_and_the_instance_keeps_serving(
    api: Api, agent: Agent, pocketbase_versions: tuple[str, str], small_snapshot_disk: Path
) -> None:
    version = pocketbase_versions[1]
    created = await create(api, version, "crowded", superuser_email="admin@crowded.example")
    await wait_running(api, "crowded")
    data = ServiceFolders(agent.config).private_path("crowded") / "pb_data"
    storage = data / "storage"
    storage.mkdir(exist_ok=True)
    owner = data.stat()
    big = storage / "big.bin"
    big.write_bytes(os.urandom(TMPFS_BYTES * 2))  # more than the snapshot disk holds
    os.chown(big, owner.st_uid, owner.st_gid)

    async with PocketBaseClient(f"http://127.0.0.1:{created['service']['port']}") as client:
        await client.sign_in("admin@crowded.example", created["superuser_password"])
        await client.notes()
        await client.add("before")

        reply = await api.call("POST", "/services/crowded/backups")

        assert reply.status == 502, reply.body
        assert reply.body["code"] == "OPERATION_FAILED"
        assert "is full (no space left on the device)" in reply.body["message"]
        await client.add("after")
        assert sorted(await client.titles()) == ["after", "before"]
    assert (await api.call("GET", "/services/crowded/backups")).body["backups"] == []
    assert [p.name for p in (small_snapshot_disk / "crowded").iterdir()] == []
    status = (await api.call("GET", "/services/crowded/status")).body
    assert status["is_running"] and status["state"] == "active"
    events = await api.call("GET", "/services/crowded/events", params={"limit": "20"})
    assert "snapshot_failed" in [e["kind"] for e in events.body["events"]]
