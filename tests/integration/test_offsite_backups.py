"""Off-site backups end to end: an agent on the test bed, a real S3 server, PocketBase's API.

The done-when test of issue 14: records written through PocketBase's API survive a
snapshot uploaded to an S3 target, the deletion of the service with purge, and a restore
by a *fresh* agent (its own empty database and snapshot folder, nothing local of the
first) from that target; the records compared through the API are the same, byte for
byte. The target is encrypted with the operator's key, so the round trip goes through the
encryption as well.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pockestrator.agent.daemon import Agent, api_factory
from pockestrator.agent.sandbox import Sandbox
from pockestrator.config import AgentConfig
from tests.testbed.api_client import Api, api_for, create, wait_running
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.pocketbase_client import PocketBaseClient
from tests.testbed.s3 import S3Server
from tests.testbed.waiting import wait_until

POLICY = {"schedule": None, "verify": None, "targets": ["offsite"]}


def agent_settings(
    sandbox: Sandbox, mirror: ReleaseMirror, s3: S3Server, home: Path
) -> AgentConfig:
    """An agent of its own (database, specs, snapshots under ``home``) on the sandbox."""
    key = s3.root / "encryption.key"
    if not key.exists():
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as writer:
            writer.write(os.urandom(32))
    home.mkdir(mode=0o755, exist_ok=True)  # the bootstrap folder of instances is in it
    return mirror.agent_config(
        sandbox,
        health_interval=1.0,
        upgrade_health_deadline=8.0,
        database=home / "pockestrator.db",
        spec_dir=home / "specs",
        snapshots_dir=home / "snapshots",
        backup_targets={"offsite": s3.target(encryption_key_file=key)},
    )


@pytest.fixture(scope="module")
async def agent_config(
    sandbox: Sandbox, release_mirror: ReleaseMirror, s3_server: S3Server
) -> AgentConfig:
    return agent_settings(sandbox, release_mirror, s3_server, sandbox.layout.root / "first")


async def records(client: PocketBaseClient) -> list[dict[str, Any]]:
    """Every record of ``notes`` exactly as PocketBase's API answers it."""
    answer = await client.call("GET", "/api/collections/notes/records?perPage=500&sort=id")
    return list(answer["items"])


async def uploaded_to(api: Api, name: str, target: str) -> dict[str, Any]:
    """The newest backup once the agent lists it as held by ``target``."""
    found: dict[str, Any] = {}

    async def there() -> bool:
        listed = await api.call("GET", f"/services/{name}/backups")
        held = [b for b in listed.body["backups"] if target in b["locations"]]
        if held:
            found.update(held[0])
        return bool(held)

    assert await wait_until(there, timeout=60, interval=0.1), (
        await api.call("GET", f"/services/{name}/events", params={"limit": "20"})
    ).body
    return found


async def test_records_survive_a_purge_and_come_back_from_s3_on_a_fresh_agent(
    api: Api,
    agent: Agent,
    sandbox: Sandbox,
    release_mirror: ReleaseMirror,
    s3_server: S3Server,
    pocketbase_versions: tuple[str, str],
) -> None:
    version = pocketbase_versions[1]
    created = await create(
        api, version, "precious", superuser_email="admin@precious.example", backups=POLICY
    )
    await wait_running(api, "precious")
    port = created["service"]["port"]
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
        await client.sign_in("admin@precious.example", created["superuser_password"])
        await client.notes()
        for number in range(25):
            await client.add(f"precious {number} " + "é" * number)
        before = await records(client)
    taken = await api.call("POST", "/services/precious/backups")
    assert taken.status == 201, taken.body
    backup = await uploaded_to(api, "precious", "offsite")
    assert backup["id"] == taken.body["backup"]["id"]
    assert backup["locations"] == ["local", "offsite"]
    assert any(key.startswith("pockestrator/precious/") for key in s3_server.objects())

    deleted = await api.call("DELETE", "/services/precious", params={"purge": "true"})
    assert deleted.status in (200, 202), deleted.body

    async def gone() -> bool:
        return (await api.call("GET", "/services/precious")).status == 404

    assert await wait_until(gone, timeout=60, interval=0.1)
    await agent.stop()

    fresh = Agent(
        agent_settings(sandbox, release_mirror, s3_server, sandbox.layout.root / "second"),
        api_factory=api_factory(),
    )
    await fresh.start()
    try:
        async with api_for(fresh) as second:
            await create(second, version, "precious", port=port, backups=POLICY)
            await wait_running(second, "precious")
            listed = await second.call("GET", "/services/precious/backups")
            assert [(b["id"], b["locations"]) for b in listed.body["backups"]] == [
                (backup["id"], ["offsite"])
            ]

            reply = await second.call("POST", f"/services/precious/backups/{backup['id']}/restore")

            assert reply.status == 200, reply.body
            await wait_running(second, "precious")
            async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
                assert await records(client) == before
                # The superuser of the first service is in the restored data.
                await client.sign_in("admin@precious.example", created["superuser_password"])
            listed = await second.call("GET", "/services/precious/backups")
            restored = [b for b in listed.body["backups"] if b["id"] == backup["id"]]
            assert restored[0]["locations"] == ["local", "offsite"]
    finally:
        await fresh.stop()
