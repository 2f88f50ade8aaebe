"""Continuous replication with Litestream on the test bed, and a restore to a chosen second.

The service's policy replicates data.db to an S3 target (``rclone serve s3``); the agent
runs Litestream in its own box, bound to the instance's unit. Records written before the
chosen second come back, records written after it do not, compared through PocketBase's API.
The chosen second is taken once Litestream has shipped the earlier records: a restore to
a second returns what was *shipped* by then (up to one sync interval behind the writes).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import Sandbox
from pockestrator.config import AgentConfig
from pockestrator.controllers.snapshots.litestream import unit_name
from tests.testbed.api_client import Api, create, wait_running
from tests.testbed.mirror import ReleaseMirror
from tests.testbed.pocketbase_client import PocketBaseClient
from tests.testbed.s3 import S3Server
from tests.testbed.waiting import wait_until

POLICY = {"schedule": None, "verify": None, "replication": {"target": "offsite"}}


@pytest.fixture(scope="module")
async def agent_config(
    sandbox: Sandbox, release_mirror: ReleaseMirror, s3_server: S3Server
) -> AgentConfig:
    return release_mirror.agent_config(
        sandbox,
        health_interval=1.0,
        upgrade_health_deadline=8.0,
        backup_targets={"offsite": s3_server.target()},
    )


async def records(client: PocketBaseClient) -> list[dict[str, Any]]:
    answer = await client.call("GET", "/api/collections/notes/records?perPage=500&sort=id")
    return list(answer["items"])


async def event_kinds(api: Api, name: str) -> list[str]:
    events = await api.call("GET", f"/services/{name}/events", params={"limit": "50"})
    return [e["kind"] for e in events.body["events"]]


async def test_a_restore_to_a_chosen_second_brings_back_the_records_of_that_second(
    api: Api, agent: Agent, s3_server: S3Server, pocketbase_versions: tuple[str, str]
) -> None:
    created = await create(
        api, pocketbase_versions[1], "ledger", superuser_email="a@ledger.example", backups=POLICY
    )
    await wait_running(api, "ledger")
    client = PocketBaseClient(f"http://127.0.0.1:{created['service']['port']}")
    async with client:
        await client.sign_in("a@ledger.example", created["superuser_password"])
        await client.notes()
        agent.enqueue("ledger")

        async def replicating() -> bool:
            status = await agent.bus.unit_status(unit_name("ledger"))
            return status.active_state == "active"

        assert await wait_until(replicating, timeout=60, interval=0.2), await event_kinds(
            api, "ledger"
        )
        for number in range(10):
            await client.add(f"before {number}")
        before = await records(client)
        written = time.time()

        def shipped() -> bool:  # an LTX file uploaded after the last "before" write
            level0 = s3_server.data / s3_server.bucket / "pockestrator/ledger/replica/data.db"
            return any(path.stat().st_mtime > written for path in level0.rglob("*.ltx"))

        async def shipped_yet() -> bool:
            return await asyncio.to_thread(shipped)

        assert await wait_until(shipped_yet, timeout=60, interval=0.1)
        await asyncio.sleep(1.0)
        chosen = datetime.now(UTC).replace(microsecond=0)
        await asyncio.sleep(
            max(0.0, (chosen + timedelta(seconds=1.5) - datetime.now(UTC)).total_seconds())
        )
        for number in range(10):
            await client.add(f"after {number}")
        assert len(await records(client)) == 20
        await asyncio.sleep(3)  # a sync interval (1 s) and then some

        taken = await api.call(
            "POST", "/services/ledger/backups", params={"at": chosen.isoformat()}
        )

        assert taken.status == 201, taken.body
        backup = taken.body["backup"]
        assert backup["kind"] == "replica"
        restored = await api.call("POST", f"/services/ledger/backups/{backup['id']}/restore")
        assert restored.status == 200, restored.body
        await wait_running(api, "ledger")
        assert await records(client) == before
    assert "replication_started" in await event_kinds(api, "ledger")
    assert any("ledger/replica/data.db/" in key for key in s3_server.objects())


async def test_a_point_in_time_of_a_service_that_does_not_replicate_is_refused_on_at(
    api: Api, pocketbase_versions: tuple[str, str]
) -> None:
    await create(api, pocketbase_versions[1], "plain", desired_state="stopped")
    reply = await api.call("POST", "/services/plain/backups", params={"at": "2026-12-01T00:00:00Z"})
    assert reply.status == 400, reply.body
    assert reply.body["errors"][0]["field"] == "at"


async def test_a_deleted_service_keeps_no_replication_configuration_or_unit(
    api: Api, agent: Agent, pocketbase_versions: tuple[str, str]
) -> None:
    await create(api, pocketbase_versions[1], "fleeting", backups=POLICY)
    await wait_running(api, "fleeting")
    agent.enqueue("fleeting")
    config = agent.snapshots.replication.config_path("fleeting")

    async def replicating() -> bool:
        status = await agent.bus.unit_status(unit_name("fleeting"))
        return status.active_state == "active"

    assert await wait_until(replicating, timeout=60, interval=0.2)
    assert "secret-access-key" in config.read_text()  # what must not outlive the service

    deleted = await api.call("DELETE", "/services/fleeting")
    assert deleted.status in (200, 202), deleted.body

    async def config_gone() -> bool:
        return not config.exists()

    assert await wait_until(config_gone, timeout=60, interval=0.1)
    assert not await replicating()
    assert "fleeting" not in agent.snapshots.replication.configured_names()


async def test_a_replication_configuration_left_by_a_deleted_service_is_removed(
    agent: Agent,
) -> None:
    # What an agent before this fix left behind: the file of a service the store lost.
    replication = agent.snapshots.replication
    replication.config_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    leftover = replication.config_path("ghost")
    leftover.write_text("secret-access-key: left behind\n")
    leftover.chmod(0o600)
    assert "ghost" in agent.known_names()

    agent.enqueue_many(agent.known_names())

    async def removed() -> bool:
        return not leftover.exists()

    assert await wait_until(removed, timeout=30, interval=0.1)
