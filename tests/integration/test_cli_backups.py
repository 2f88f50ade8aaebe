"""``pockestrator backup|clone|import|archive`` as a user runs them, against the test bed.

Each command is its own process talking to the module's agent over HTTP; what it says is
checked against PocketBase's own API (the records) and the agent's API (backups, archive).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pockestrator.agent.daemon import Agent
from pockestrator.agent.sandbox import free_port
from pockestrator.controllers.snapshots import SnapshotFolder
from tests.testbed.api_client import Api, notes_service, wait_running
from tests.testbed.cli_env import Cli
from tests.testbed.pocketbase_client import PocketBaseClient


@pytest.fixture(scope="module")
def cli(agent: Agent, tmp_path_factory: pytest.TempPathFactory) -> Cli:
    return Cli.for_agent(agent, tmp_path_factory.mktemp("cli-backups"), "cli-backups")


async def titles_of(api: Api, name: str, email: str, password: str) -> list[str]:
    status = await wait_running(api, name)
    assert status["state"] == "active", status
    port = (await api.call("GET", f"/services/{name}")).body["service"]["port"]
    async with PocketBaseClient(f"http://127.0.0.1:{port}") as client:
        await client.sign_in(email, password)
        return sorted(await client.titles())


async def test_backup_create_list_verify_and_a_restore_that_asks_first(
    cli: Cli, api: Api, version: str
) -> None:
    client, password, _ = await notes_service(api, version, "ledger")
    async with client:
        await client.add("first")
        taken = await cli("backup", "create", "ledger", "-o", "json")
        assert taken.code == 0, taken
        backup: dict[str, Any] = taken.json()["backup"]
        await client.add("second")

    listed = await cli("backup", "list", "ledger")
    verified = await cli("backup", "verify", "ledger")
    refused = await cli("backup", "restore", "ledger", backup["id"])
    restored = await cli("backup", "restore", "ledger", backup["id"], "--yes")

    assert listed.code == 0 and backup["id"] in listed.out and "manual" in listed.out, listed
    assert verified.code == 0 and "verified" in verified.out, verified
    assert refused.code == 1 and "is lost" in refused.err and "--yes" in refused.err, refused
    assert restored.code == 0 and "safety backup" in restored.out, restored
    assert await titles_of(api, "ledger", "admin@ledger.example", password) == ["first"]


async def test_clone_makes_a_service_with_the_sources_records(
    cli: Cli, api: Api, version: str
) -> None:
    client, password, _ = await notes_service(api, version, "parent")
    async with client:
        await client.add("inherited")

    run = await cli("clone", "parent", "child", "--port", str(free_port()))

    assert run.code == 0, run
    assert "cloned parent" in run.out and "child" in run.out
    assert await titles_of(api, "child", "admin@parent.example", password) == ["inherited"]


async def test_import_of_a_pb_data_folder_adopts_it_and_a_hostile_zip_is_refused(
    cli: Cli, api: Api, version: str, agent: Agent, tmp_path: Path
) -> None:
    client, password, _ = await notes_service(api, version, "legacy")
    async with client:
        await client.add("from the old install")
    taken = await api.call("POST", "/services/legacy/backups")
    snapshot = SnapshotFolder(agent.config.snapshots_path).get("legacy", taken.body["backup"]["id"])

    run = await cli(
        "import", "adoptee", str(snapshot.path / "pb_data"), "--port", str(free_port()),
        "--version", version,
    )  # fmt: skip

    assert run.code == 0, run
    assert "zipped" in run.err
    assert await titles_of(api, "adoptee", "admin@legacy.example", password) == [
        "from the old install"
    ]
    evil = tmp_path / "evil.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("data.db", b"SQLite format 3\x00" + bytes(64))
        archive.writestr("../../../root/.ssh/authorized_keys", b"ssh-ed25519 AAAA")
    evil.write_bytes(buffer.getvalue())
    refused = await cli(
        "import", "evil", str(evil), "--port", str(free_port()), "--version", version
    )
    assert (refused.code == 3 and "IMPORT_INVALID" in refused.err) or "path escape" in refused.err
    assert (await api.call("GET", "/services/evil")).status == 404


async def test_archive_list_and_restore_bring_a_deleted_service_back(
    cli: Cli, api: Api, version: str
) -> None:
    client, password, _ = await notes_service(api, version, "phoenix")
    async with client:
        await client.add("rises again")
    port = (await api.call("GET", "/services/phoenix")).body["service"]["port"]
    deleted = await cli("delete", "phoenix")
    assert deleted.code == 0, deleted

    listed = await cli("archive", "list", "-o", "json")
    assert listed.code == 0, listed
    mine = [a for a in listed.json()["archives"] if a["project_name"] == "phoenix"]
    assert len(mine) == 1
    table = await cli("archive", "list")
    assert mine[0]["id"] in table.out and "EXPIRES" in table.out

    run = await cli("archive", "restore", mine[0]["id"], "--port", str(port), "--version", version)

    assert run.code == 0, run
    assert await titles_of(api, "phoenix", "admin@phoenix.example", password) == ["rises again"]
