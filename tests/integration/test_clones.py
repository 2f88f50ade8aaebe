"""New services from existing data on the test bed: clones, imports, archived services.

Records are written and read through PocketBase's own API. A clone (from a backup, or
live) and an import are created through the agent's API and seeded by their first
reconcile; hostile archives are refused before any service exists, leaving nothing.
"""

from __future__ import annotations

import io
import stat
import zipfile
from typing import Any

import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import free_port
from pockestrator.config import AgentConfig
from pockestrator.controllers.servicedirs import ServiceFolders
from tests.testbed.api_client import Api, create, notes_service, wait_running
from tests.testbed.pocketbase_client import PocketBaseClient
from tests.testbed.waiting import wait_until

IMPORT_MAX = 8 * 1024 * 1024


@pytest.fixture(scope="module")
async def agent_config(agent_config: AgentConfig) -> AgentConfig:
    return agent_config.model_copy(update={"import_max_bytes": IMPORT_MAX})


async def signed_in(api: Api, name: str, email: str, password: str) -> PocketBaseClient:
    status = await wait_running(api, name)
    assert status["state"] == "active", status
    service = (await api.call("GET", f"/services/{name}")).body["service"]
    client = PocketBaseClient(f"http://127.0.0.1:{service['port']}")
    await client.sign_in(email, password)
    return client


async def test_a_clone_from_a_backup_serves_its_own_copy_while_the_source_keeps_serving(
    api: Api, version: str
) -> None:
    source, password, _ = await notes_service(api, version, "origin")
    async with source:
        for number in range(3):
            await source.add(f"shared {number}")
        backup = await api.call("POST", "/services/origin/backups")
        assert backup.status == 201, backup.body
        await source.add("only in the source")

        reply = await api.call(
            "POST",
            "/services/origin/clone",
            {"project_name": "copy", "port": free_port(), "backup_id": backup.body["backup"]["id"]},
            params={"wait": "true"},
        )

        assert reply.status == 201, reply.body
        assert reply.body["service"]["project_name"] == "copy"
        async with await signed_in(api, "copy", "admin@origin.example", password) as clone:
            assert sorted(await clone.titles()) == ["shared 0", "shared 1", "shared 2"]
            await clone.add("only in the clone")
            await source.add("source again")
            assert sorted(await clone.titles()) == [
                "only in the clone",
                "shared 0",
                "shared 1",
                "shared 2",
            ]
        assert sorted(await source.titles()) == [
            "only in the source",
            "shared 0",
            "shared 1",
            "shared 2",
            "source again",
        ]
    copy = (await api.call("GET", "/services/copy")).body["service"]
    assert copy["domain"].startswith("copy.") and copy["pocketbase_version"] == version
    events = await api.call("GET", "/services/copy/events", params={"limit": "20"})
    assert "seeded" in [e["kind"] for e in events.body["events"]]


async def test_a_live_clone_takes_a_backup_of_the_running_source_first(
    api: Api, version: str
) -> None:
    source, password, _ = await notes_service(api, version, "alive")
    async with source:
        await source.add("before the clone")

        reply = await api.call(
            "POST",
            "/services/alive/clone",
            {"project_name": "twin", "port": free_port(), "domain": "twin.example.org"},
            params={"wait": "true"},
        )

        assert reply.status == 201, reply.body
        async with await signed_in(api, "twin", "admin@alive.example", password) as twin:
            assert await twin.titles() == ["before the clone"]
            await twin.add("twin's own")
            assert await source.titles() == ["before the clone"]
    kinds = [b["kind"] for b in (await api.call("GET", "/services/alive/backups")).body["backups"]]
    assert kinds == ["manual"]
    assert (await api.call("GET", "/services/twin")).body["service"]["domain"] == "twin.example.org"


async def test_a_clone_of_an_unknown_backup_or_onto_a_taken_port_makes_nothing(
    api: Api, version: str
) -> None:
    await create(api, version, "lonely", desired_state="stopped")
    taken = (await api.call("GET", "/services/lonely")).body["service"]["port"]

    missing = await api.call(
        "POST",
        "/services/lonely/clone",
        {"project_name": "ghost", "port": free_port(), "backup_id": "20200101T000000Z"},
    )
    clash = await api.call(
        "POST", "/services/lonely/clone", {"project_name": "ghost", "port": taken}
    )
    odd = await api.call("POST", "/services/lonely/clone", {"project_name": "Ghost!", "port": 1})

    assert missing.status == 404 and missing.body["code"] == "BACKUP_NOT_FOUND"
    assert clash.status in (400, 409) and "port" in clash.codes()
    assert odd.status == 400 and {"project_name", "port"} <= set(odd.codes())
    assert (await api.call("GET", "/services/ghost")).status == 404
    operations = await api.call("GET", "/services/lonely/backups")
    assert operations.body["backups"] == []


