"""Backups through the REST API on the test bed: take, list, download, verify, restore, delete.

Records are written and read through PocketBase's own API; every backup operation goes
through the agent's API and is done by the service's reconcile, as in production.
"""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import aiohttp

from pockestrator.agent.daemon import Agent
from pockestrator.controllers.servicedirs import ServiceFolders
from pockestrator.controllers.snapshots import SnapshotFolder
from tests.testbed.api_client import Api, create, notes_service, wait_running


async def take(api: Api, name: str) -> dict[str, Any]:
    reply = await api.call("POST", f"/services/{name}/backups")
    assert reply.status == 201, reply.body
    assert reply.body["operation"]["state"] == "done"
    return dict(reply.body["backup"])


async def test_a_backup_is_taken_listed_inspected_and_downloaded(api: Api, newer: str) -> None:
    client, _, _ = await notes_service(api, newer, "kept")
    async with client:
        for number in range(10):
            await client.add(f"kept {number}")

        backup = await take(api, "kept")

    assert backup["kind"] == "manual" and backup["pocketbase_version"] == newer
    assert backup["size_bytes"] > 0 and backup["verified"] is None
    listed = await api.call("GET", "/services/kept/backups")
    assert listed.status == 200
    assert [b["id"] for b in listed.body["backups"]] == [backup["id"]]
    assert listed.body["policy"]["schedule"] == "0 3 * * *"  # the agent's default
    assert listed.body["total_bytes"] == backup["size_bytes"]
    detail = await api.call("GET", f"/services/kept/backups/{backup['id']}")
    assert detail.status == 200
    files = {f["path"]: f for f in detail.body["files"]}
    assert (
        "pb_data/data.db" in files
        and sum(f["size_bytes"] for f in files.values()) == (backup["size_bytes"])
    )

    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{api.root}/services/kept/backups/{backup['id']}/download",
            headers={"Authorization": f"Bearer {api.token}"},
        ) as response,
    ):
        assert response.status == 200
        assert response.headers["Content-Type"] == "application/x-tar"
        archive = await response.read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile(f"kept-{backup['id']}/manifest.json"))  # type: ignore[arg-type]
    assert f"kept-{backup['id']}/pb_data/data.db" in names
    assert manifest["snapshot_id"] == backup["id"]


async def test_a_verification_through_the_api_is_recorded_on_the_backup(
    api: Api, newer: str
) -> None:
    client, _, _ = await notes_service(api, newer, "proven")
    await client.session.close()
    backup = await take(api, "proven")

    reply = await api.call("POST", f"/services/proven/backups/{backup['id']}/verify")

    assert reply.status == 200, reply.body
    assert reply.body["operation"]["state"] == "done"
    assert reply.body["operation"]["result"]["ok"] is True
    listed = await api.call("GET", "/services/proven/backups")
    assert listed.body["backups"][0]["verified"] is True
    assert listed.body["backups"][0]["verified_at"] is not None


async def test_a_restore_brings_back_exactly_the_records_of_the_backup(
    api: Api, newer: str
) -> None:
    client, _, _ = await notes_service(api, newer, "rewind")
    async with client:
        for number in range(5):
            await client.add(f"before {number}")
        before = await client.titles()
        backup = await take(api, "rewind")
        for number in range(7):
            await client.add(f"after {number}")
        assert len(await client.titles()) == 12

        reply = await api.call("POST", f"/services/rewind/backups/{backup['id']}/restore")

        assert reply.status == 200, reply.body
        result = reply.body["operation"]["result"]
        status = await wait_running(api, "rewind")
        assert status["state"] == "active"
        # The same superuser is in the restored data: its token still signs in.
        assert await client.titles() == before
    kinds = [b["kind"] for b in (await api.call("GET", "/services/rewind/backups")).body["backups"]]
    assert sorted(kinds) == ["manual", "safety"]
    assert result["safety_snapshot"] in [
        b["id"] for b in (await api.call("GET", "/services/rewind/backups")).body["backups"]
    ]
    events = await api.call("GET", "/services/rewind/events", params={"limit": "20"})
    assert "snapshot_restored" in [e["kind"] for e in events.body["events"]]


async def test_a_restore_that_does_not_come_up_puts_the_data_back_and_says_why(
    api: Api, newer: str, agent: Agent
) -> None:
    client, _, _ = await notes_service(api, newer, "fragile")
    async with client:
        await client.add("survives")
        backup = await take(api, "fragile")
        await client.add("also survives")
        snapshot = SnapshotFolder(agent.config.snapshots_path).get("fragile", backup["id"])
        (snapshot.path / "pb_data" / "data.db").write_bytes(b"not a database" * 100)

        reply = await api.call("POST", f"/services/fragile/backups/{backup['id']}/restore")

        assert reply.status == 502, reply.body
        assert reply.body["code"] == "OPERATION_FAILED"
        assert "did not come up healthy" in reply.body["message"]
        assert "is back" in reply.body["message"]
        await wait_running(api, "fragile")
        assert sorted(await client.titles()) == ["also survives", "survives"]  # ids are random
    events = await api.call("GET", "/services/fragile/events", params={"limit": "20"})
    assert "restore_failed" in [e["kind"] for e in events.body["events"]]


async def test_a_deleted_backup_is_gone_and_an_unknown_one_is_404(api: Api, newer: str) -> None:
    client, _, _ = await notes_service(api, newer, "pruned")
    await client.session.close()
    backup = await take(api, "pruned")

    reply = await api.call("DELETE", f"/services/pruned/backups/{backup['id']}")

    assert reply.status == 200 and reply.body["operation"]["state"] == "done"
    assert (await api.call("GET", "/services/pruned/backups")).body["backups"] == []
    missing = await api.call("GET", f"/services/pruned/backups/{backup['id']}")
    assert missing.status == 404 and missing.body["code"] == "BACKUP_NOT_FOUND"
    bad = await api.call("POST", "/services/pruned/backups/yesterday/restore")
    assert bad.status == 400 and bad.body["errors"][0]["field"] == "backup_id"
    unknown = await api.call("GET", "/services/pruned/operations/999999")
    assert unknown.status == 404 and unknown.body["code"] == "OPERATION_NOT_FOUND"


async def test_a_backup_of_a_service_without_data_fails_with_the_reason(
    api: Api, newer: str, agent: Agent
) -> None:
    await create(api, newer, "empty", desired_state="stopped")
    folder = ServiceFolders(agent.config)
    assert not folder.private_path("empty").exists()

    reply = await api.call("POST", "/services/empty/backups")

    assert reply.status == 502, reply.body
    assert reply.body["code"] == "OPERATION_FAILED"
    assert "no folder" in reply.body["message"] or "no pb_data" in reply.body["message"]
    assert (await api.call("GET", "/services/empty/backups")).body["backups"] == []