async def pocketbase_backup(client: PocketBaseClient) -> bytes:
    """A backup made by PocketBase itself (``POST /api/backups``), downloaded."""
    headers = client.headers
    url = client.base_url
    async with client.session.post(
        f"{url}/api/backups", json={"name": "own.zip"}, headers=headers
    ) as response:
        assert response.status == 204, await response.text()
    async with client.session.post(f"{url}/api/files/token", headers=headers) as response:
        token = (await response.json())["token"]
    async with client.session.get(f"{url}/api/backups/own.zip?token={token}") as response:
        assert response.status == 200
        return await response.read()


async def upload(api: Api, name: str, version: str, archive: bytes) -> Any:
    return await api.call(
        "POST",
        "/imports",
        raw=archive,
        content_type="application/zip",
        params={
            "project_name": name,
            "port": str(free_port()),
            "pocketbase_version": version,
            "wait": "true",
        },
    )


async def test_a_pocketbase_backup_zip_is_imported_as_a_new_service(
    api: Api, version: str, agent: Agent
) -> None:
    source, password, _ = await notes_service(api, version, "donor")
    async with source:
        await source.add("carried over")
        archive = await pocketbase_backup(source)

    reply = await upload(api, "adopted", version, archive)

    assert reply.status == 201, reply.body
    async with await signed_in(api, "adopted", "admin@donor.example", password) as adopted:
        assert await adopted.titles() == ["carried over"]
    assert list(agent.config.imports_path.iterdir()) == []  # the staged upload is gone


def hostile_zip(name: str, *, data: bytes = b"x", mode: int | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.db", b"SQLite format 3\x00" + bytes(100))
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.create_system = 3
            info.external_attr = mode << 16
        archive.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("archive", "problem"),
    [
        (hostile_zip("../../etc/cron.d/evil"), "path escape"),
        (hostile_zip("/etc/passwd"), "absolute path"),
        (hostile_zip("storage/link", data=b"/etc/shadow", mode=stat.S_IFLNK | 0o777), "symlink"),
        (hostile_zip("storage/fifo", mode=stat.S_IFIFO | 0o600), "special file"),
        (hostile_zip("storage\\..\\..\\x"), "backslash"),
        (b"PK\x05\x06" + bytes(18), "no data.db"),
        (b"this is not a zip", "not a readable ZIP"),
    ],
    ids=["zip-slip", "absolute", "symlink", "fifo", "backslash", "empty", "not-a-zip"],
)
async def test_a_hostile_archive_is_refused_naming_the_problem_and_leaves_nothing(
    api: Api, version: str, agent: Agent, archive: bytes, problem: str
) -> None:
    reply = await upload(api, "hostile", version, archive)

    assert reply.status == 400, reply.body
    assert reply.body["code"] == "IMPORT_INVALID"
    assert problem in reply.body["errors"][0]["message"]
    assert (await api.call("GET", "/services/hostile")).status == 404
    assert list(agent.config.imports_path.iterdir()) == []
    assert not ServiceFolders(agent.config).private_path("hostile").exists()


async def test_an_archive_larger_than_the_limit_is_413_and_leaves_nothing(
    api: Api, version: str, agent: Agent
) -> None:
    reply = await upload(api, "huge", version, bytes(IMPORT_MAX + 1))

    assert reply.status == 413 and reply.body["code"] == "PAYLOAD_TOO_LARGE"
    assert (await api.call("GET", "/services/huge")).status == 404
    assert list(agent.config.imports_path.iterdir()) == []


async def test_a_member_unpacking_past_the_limit_is_refused_before_any_service(
    api: Api, version: str, agent: Agent
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data.db", b"SQLite format 3\x00" + bytes(100))
        archive.writestr("storage/bomb", bytes(IMPORT_MAX * 4))
    reply = await upload(api, "bomb", version, buffer.getvalue())

    assert reply.status == 400 and reply.body["code"] == "IMPORT_INVALID"
    assert "more than" in reply.body["errors"][0]["message"]
    assert list(agent.config.imports_path.iterdir()) == []


async def test_a_deleted_service_is_listed_in_the_archive_and_restored_as_a_service(
    api: Api, version: str
) -> None:
    client, password, _ = await notes_service(api, version, "undead")
    async with client:
        await client.add("kept in the archive")
    port = (await api.call("GET", "/services/undead")).body["service"]["port"]
    deleted = await api.call("DELETE", "/services/undead", params={"wait": "true"})
    assert deleted.status == 200, deleted.body

    listed = await api.call("GET", "/archives")

    assert listed.status == 200 and listed.body["keep_days"] == 30
    mine = [a for a in listed.body["archives"] if a["project_name"] == "undead"]
    assert len(mine) == 1 and mine[0]["size_bytes"] > 0 and mine[0]["expires_at"]
    reply = await api.call(
        "POST",
        f"/archives/{mine[0]['id']}/restore",
        {"port": port, "pocketbase_version": version},
        params={"wait": "true"},
    )
    assert reply.status == 201, reply.body
    async with await signed_in(api, "undead", "admin@undead.example", password) as back:
        assert await back.titles() == ["kept in the archive"]
    after = await api.call("GET", "/archives")
    assert mine[0]["id"] not in [a["id"] for a in after.body["archives"]]
    unknown = await api.call(
        "POST",
        "/archives/nobody-20200101T000000Z/restore",
        {"port": 18765, "pocketbase_version": version},
    )
    assert unknown.status == 404 and unknown.body["code"] == "ARCHIVE_NOT_FOUND"


async def test_archives_past_the_retention_are_removed_without_polling(
    api: Api, version: str, agent: Agent
) -> None:
    await create(api, version, "fleeting", desired_state="stopped")
    folder = ServiceFolders(agent.config)
    folder.prepare_private_tree()
    (folder.private_path("fleeting") / "pb_data").mkdir(parents=True)
    await api.call("DELETE", "/services/fleeting", params={"wait": "true"})
    names = [a["id"] for a in (await api.call("GET", "/archives")).body["archives"]]
    assert any(name.startswith("fleeting-") for name in names)
    kept = agent.config
    try:
        # Two seconds of retention: the keeper sleeps until the archive's expiry, then goes.
        agent.config = kept.model_copy(update={"archive_keep_days": 2 / 86400})
        agent.archive_keeper.wake()

        async def gone() -> bool:
            archives = (await api.call("GET", "/archives")).body["archives"]
            return not any(a["project_name"] == "fleeting" for a in archives)

        assert await wait_until(gone, 30)
    finally:
        agent.config = kept
        agent.archive_keeper.wake()


async def test_a_clone_whose_data_cannot_be_had_is_never_started_empty(
    api: Api, version: str, agent: Agent
) -> None:
    await create(api, version, "barren", desired_state="stopped")  # no folder: no snapshot

    reply = await api.call(
        "POST",
        "/services/barren/clone",
        {"project_name": "stillborn", "port": free_port()},
        params={"wait": "true"},
    )

    assert reply.status == 201, reply.body

    async def failed() -> bool:
        status = (await api.call("GET", "/services/stillborn/status")).body
        return bool(status["state"] == "error")

    assert await wait_until(failed, 30)
    status = (await api.call("GET", "/services/stillborn/status")).body
    assert "seeding from a live copy of barren failed" in status["error_message"]
    assert not status["is_running"]
    assert not ServiceFolders(agent.config).private_path("stillborn").exists()
    events = await api.call("GET", "/services/stillborn/events", params={"limit": "20"})
    assert "seed_failed" in [e["kind"] for e in events.body["events"]]


async def test_a_retried_import_with_its_idempotency_key_gets_the_first_answer(
    api: Api, version: str, agent: Agent
) -> None:
    source, _password, _ = await notes_service(api, version, "giver")
    async with source:
        await source.add("given")
        archive = await pocketbase_backup(source)
    params = {
        "project_name": "taken-once",
        "port": str(free_port()),
        "pocketbase_version": version,
        "wait": "true",  # answered once seeded: the staged upload is gone by then
    }
    headers = {"Idempotency-Key": "import-7d1c0e2a"}

    async def send(body: bytes) -> Any:
        return await api.call(
            "POST",
            "/imports",
            raw=body,
            content_type="application/zip",
            params=params,
            headers=headers,
        )

    first = await send(archive)
    assert first.status == 201, first.body
    again = await send(archive)
    assert again.status == 201 and again.body == first.body  # not "the name is taken"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.headers["Location"].endswith(f"/services/{first.body['id']}")
    assert agent.store.service_names().count("taken-once") == 1
    assert list(agent.config.imports_path.iterdir()) == []  # the retry's upload is gone too
    other = await send(archive + b"\0")
    assert other.status == 422 and other.body["code"] == "IDEMPOTENCY_KEY_REUSED"
